//! Companions get the function's visibility, so `pub(crate)` and `pub(super)` functions can be
//! invalidated and keyed from wherever the function itself can be called.
#![deny(warnings)]

mod notes {
    use cache_runtime::cached;

    #[cached(ttl = 60)]
    pub(crate) fn markup(id: u64) -> String {
        format!("<p>{id}</p>")
    }

    pub(crate) mod comments {
        use cache_runtime::cached;

        #[cached(ttl = 60)]
        pub(super) fn count(note: u64) -> u64 {
            note * 3
        }
    }

    pub(crate) fn comment_count(note: u64) -> (u64, String) {
        let n = comments::count(note);
        comments::count::invalidate(note);
        (n, comments::count::key(note).to_string())
    }
}

fn main() {
    assert_eq!(notes::markup(1), "<p>1</p>");
    notes::markup::invalidate(1);
    assert_eq!(
        notes::markup::key(1).to_string(),
        concat!(module_path!(), "::notes::markup:v0:1")
    );
    assert_eq!(notes::markup::stats().misses, 1);
    let (count, key) = notes::comment_count(2);
    assert_eq!(count, 6);
    assert_eq!(
        key,
        concat!(module_path!(), "::notes::comments::count:v0:2")
    );
}
