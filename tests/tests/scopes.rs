//! Preload scopes against a real Redis: one MGET per scope, no GET inside it, and every bad
//! input (empty, duplicates, local keys, unused keys, Redis down, huge lists).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cache_runtime::{cached, preload, preload_async, Key};
use integration_tests::with_redis;

/// `$writer` fills Redis; `$reader` shares its entries but has its own cold L1.
macro_rules! fragment {
    ($writer:ident, $reader:ident, $runs:ident, $name:literal) => {
        static $runs: AtomicUsize = AtomicUsize::new(0);

        #[cached(ttl = 60, name = $name)]
        fn $writer(n: u64) -> String {
            format!("{} {n}", $name)
        }

        #[cached(ttl = 60, name = $name)]
        fn $reader(n: u64) -> String {
            $runs.fetch_add(1, SeqCst);
            format!("{} {n}", $name)
        }
    };
}

fragment!(write_markup, markup, MARKUP_RUNS, "scope::markup");
fragment!(write_card, card, CARD_RUNS, "scope::card");

#[test]
fn one_mget_answers_every_call_in_the_scope() {
    let (_guard, server) = with_redis("one-mget");
    for n in 0..40 {
        write_markup(n);
    }
    for n in 0..10 {
        write_card(n);
    }
    server.reset_stats();
    let keys = (0..40)
        .map(markup::key)
        .chain((0..10).map(card::key))
        .collect::<Vec<Key>>();
    let page = preload(keys, || {
        let mut page = String::new();
        for n in 0..40 {
            page += &markup(n);
        }
        for n in 0..10 {
            page += &card(n);
        }
        page
    });
    assert!(page.contains("scope::markup 39") && page.contains("scope::card 9"));
    assert_eq!((server.calls("mget"), server.calls("get")), (1, 0));
    assert_eq!(markup::stats().scope_hits, 40);
    assert_eq!(card::stats().scope_hits, 10);
    assert_eq!(MARKUP_RUNS.load(SeqCst) + CARD_RUNS.load(SeqCst), 0);
    // Backfilled: after the scope, the values come from L1.
    markup(3);
    card(3);
    assert_eq!(server.calls("get"), 0);
    // A scope over keys L1 holds sends nothing.
    preload((0..5).map(markup::key), || markup(1));
    assert_eq!(server.calls("mget"), 1);
}

static ABSENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "scope::absent")]
fn absent(n: u64) -> String {
    ABSENT_RUNS.fetch_add(1, SeqCst);
    format!("scope::absent {n}")
}

#[test]
fn a_key_the_mget_found_absent_is_computed_and_written_once() {
    let (_guard, server) = with_redis("absent");
    let value = preload([absent::key(1), absent::key(1), absent::key(1)], || {
        let first = absent(1);
        assert_eq!(absent(1), first);
        first
    });
    assert_eq!(value, "scope::absent 1");
    assert_eq!(ABSENT_RUNS.load(SeqCst), 1);
    let counts = (
        server.calls("mget"),
        server.calls("get"),
        server.calls("set"),
    );
    assert_eq!(
        counts,
        (1, 0, 1),
        "duplicate keys are asked once; absent keys not again"
    );
}

#[cached(ttl = 60, local)]
fn local_only(n: u64) -> u64 {
    n
}

static UNUSED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "scope::unused")]
fn write_unused(n: u64) -> String {
    format!("scope::unused {n}")
}

/// Only its keys are used: the scope asks for them, the body never calls it.
#[allow(dead_code)]
#[cached(ttl = 60, name = "scope::unused")]
fn unused(n: u64) -> String {
    UNUSED_RUNS.fetch_add(1, SeqCst);
    format!("scope::unused {n}")
}

#[test]
fn empty_local_and_unused_keys_are_harmless() {
    let (_guard, server) = with_redis("harmless");
    assert_eq!(preload(Vec::<Key>::new(), || 5), 5);
    assert_eq!(
        preload([local_only::key(1), local_only::key(2)], || local_only(1)),
        1
    );
    assert_eq!(
        server.calls("mget"),
        0,
        "no MGET for no keys or only local keys"
    );
    write_unused(1);
    assert_eq!(
        preload([unused::key(1), unused::key(2)], || "body ignores them"),
        "body ignores them"
    );
    assert_eq!(server.calls("mget"), 1);
    assert_eq!(UNUSED_RUNS.load(SeqCst), 0);
}

fragment!(write_outer, outer, OUTER_RUNS, "scope::outer");
fragment!(write_inner, inner, INNER_RUNS, "scope::inner");

