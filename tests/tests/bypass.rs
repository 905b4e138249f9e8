//! Calls that skip the layers: `bypass` / `bypass_async` (tests: every call inside runs its
//! body and touches no layer), `f::uncached(..)` (that one call) and `f::refresh(..)` (run the
//! body now and store it), against a real Redis.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Barrier;

use cache_runtime::{bypass, bypass_async, cached};
use integration_tests::with_redis;

static BALANCE: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
fn balance(account: u32) -> u32 {
    BALANCE.fetch_add(1, SeqCst) + account * 1000
}

static RATE: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
fn rate(account: u32) -> u32 {
    RATE.fetch_add(1, SeqCst);
    balance(account) + 1
}

#[test]
fn bypass_runs_every_body_inside_and_touches_no_layer() {
    let (_guard, server) = with_redis("bypass");
    let cached = balance(1);
    let (inside, other_thread) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            inside.wait();
            assert_eq!(balance(1), cached, "another thread still uses the cache");
            other_thread.wait();
        });
        let (rated, balanced) = bypass(|| {
            server.reset_stats();
            let answers = (rate(1), balance(1));
            inside.wait();
            other_thread.wait();
            answers
        });
        assert_ne!(rated, cached + 1, "rate and the balance it calls both ran");
        assert_ne!(balanced, cached);
    });
    assert_eq!(RATE.load(SeqCst), 1);
    assert_eq!(
        BALANCE.load(SeqCst),
        3,
        "the first call and two bypassed ones"
    );
    assert_eq!(balance(1), cached, "nothing bypassed was stored");
    assert_eq!(balance::stats().misses, 1, "bypassed runs are not misses");
    assert_eq!(server.calls("set"), 0, "nothing written while bypassed");
}

static FETCHES: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
async fn fetch(n: u32) -> u32 {
    tokio::task::yield_now().await;
    FETCHES.fetch_add(1, SeqCst);
    n
}

#[test]
fn bypass_async_follows_its_task_and_no_other() {
    let (_guard, _server) = with_redis("bypass-async");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        fetch(1).await;
        let bypassed = tokio::spawn(bypass_async(async {
            for _ in 0..20 {
                fetch(1).await;
                tokio::task::yield_now().await;
            }
        }));
        let plain = tokio::spawn(async {
            for _ in 0..20 {
                fetch(1).await;
                tokio::task::yield_now().await;
            }
        });
        bypassed.await.expect("bypassed task");
        plain.await.expect("plain task");
    });
    assert_eq!(
        FETCHES.load(SeqCst),
        21,
        "the bypassed task ran the body 20 times, the other never"
    );
}

static PAGE: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
fn page(n: u32) -> String {
    let run = PAGE.fetch_add(1, SeqCst);
    format!("page {n} (render {run}, rate {})", rate(n))
}

#[test]
fn uncached_runs_that_call_alone_and_the_body_still_uses_other_caches() {
    let (_guard, server) = with_redis("uncached");
    let stored = page(2);
    let rates = RATE.load(SeqCst);
    server.reset_stats();
    let fresh = page::uncached(2);
    assert_ne!(fresh, stored, "the body ran");
    assert_eq!(
        RATE.load(SeqCst),
        rates,
        "rate(2) inside came from its cache"
    );
    assert_eq!((server.calls("get"), server.calls("set")), (0, 0));
    assert_eq!(page(2), stored, "the stored value is untouched");
}

static QUOTE: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
fn quote(n: u32) -> u32 {
    QUOTE.fetch_add(1, SeqCst) * 100 + n
}

#[cached(ttl = 60, name = "bypass::quote_reader")]
fn quote_reader(n: u32) -> u32 {
    n
}

#[test]
fn refresh_computes_now_and_every_thread_then_sees_the_new_value() {
    let (_guard, server) = with_redis("refresh");
    let old = quote(3);
    let (held, refreshed) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(quote(3), old);
            assert_eq!(quote(3), old, "in this thread's front table");
            held.wait();
            refreshed.wait();
            assert_ne!(quote(3), old, "the refreshed value replaced the front copy");
        });
        held.wait();
        server.reset_stats();
        let new = quote::refresh(3);
        let calls = (server.calls("get"), server.calls("set"));
        refreshed.wait();
        assert_ne!(new, old);
        assert_eq!(calls, (0, 1), "computed and stored, nothing read");
    });
    let new = quote(3);
    quote::clear_local();
    assert_eq!(quote(3), new, "Redis holds the refreshed value");
    assert_eq!(QUOTE.load(SeqCst), 2);
    let _ = quote_reader(0);
}
