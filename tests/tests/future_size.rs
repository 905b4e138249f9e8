//! The future of a cached `async fn` stays small: a handler that awaits many of them, or
//! joins them, holds each one's state, and every move of a future copies all of it.

use cache_runtime::cached;

#[cached(ttl = 60)]
async fn fragment(id: u64) -> String {
    format!("fragment {id}")
}

async fn plain_fragment(id: u64) -> String {
    format!("fragment {id}")
}

/// What `#[cached]` may add to the body's own future. The steps of a miss that may wait (the
/// single flight, the shared store, the lock, and storing the result) are awaited in boxes of
/// their own; before that, they were part of every call's future, 2.5 KiB in all.
const MOST_ADDED: usize = 1536;

#[test]
fn a_cached_async_fns_future_is_at_most_a_kibibyte_and_a_half_more_than_its_body() {
    let cached = std::mem::size_of_val(&fragment(1));
    let plain = std::mem::size_of_val(&plain_fragment(1));
    assert!(
        cached <= plain + MOST_ADDED,
        "the cached future is {cached} bytes, the plain one {plain}"
    );
}
