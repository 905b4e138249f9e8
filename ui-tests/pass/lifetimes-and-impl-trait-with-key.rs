//! Borrowed and `impl Trait` parameters work when `key = ...` says what identifies a call.
#![deny(warnings)]

use cache_runtime::cached;
use std::fmt::Display;

struct Note {
    id: u64,
    body: String,
}

#[cached(ttl = 60, key = (note.id, label.to_string()))]
fn labelled<'a>(note: &'a Note, label: impl Display) -> String {
    format!("{label}: {}", note.body)
}

#[cached(ttl = 60, key = words.len())]
async fn longest<'w>(words: &'w [&'w str]) -> usize {
    words.iter().map(|w| w.len()).max().unwrap_or(0)
}

fn main() {
    let note = Note {
        id: 1,
        body: "hello".into(),
    };
    assert_eq!(labelled(&note, 7), "7: hello");
    assert_eq!(
        labelled::key(&note, "x").to_string(),
        concat!(module_path!(), "::labelled:v0:1:x")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(longest(&["a", "abc"])), 3);
}
