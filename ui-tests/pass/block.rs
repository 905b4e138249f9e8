//! `cached_block!` sync and async, `local` with a non-serde value, a renamed-free path, and a
//! local `type Option` that the expansion must not pick up.
#![deny(warnings)]

use cache_runtime::{block_key, cached_block};

#[allow(dead_code)]
type Option = ();

#[derive(Clone)]
struct Rendered(String);

fn card(user: u32) -> String {
    cached_block!(
        name = "pass::card",
        ttl = 60,
        key = (user, "card"),
        value = String,
        { format!("user {user}") }
    )
}

fn local(user: u32) -> Rendered {
    cached_block!(
        name = "pass::local",
        local,
        capacity = 10,
        key = user,
        value = Rendered,
        { Rendered(user.to_string()) }
    )
}

fn one() -> u8 {
    cached_block!(name = "pass::one", value = u8, { 1 })
}

fn main() {
    assert_eq!(card(1), "user 1");
    assert_eq!(card(1), "user 1");
    assert_eq!(local(2).0, "2");
    assert_eq!(one(), 1);
    assert_eq!(block_key("pass::one", &()).to_string(), "pass::one:v0:()");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let note = 3_u64;
    let html = runtime.block_on(async {
        cached_block!(async, name = "pass::async", key = note, value = String, {
            async { note.to_string() }.await
        })
        .await
    });
    assert_eq!(html, "3");
}
