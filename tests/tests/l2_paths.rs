//! The read and write path against a real Redis: what each kind of call sends, counted by
//! Redis itself (`INFO commandstats`).
//!
//! Sync tests are plain `#[test]`s: no tokio runtime exists while they run. Async tests run on
//! a `current_thread` runtime, the one most easily blocked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cache_runtime::{cached, Config, Key, Stats};
use integration_tests::{with_redis, RedisServer};
use tokio::sync::Notify;

const TTL: Duration = Duration::from_secs(60);

/// The body of every function here: counts the run and says who computed the value.
fn compute(runs: &AtomicU32, who: &str, n: u64) -> String {
    runs.fetch_add(1, SeqCst);
    format!("{who} computed {n}")
}

/// Commands sent since the last reset, leaving out the harness' own (`INFO`, `CONFIG
/// RESETSTAT`, and the `PING` and `CLIENT SETINFO` of each harness connection) and the
/// coherence announcements (a `PUBLISH` pipelined with each write or removal, in its
/// round-trip: see `coherence.rs`).
fn sent(server: &RedisServer) -> BTreeMap<String, u64> {
    server
        .command_counts()
        .into_iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "info" | "ping" | "config|resetstat" | "client|setinfo" | "publish"
            )
        })
        .collect()
}

fn nothing() -> BTreeMap<String, u64> {
    BTreeMap::new()
}

fn gets_and_sets(server: &RedisServer) -> (u64, u64) {
    (server.calls("get"), server.calls("set"))
}

fn exists(server: &RedisServer, key: &Key) -> bool {
    redis::cmd("EXISTS")
        .arg(key.to_string())
        .query(&mut server.connection())
        .expect("EXISTS")
}

fn key_count(server: &RedisServer) -> u64 {
    redis::cmd("DBSIZE")
        .query(&mut server.connection())
        .expect("DBSIZE")
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn assert_no_runtime() {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "a sync test must run without any tokio runtime"
    );
}

/// A `#[cached]` function under test, seen the same way whether it is sync or async.
struct Subject<'a> {
    call: &'a dyn Fn(u64) -> String,
    who: &'static str,
    runs: &'a AtomicU32,
    stats: fn() -> Stats,
    key: fn(u64) -> Key,
}

impl Subject<'_> {
    fn computed(&self, n: u64) -> String {
        format!("{} computed {n}", self.who)
    }

    fn runs(&self) -> u32 {
        self.runs.load(SeqCst)
    }
}

/// The [`Subject`] of a sync function, or of an async one called through `rt.block_on`.
macro_rules! subject {
    ($f:ident, $runs:expr) => {
        Subject {
            call: &$f,
            who: stringify!($f),
            runs: &$runs,
            stats: $f::stats,
            key: $f::key,
        }
    };
    ($f:ident, $runs:expr, on $rt:expr) => {
        Subject {
            call: &|n| $rt.block_on($f(n)),
            who: stringify!($f),
            runs: &$runs,
            stats: $f::stats,
            key: $f::key,
        }
    };
}

/// A miss everywhere: one GET, one SET whose expiry is the TTL, the body once.
fn check_full_miss(server: &RedisServer, f: &Subject) {
    assert_eq!((f.call)(1), f.computed(1));
    assert_eq!(gets_and_sets(server), (1, 1));
    assert_eq!(
        sent(server),
        BTreeMap::from([("get".into(), 1), ("set".into(), 1)])
    );
    assert_eq!(f.runs(), 1);
    assert_eq!((f.stats)().misses, 1);
    let pttl: i64 = redis::cmd("PTTL")
        .arg((f.key)(1).to_string())
        .query(&mut server.connection())
        .expect("PTTL");
    let ttl_ms = TTL.as_millis() as i64;
    assert!(
        (ttl_ms - 5_000..=ttl_ms).contains(&pttl),
        "PTTL {pttl} ms is not within the {ttl_ms} ms TTL"
    );
}

/// Once a value is in L1, calls send nothing at all.
fn check_l1_hit_sends_nothing(server: &RedisServer, f: &Subject) {
    assert_eq!((f.call)(1), f.computed(1));
    server.reset_stats();
    for _ in 0..5 {
        assert_eq!((f.call)(1), f.computed(1));
    }
    assert_eq!(sent(server), nothing());
    assert_eq!(f.runs(), 1);
    assert_eq!((f.stats)().l1_hits, 5);
}

