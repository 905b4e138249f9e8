//! Preload scopes over the disk store: the 50 keys of a page, written by another process, are
//! read in one `get_many` (one transaction); the calls inside the scope read nothing more.
//!
//! SQLite's statements cannot be counted from outside the store, so "no per-key read" is
//! proven by the counters: every call is a scope hit, none is an L2 hit (the GET path counts
//! each value it reads there), and no body runs.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::{cached, preload, preload_async, Config};
use integration_tests::disk::{peer_get, TempDir};
use integration_tests::serial;

static RUNS: AtomicU32 = AtomicU32::new(0);

/// The peer's function (same name, the peer's prefix).
#[cached(ttl = 600, name = "disk::page")]
fn page(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("page {n} by {}", std::process::id())
}

fn render(args: std::ops::Range<u64>) -> Vec<String> {
    args.map(page).collect()
}

#[test]
fn a_page_of_50_is_read_from_disk_in_one_preload() {
    let _guard = serial();
    let dir = TempDir::new("preload");
    let written = peer_get(dir.path(), 0, 50);
    assert_eq!(written.runs, 50);
    let writer = written.by[0].0;
    Config::new()
        .disk(dir.path())
        .prefix("peer")
        .install()
        .expect("install");

    let values = preload((0..50).map(page::key), || render(0..50));
    for (n, value) in values.iter().enumerate() {
        assert_eq!(value, &format!("page {n} by {writer}"));
    }
    let stats = page::stats();
    assert_eq!(RUNS.load(SeqCst), 0, "no body ran");
    assert_eq!(
        (
            stats.scope_hits,
            stats.l2_hits,
            stats.l2_errors,
            stats.misses
        ),
        (50, 0, 0, 0),
        "every value came from the scope's one read, none from a read of its own"
    );

    // The same page, async, after emptying L1.
    page::clear_local();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let values = runtime.block_on(preload_async((0..50).map(page::key), async {
        render(0..50)
    }));
    assert_eq!(values.len(), 50);
    let stats = page::stats();
    assert_eq!((stats.scope_hits, stats.l2_hits, stats.misses), (100, 0, 0));

    // Half the page is missing: those are computed once and written, the rest come from the
    // scope.
    page::clear_local();
    let values = preload((25..75).map(page::key), || render(25..75));
    assert_eq!(RUNS.load(SeqCst), 25, "only the absent half ran");
    assert_eq!(page::stats().scope_hits, 125);
    assert_eq!(page::stats().l2_hits, 0);
    assert_eq!(values[49], format!("page 74 by {}", std::process::id()));
    Config::uninstall();
    let next = peer_get(dir.path(), 0, 75);
    assert_eq!(
        (next.runs, next.l2_hits),
        (0, 75),
        "the computed half was written"
    );
}
