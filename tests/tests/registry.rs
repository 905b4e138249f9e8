//! `functions()` lists every `#[cached]` function called so far, with its counters and L1
//! entries; `clear_all_local()` empties every in-process layer (shared stores keep theirs).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::{cached, clear_all_local, functions};
use integration_tests::with_redis;

static MARKUP: AtomicU32 = AtomicU32::new(0);
#[cached(local, name = "registry::markup")]
fn markup(n: u64) -> String {
    MARKUP.fetch_add(1, SeqCst);
    format!("<p>{n}</p>")
}

#[cached(ttl = 60, name = "registry::author")]
fn author(id: u32) -> String {
    format!("user {id}")
}

#[cached(local, name = "registry::never_called")]
fn never_called(n: u64) -> u64 {
    n
}

#[test]
fn functions_lists_what_was_called_and_clear_all_local_empties_every_l1() {
    let (_guard, server) = with_redis("registry");
    for n in 0..5 {
        markup(n);
    }
    markup(1);
    author(7);
    let listed = functions();
    let find = |name: &str| listed.iter().find(|f| f.name == name).cloned();
    let markup_info = find("registry::markup").expect("markup is listed");
    assert_eq!(
        (markup_info.stats.misses, markup_info.stats.l1_hits),
        (5, 1)
    );
    assert_eq!(markup_info.entries, 5);
    assert_eq!(find("registry::author").expect("listed").stats.misses, 1);
    assert!(
        find("registry::never_called").is_none(),
        "only called functions"
    );
    let _ = never_called;

    clear_all_local();
    markup(1);
    assert_eq!(MARKUP.load(SeqCst), 6, "markup's L1 was emptied");
    server.reset_stats();
    assert_eq!(author(7), "user 7");
    assert_eq!(
        (server.calls("get"), author::stats().l2_hits),
        (1, 1),
        "author's L1 was emptied, Redis kept its value"
    );
}
