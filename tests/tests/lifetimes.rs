//! Lifetimes decided per call or per value: `stale_if_error` (the last good value instead of a
//! failed body, from L1 or from Redis), `cache_none` / `none_ttl` (a `None` is a value), and
//! `expires` (each value's own lifetime). Short lifetimes, waited out with the real clock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::cached;
use integration_tests::values::Token;
use integration_tests::{serial, with_redis};

fn wait(d: Duration) {
    std::thread::sleep(d);
}

static PRICE_FAILS: AtomicBool = AtomicBool::new(false);
static PRICE_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(local, ttl = Duration::from_millis(100), stale_if_error = 10)]
fn price(item: u32) -> Result<u64, String> {
    let run = PRICE_RUNS.fetch_add(1, SeqCst) + 1;
    if PRICE_FAILS.load(SeqCst) {
        Err(format!("backend down (run {run})"))
    } else {
        Ok(item as u64 * 100 + run as u64)
    }
}

#[test]
fn an_expired_value_stands_in_for_a_failed_body() {
    let _guard = serial();
    assert_eq!(price(1), Ok(101));
    wait(Duration::from_millis(150));
    PRICE_FAILS.store(true, SeqCst);
    assert_eq!(price(1), Ok(101), "the last good value, not the error");
    let stats = price::stats();
    assert_eq!(
        (stats.misses, stats.stale_served),
        (2, 1),
        "the body ran and failed"
    );
    PRICE_FAILS.store(false, SeqCst);
    assert_eq!(price(1), Ok(103), "a working body replaces it");
    assert_eq!(price(2), Ok(204));
    PRICE_FAILS.store(true, SeqCst);
    assert!(
        price(3).is_err(),
        "nothing to stand in: the error is returned"
    );
}

static SHORT_FAILS: AtomicBool = AtomicBool::new(false);
#[cached(local, ttl = Duration::from_millis(100), stale_if_error = Duration::from_millis(1000))]
fn short_window(n: u32) -> Option<u32> {
    (!SHORT_FAILS.load(SeqCst)).then_some(n)
}

#[test]
fn past_the_window_the_failure_is_returned() {
    let _guard = serial();
    assert_eq!(short_window(7), Some(7));
    SHORT_FAILS.store(true, SeqCst);
    wait(Duration::from_millis(200));
    assert_eq!(
        short_window(7),
        Some(7),
        "None fails too: inside the window"
    );
    wait(Duration::from_millis(1100));
    assert_eq!(short_window(7), None, "past the window");
}

static REMOTE_FAILS: AtomicBool = AtomicBool::new(false);
#[cached(ttl = 1, stale_if_error = 60)]
fn quote(symbol: u32) -> Result<String, String> {
    if REMOTE_FAILS.load(SeqCst) {
        Err("upstream down".into())
    } else {
        Ok(format!("quote {symbol}"))
    }
}

/// A process whose memory is empty (a restart) serves the fleet's last good value from Redis,
/// which keeps entries for `ttl + stale_if_error`.
#[test]
fn a_cold_process_serves_the_last_good_value_from_redis() {
    let (_guard, server) = with_redis("stale-if-error");
    assert_eq!(quote(1), Ok("quote 1".into()));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(quote::key(1).to_string())
        .query(&mut server.connection())
        .expect("PTTL");
    assert!(pttl > 50_000, "kept for ttl + stale_if_error: {pttl} ms");
    quote::clear_local();
    wait(Duration::from_millis(1100));
    REMOTE_FAILS.store(true, SeqCst);
    assert_eq!(quote(1), Ok("quote 1".into()));
    assert_eq!(quote::stats().stale_served, 1);
    REMOTE_FAILS.store(false, SeqCst);
}

static FIND_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(local, ttl = 60, cache_none, none_ttl = Duration::from_millis(100))]
fn find_user(id: u32) -> Option<String> {
    FIND_RUNS.fetch_add(1, SeqCst);
    (id != 0).then(|| format!("user {id}"))
}

static PLAIN_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(local, ttl = 60)]
fn find_plain(id: u32) -> Option<String> {
    PLAIN_RUNS.fetch_add(1, SeqCst);
    (id != 0).then(|| format!("user {id}"))
}

#[test]
fn cache_none_caches_missing_ids_for_none_ttl() {
    let _guard = serial();
    for _ in 0..5 {
        assert_eq!(find_user(0), None);
        assert_eq!(find_plain(0), None);
    }
    assert_eq!(FIND_RUNS.load(SeqCst), 1, "None was cached");
    assert_eq!(
        PLAIN_RUNS.load(SeqCst),
        5,
        "without cache_none None is not cached"
    );
    assert_eq!(find_user(1).as_deref(), Some("user 1"));
    wait(Duration::from_millis(150));
    assert_eq!(find_user(0), None);
    assert_eq!(find_user(1).as_deref(), Some("user 1"));
    assert_eq!(
        FIND_RUNS.load(SeqCst),
        3,
        "None expired after none_ttl, Some kept its ttl"
    );
}

static LOOKUP_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, cache_none)]
fn lookup(id: u32) -> Result<Option<u32>, String> {
    LOOKUP_RUNS.fetch_add(1, SeqCst);
    Ok((id > 10).then_some(id))
}