#[test]
fn nested_scopes_see_the_outer_ones() {
    let (_guard, server) = with_redis("nested");
    write_outer(1);
    write_inner(1);
    server.reset_stats();
    preload([outer::key(1)], || {
        preload([inner::key(1)], || {
            assert_eq!(inner(1), "scope::inner 1");
            assert_eq!(outer(1), "scope::outer 1");
        })
    });
    assert_eq!((server.calls("mget"), server.calls("get")), (2, 0));
    assert_eq!(outer::stats().scope_hits + inner::stats().scope_hits, 2);
}

fragment!(write_down, down, DOWN_RUNS, "scope::down");

#[test]
fn a_dead_redis_degrades_the_scope_to_normal_calls() {
    let (_guard, mut server) = with_redis("down");
    write_down(1);
    server.kill();
    let value = preload([down::key(1), down::key(2)], || down(1) + &down(2));
    assert_eq!(value, "scope::down 1scope::down 2");
    assert_eq!(DOWN_RUNS.load(SeqCst), 2);
    assert!(down::stats().l2_errors >= 1);
}

fragment!(write_many, many, MANY_RUNS, "scope::many");

#[test]
fn a_large_key_list_is_split_into_bounded_mgets_in_one_round_trip() {
    let (_guard, server) = with_redis("many");
    for n in 0..1000 {
        write_many(n);
    }
    server.reset_stats();
    let total = preload((0..1000).map(many::key), || {
        (0..1000).map(|n| many(n).len()).sum::<usize>()
    });
    assert!(total > 0);
    assert_eq!(server.calls("mget"), 4, "1000 keys in batches of 256");
    assert_eq!(server.calls("get"), 0);
    assert_eq!(many::stats().scope_hits, 1000);
    assert_eq!(MANY_RUNS.load(SeqCst), 0);
}

static TASK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "scope::task")]
fn write_task(n: u64) -> String {
    format!("scope::task {n}")
}
fragment!(write_lone, lone, LONE_RUNS, "scope::lone");

#[cached(ttl = 60, name = "scope::task")]
async fn task_value_async(n: u64) -> String {
    TASK_RUNS.fetch_add(1, SeqCst);
    format!("scope::task {n}")
}

#[test]
fn an_async_scope_follows_its_task_and_no_other() {
    let (_guard, server) = with_redis("async");
    for n in 0..32 * 4 {
        write_task(n);
    }
    for n in 0..8 {
        write_lone(n);
    }
    server.reset_stats();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let scoped: Vec<_> = (0..32u64)
            .map(|t| {
                tokio::spawn(async move {
                    let keys: Vec<Key> = (t * 4..t * 4 + 4).map(task_value_async::key).collect();
                    preload_async(keys, async move {
                        let mut out = Vec::new();
                        for n in t * 4..t * 4 + 4 {
                            tokio::task::yield_now().await; // may resume on another worker
                            out.push(task_value_async(n).await);
                        }
                        // A task spawned inside the scope does not inherit it.
                        let spawned = tokio::spawn(async { lone(7) }).await.unwrap();
                        (out, spawned)
                    })
                    .await
                })
            })
            .collect();
        // A task without a scope, interleaved with the scoped ones.
        let unscoped = tokio::spawn(async {
            let mut out = Vec::new();
            for n in 0..7 {
                tokio::task::yield_now().await;
                out.push(lone(n));
            }
            out
        });
        for task in scoped {
            let (values, spawned) = task.await.unwrap();
            assert_eq!(values.len(), 4);
            assert_eq!(spawned, "scope::lone 7");
        }
        assert_eq!(unscoped.await.unwrap().len(), 7);
    });
    assert_eq!(server.calls("mget"), 32);
    assert_eq!(task_value_async::stats().scope_hits, 128);
    assert_eq!(TASK_RUNS.load(SeqCst), 0);
    // `lone` was never in a scope: 8 keys, one GET each (7 by the unscoped task, key 7 once).
    assert_eq!(server.calls("get"), 8);
    assert_eq!(lone::stats().scope_hits, 0);
    assert_eq!(LONE_RUNS.load(SeqCst), 0);
}

#[test]
fn the_preload_macro_wraps_sync_and_async_bodies() {
    let (_guard, server) = with_redis("macro");
    write_markup(500);
    write_card(500);
    server.reset_stats();
    let sync = cache_runtime::preload!([markup::key(500)] => markup(500));
    assert_eq!(sync, "scope::markup 500");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fut = cache_runtime::preload!([card::key(500)] => async move { card(500) });
    assert_eq!(rt.block_on(fut), "scope::card 500");
    assert_eq!((server.calls("mget"), server.calls("get")), (2, 0));
}