/// An L1 miss with the value in Redis: `writer` stores it, `reader` (same cache name, cold L1)
/// gets it with exactly one GET and keeps it in L1.
fn check_l2_hit(server: &RedisServer, writer: &dyn Fn(u64) -> String, reader: &Subject) {
    let written = writer(1);
    assert_ne!(written, reader.computed(1));
    server.reset_stats();
    assert_eq!((reader.call)(1), written);
    assert_eq!(sent(server), BTreeMap::from([("get".into(), 1)]));
    assert_eq!(reader.runs(), 0);
    assert_eq!((reader.stats)().l2_hits, 1);
    assert_eq!((reader.call)(1), written, "backfilled into L1");
    assert_eq!(sent(server), BTreeMap::from([("get".into(), 1)]));
    assert_eq!((reader.stats)().l1_hits, 1);
}

/// `invalidate` deletes the key from Redis and the value from L1: the next call recomputes.
fn check_invalidate(server: &RedisServer, f: &Subject, invalidate: &dyn Fn(u64)) {
    assert_eq!((f.call)(1), f.computed(1));
    assert!(exists(server, &(f.key)(1)));
    server.reset_stats();
    invalidate(1);
    assert_eq!(sent(server), BTreeMap::from([("del".into(), 1)]));
    assert!(!exists(server, &(f.key)(1)));
    assert_eq!((f.call)(1), f.computed(1));
    assert_eq!(f.runs(), 2);
    assert_eq!(gets_and_sets(server), (1, 1));
}

// ---- sync ----------------------------------------------------------------------------------

static SYNC_FULL_MISS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
fn sync_full_miss(n: u64) -> String {
    compute(&SYNC_FULL_MISS, "sync_full_miss", n)
}

#[test]
fn sync_full_miss_sends_one_get_and_one_set_with_expiry_without_a_runtime() {
    let (_guard, server) = with_redis("paths");
    assert_no_runtime();
    check_full_miss(&server, &subject!(sync_full_miss, SYNC_FULL_MISS));
}

static SYNC_L1_HIT: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
fn sync_l1_hit(n: u64) -> String {
    compute(&SYNC_L1_HIT, "sync_l1_hit", n)
}

#[test]
fn sync_l1_hit_sends_nothing() {
    let (_guard, server) = with_redis("paths");
    assert_no_runtime();
    check_l1_hit_sends_nothing(&server, &subject!(sync_l1_hit, SYNC_L1_HIT));
}

static SYNC_WRITER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL, name = "paths::sync_shared")]
fn sync_writer(n: u64) -> String {
    compute(&SYNC_WRITER, "sync_writer", n)
}

static SYNC_READER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL, name = "paths::sync_shared")]
fn sync_reader(n: u64) -> String {
    compute(&SYNC_READER, "sync_reader", n)
}

#[test]
fn sync_l1_miss_with_value_in_redis_sends_one_get_no_set_and_backfills_l1() {
    let (_guard, server) = with_redis("paths");
    assert_no_runtime();
    check_l2_hit(&server, &sync_writer, &subject!(sync_reader, SYNC_READER));
}

static SYNC_INVALIDATED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
fn sync_invalidated(n: u64) -> String {
    compute(&SYNC_INVALIDATED, "sync_invalidated", n)
}

#[test]
fn sync_invalidate_removes_the_entry_from_l1_and_redis() {
    let (_guard, server) = with_redis("paths");
    check_invalidate(
        &server,
        &subject!(sync_invalidated, SYNC_INVALIDATED),
        &sync_invalidated::invalidate,
    );
}

// ---- async ---------------------------------------------------------------------------------

static ASYNC_FULL_MISS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
async fn async_full_miss(n: u64) -> String {
    compute(&ASYNC_FULL_MISS, "async_full_miss", n)
}

#[test]
fn async_full_miss_sends_one_get_and_one_set_with_expiry() {
    let (_guard, server) = with_redis("paths");
    let rt = current_thread_runtime();
    check_full_miss(&server, &subject!(async_full_miss, ASYNC_FULL_MISS, on rt));
}