#[test]
fn cache_none_with_redis_stores_the_none() {
    let (_guard, server) = with_redis("cache-none");
    assert_eq!(lookup(3), Ok(None));
    lookup::clear_local();
    assert_eq!(lookup(3), Ok(None), "read back from Redis");
    assert_eq!(LOOKUP_RUNS.load(SeqCst), 1);
    assert_eq!(server.calls("set"), 1);
}

static TOKEN_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, expires)]
fn token(user: u32) -> Token {
    let run = TOKEN_RUNS.fetch_add(1, SeqCst);
    Token {
        secret: format!("t{user}-{run}"),
        valid_ms: if user == 1 { 500 } else { 600_000 },
    }
}

#[test]
fn expires_gives_each_value_its_own_lifetime_capped_by_the_ttl() {
    let (_guard, server) = with_redis("expires");
    let first = token(1);
    let long = token(2);
    let pttl = |key: String| -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut server.connection())
            .expect("PTTL")
    };
    assert!(
        pttl(token::key(1).to_string()) <= 500,
        "its own 500 ms in Redis"
    );
    let capped = pttl(token::key(2).to_string());
    assert!(
        capped > 50_000 && capped <= 60_000,
        "capped at ttl: {capped} ms"
    );
    assert_eq!(token(1), first);
    wait(Duration::from_millis(600));
    assert_ne!(token(1), first, "recomputed after its own lifetime");
    assert_eq!(token(2), long, "the other still cached");
}

#[test]
fn hit_ratio_counts_every_layer_against_body_runs() {
    let _guard = serial();
    #[cached(local)]
    fn square(n: u64) -> u64 {
        n * n
    }
    assert_eq!(square::stats().hit_ratio(), 0.0, "no calls yet");
    square(2);
    square(2);
    square(2);
    square(3);
    assert_eq!(square::stats().hit_ratio(), 0.5);
}

static LOCAL_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, local_ttl = Duration::from_millis(500))]
fn profile(id: u32) -> String {
    LOCAL_RUNS.fetch_add(1, SeqCst);
    format!("profile {id}")
}

/// `local_ttl`: L1 lets the entry go before the shared store does; the next call reads it
/// from Redis, fresh, without running the body.
#[test]
fn local_ttl_sends_later_calls_to_the_shared_store() {
    let (_guard, server) = with_redis("local-ttl");
    assert_eq!(profile(1), "profile 1");
    assert_eq!(profile(1), "profile 1");
    assert_eq!(server.calls("get"), 1, "the second call was an L1 hit");
    wait(Duration::from_millis(600));
    assert_eq!(profile(1), "profile 1");
    assert_eq!(server.calls("get"), 2, "past local_ttl: read from Redis");
    assert_eq!(LOCAL_RUNS.load(SeqCst), 1, "fresh there: no body run");
    assert_eq!(profile::stats().l2_hits, 1);
}

static IDLE_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(local, ttl = 60, idle = Duration::from_millis(1000))]
fn session(id: u32) -> u32 {
    IDLE_RUNS.fetch_add(1, SeqCst);
    id
}

/// Called from a new thread each time, so that no front table answers for L1.
fn session_elsewhere(id: u32) -> u32 {
    std::thread::spawn(move || session(id)).join().unwrap()
}

#[test]
fn idle_entries_are_dropped_and_used_ones_stay() {
    let _guard = serial();
    session_elsewhere(1);
    session_elsewhere(2);
    for _ in 0..6 {
        wait(Duration::from_millis(250));
        session_elsewhere(2);
    }
    assert_eq!(
        IDLE_RUNS.load(SeqCst),
        2,
        "a key read every 250 ms stays past 1 s"
    );
    session_elsewhere(1);
    assert_eq!(IDLE_RUNS.load(SeqCst), 3, "the idle one was dropped");
}

static LRU_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(local, capacity = 100, policy = "lru")]
fn lru_kept(n: u32) -> u32 {
    LRU_RUNS.fetch_add(1, SeqCst);
    n
}

static LFU_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(local, capacity = 100)]
fn lfu_kept(n: u32) -> u32 {
    LFU_RUNS.fetch_add(1, SeqCst);
    n
}

/// 300 keys, each asked once, through an L1 of 100: LRU keeps the latest ones, TinyLFU (the
/// default) turns new keys away from a full cache (they were asked no more often than what
/// they would evict). Held keys are counted with `peek` from a thread of their own (no front
/// table).
#[test]
fn policy_lru_admits_new_keys_where_tinylfu_keeps_the_old_ones() {
    let _guard = serial();
    std::thread::spawn(|| {
        for n in 0..300 {
            lru_kept(n);
            lfu_kept(n);
        }
    })
    .join()
    .unwrap();
    let held = |peek: fn(u32) -> Option<u32>, range: std::ops::Range<u32>| {
        std::thread::spawn(move || range.filter(|&n| peek(n).is_some()).count())
            .join()
            .unwrap()
    };
    let (lru_new, lru_old) = (held(lru_kept::peek, 200..300), held(lru_kept::peek, 0..100));
    let lfu_new = held(lfu_kept::peek, 200..300);
    assert!(
        lru_new >= 80 && lru_old <= 20,
        "lru: {lru_new} new, {lru_old} old held"
    );
    assert!(lfu_new <= 20, "tinylfu: {lfu_new} of the newest 100 held");
}