static ASYNC_L1_HIT: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
async fn async_l1_hit(n: u64) -> String {
    compute(&ASYNC_L1_HIT, "async_l1_hit", n)
}

#[test]
fn async_l1_hit_sends_nothing() {
    let (_guard, server) = with_redis("paths");
    let rt = current_thread_runtime();
    check_l1_hit_sends_nothing(&server, &subject!(async_l1_hit, ASYNC_L1_HIT, on rt));
}

static ASYNC_WRITER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL, name = "paths::async_shared")]
async fn async_writer(n: u64) -> String {
    compute(&ASYNC_WRITER, "async_writer", n)
}

static ASYNC_READER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL, name = "paths::async_shared")]
async fn async_reader(n: u64) -> String {
    compute(&ASYNC_READER, "async_reader", n)
}

#[test]
fn async_l1_miss_with_value_in_redis_sends_one_get_no_set_and_backfills_l1() {
    let (_guard, server) = with_redis("paths");
    let rt = current_thread_runtime();
    check_l2_hit(
        &server,
        &|n| rt.block_on(async_writer(n)),
        &subject!(async_reader, ASYNC_READER, on rt),
    );
}

static ASYNC_INVALIDATED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
async fn async_invalidated(n: u64) -> String {
    compute(&ASYNC_INVALIDATED, "async_invalidated", n)
}

#[test]
fn async_invalidate_removes_the_entry_from_l1_and_redis() {
    let (_guard, server) = with_redis("paths");
    let rt = current_thread_runtime();
    check_invalidate(
        &server,
        &subject!(async_invalidated, ASYNC_INVALIDATED, on rt),
        &|n| rt.block_on(async_invalidated::invalidate(n)),
    );
}

/// Runs `f` on its own thread; fails the test when it has not finished within `limit` (a
/// blocked runtime would otherwise hang the test forever).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || done.send(f()));
    match result.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("not finished after {limit:?}: the runtime thread is blocked")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the runtime thread panicked"),
    }
}

static ENTERED: Notify = Notify::const_new();
static RELEASE: Notify = Notify::const_new();
static GATED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
async fn gated(n: u64) -> String {
    ENTERED.notify_one();
    RELEASE.notified().await;
    compute(&GATED, "gated", n)
}

static UNGATED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
async fn ungated(n: u64) -> String {
    compute(&UNGATED, "ungated", n)
}

/// A leader computing a key, a second caller of the same key waiting for it, and a third
/// task going to Redis, all on one `current_thread` runtime: if waiting blocked the thread, the
/// leader could never be released.
#[test]
fn async_waiter_and_leader_both_progress_on_a_current_thread_runtime() {
    let (_guard, server) = with_redis("paths");
    let (leader, follower, other) = within(Duration::from_secs(10), || {
        current_thread_runtime().block_on(async {
            let leader = tokio::spawn(gated(1));
            ENTERED.notified().await;
            let follower = tokio::spawn(gated(1));
            let other = ungated(2).await;
            RELEASE.notify_one();
            (leader.await.unwrap(), follower.await.unwrap(), other)
        })
    });
    assert_eq!(leader, "gated computed 1");
    assert_eq!(follower, "gated computed 1");
    assert_eq!(other, "ungated computed 2");
    assert_eq!(GATED.load(SeqCst), 1, "the follower waited for the leader");
    assert_eq!(gated::stats().l1_hits, 1);
    assert_eq!(gets_and_sets(&server), (2, 2));
}

static PAUSED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
async fn paused(n: u64) -> String {
    compute(&PAUSED, "paused", n)
}

/// While a call waits on a Redis that is slow to answer (paused with `CLIENT PAUSE`), another
/// task on the same `current_thread` runtime keeps running.
#[test]
fn async_redis_round_trip_does_not_block_a_current_thread_runtime() {
    let (_guard, server) = with_redis("paths");
    let pause = Duration::from_millis(150);
    let rt = current_thread_runtime();
    assert_eq!(
        rt.block_on(paused(1)),
        "paused computed 1",
        "connection opened"
    );
    let ticks = Arc::new(AtomicU32::new(0));
    let (value, waited) = rt.block_on(async {
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, SeqCst);
                }
            }
        });
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(pause.as_millis() as u64)
            .arg("ALL")
            .query(&mut server.connection())
            .expect("CLIENT PAUSE");
        let started = Instant::now();
        let value = paused(2).await;
        let waited = started.elapsed();
        ticker.abort();
        (value, waited)
    });
    assert_eq!(value, "paused computed 2");
    assert!(
        waited >= pause / 2,
        "the call took {waited:?}: it did not wait for the paused server, so nothing is shown"
    );
    let ticks = ticks.load(SeqCst);
    assert!(
        ticks >= 5,
        "only {ticks} ticks of 5 ms while the call waited {waited:?} on Redis"
    );
}

// ---- TTL, configuration, key layout ---------------------------------------------------------

static REMAINING_WRITER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 2, name = "paths::remaining")]
fn remaining_writer(n: u64) -> String {
    compute(&REMAINING_WRITER, "remaining_writer", n)
}

static REMAINING_READER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 2, name = "paths::remaining")]
fn remaining_reader(n: u64) -> String {
    compute(&REMAINING_READER, "remaining_reader", n)
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// Written at 0 s with a 2 s TTL, read into another function's L1 at 1.2 s: that L1 entry
/// expires at 2 s with the Redis one, not at 3.2 s.
#[test]
fn backfill_from_redis_keeps_the_remaining_ttl() {
    let (_guard, server) = with_redis("paths");
    let written_at = Instant::now();
    assert_eq!(remaining_writer(1), "remaining_writer computed 1");
    sleep_until(written_at + Duration::from_millis(1200));
    server.reset_stats();
    assert_eq!(remaining_reader(1), "remaining_writer computed 1");
    assert_eq!(remaining_reader::stats().l2_hits, 1);
    sleep_until(written_at + Duration::from_millis(1500));
    assert_eq!(remaining_reader(1), "remaining_writer computed 1");
    assert_eq!(server.calls("get"), 1, "still fresh in L1 at 1.5 s");
    sleep_until(written_at + Duration::from_millis(2400));
    assert_eq!(remaining_reader(1), "remaining_reader computed 1");
    assert_eq!(server.calls("get"), 2, "expired from L1 by 2.4 s");
    assert_eq!(REMAINING_READER.load(SeqCst), 1);
}

static LOCAL_ONLY: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL, local)]
fn local_only(n: u64) -> String {
    compute(&LOCAL_ONLY, "local_only", n)
}

#[test]
fn local_functions_send_nothing_with_redis_installed() {
    let (_guard, server) = with_redis("paths");
    assert_eq!(local_only(1), "local_only computed 1");
    assert_eq!(local_only(1), "local_only computed 1");
    assert_eq!(local_only(2), "local_only computed 2");
    assert_eq!(LOCAL_ONLY.load(SeqCst), 2);
    assert_eq!(local_only::stats().l1_hits, 1);
    assert_eq!(sent(&server), nothing());
    assert_eq!(key_count(&server), 0);
}

static UNCONFIGURED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL)]
fn unconfigured(n: u64) -> String {
    compute(&UNCONFIGURED, "unconfigured", n)
}

#[test]
fn after_uninstall_nothing_is_sent() {
    let (_guard, server) = with_redis("paths");
    Config::uninstall();
    assert_eq!(unconfigured(1), "unconfigured computed 1");
    assert_eq!(unconfigured(1), "unconfigured computed 1");
    assert_eq!(UNCONFIGURED.load(SeqCst), 1, "still cached in L1");
    assert_eq!(sent(&server), nothing());
    assert_eq!(key_count(&server), 0);
}

static VERSIONED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = TTL, name = "paths::versioned", version = 3)]
fn versioned(n: u64) -> String {
    compute(&VERSIONED, "versioned", n)
}

#[test]
fn prefix_and_version_are_part_of_the_stored_key() {
    let (_guard, server) = with_redis("layout");
    assert_eq!(versioned(7), "versioned computed 7");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut server.connection())
        .expect("KEYS");
    assert_eq!(keys, ["layout:paths::versioned:v3:7"]);
    assert_eq!(versioned::key(7).to_string(), keys[0]);
    assert!(exists(&server, &versioned::key(7)));
}
