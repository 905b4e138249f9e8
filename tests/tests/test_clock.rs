//! The test clock (`cache_runtime::testing::advance`, the `testing` feature): an hour-long
//! TTL runs out without an hour or a sleep, in this thread's front table, in L1 and with
//! Redis behind them. Every test here moves the process-wide clock, so they run one at a
//! time and in a binary of their own. The disk store is covered as well.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use cache_runtime::{cached, testing};
use integration_tests::disk::TempDir;
use integration_tests::{serial, with_redis};

const PAST_AN_HOUR: Duration = Duration::from_secs(3601);

static FRONT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 3600, local)]
fn hourly_front(n: u32) -> u32 {
    FRONT_RUNS.fetch_add(1, SeqCst);
    n + 1
}

#[test]
fn an_hour_passes_in_this_threads_front_table() {
    let _serial = serial();
    hourly_front(1);
    hourly_front(1);
    assert_eq!(FRONT_RUNS.load(SeqCst), 1, "the second call is a hit");
    assert_eq!(hourly_front::stats().l1_hits, 1);

    testing::advance(Duration::from_secs(3590));
    hourly_front(1);
    assert_eq!(
        FRONT_RUNS.load(SeqCst),
        1,
        "ten seconds are left of the hour"
    );

    testing::advance(Duration::from_secs(11));
    hourly_front(1);
    assert_eq!(
        FRONT_RUNS.load(SeqCst),
        2,
        "the hour passed: the body ran again"
    );
}

static L1_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 3600, local)]
fn hourly_l1(n: u32) -> u32 {
    L1_RUNS.fetch_add(1, SeqCst);
    n + 1
}

/// Calls `call` on a new thread, whose front table is empty: a hit there comes from L1.
fn on_fresh_thread(call: fn()) {
    thread::spawn(call).join().unwrap();
}

#[test]
fn an_hour_passes_in_l1() {
    let _serial = serial();
    on_fresh_thread(|| {
        hourly_l1(7);
    });
    on_fresh_thread(|| {
        hourly_l1(7);
    });
    assert_eq!(L1_RUNS.load(SeqCst), 1, "the second thread hit L1");
    assert_eq!(hourly_l1::stats().l1_hits, 1);

    testing::advance(PAST_AN_HOUR);
    on_fresh_thread(|| {
        hourly_l1(7);
    });
    assert_eq!(
        L1_RUNS.load(SeqCst),
        2,
        "L1 did not serve the expired entry"
    );
    assert_eq!(hourly_l1::stats().l1_hits, 1);
}

/// The part the shared-store tests have in common: `call` computes and writes the value, a
/// cold L1 reads it back (a hit in the store), then L1 is emptied again and the clock moved
/// past the hour.
fn read_back_then_pass_the_hour(
    call: fn(),
    clear_local: fn(),
    runs: &AtomicUsize,
    l2_hits: fn() -> u64,
) {
    call();
    clear_local();
    call();
    assert_eq!(runs.load(SeqCst), 1, "read back before the hour");
    assert_eq!(l2_hits(), 1);
    clear_local();
    testing::advance(PAST_AN_HOUR);
}

static REDIS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 3600)]
fn hourly_shared(n: u32) -> u32 {
    REDIS_RUNS.fetch_add(1, SeqCst);
    n + 1
}

/// Redis keeps the key (its own TTL runs on its own clock), but the expiry written into the
/// value has passed on the moved clock, so the value read back is a miss.
#[test]
fn an_hour_passes_for_values_read_back_from_redis() {
    let (_serial, server) = with_redis("test-clock");
    read_back_then_pass_the_hour(
        || {
            hourly_shared(3);
        },
        hourly_shared::clear_local,
        &REDIS_RUNS,
        || hourly_shared::stats().l2_hits,
    );
    assert_eq!(server.calls("set"), 1, "the value went to Redis");
    let key = hourly_shared::key(3).to_string();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query(&mut server.connection())
        .unwrap();
    assert!(
        pttl > 3_000_000,
        "Redis still holds the key ({pttl} ms left)"
    );

    let gets = server.calls("get");
    hourly_shared(3);
    assert_eq!(server.calls("get"), gets + 1, "Redis was asked");
    assert_eq!(
        REDIS_RUNS.load(SeqCst),
        2,
        "its value was past its expiry: a miss"
    );
    let stats = hourly_shared::stats();
    assert_eq!((stats.l2_hits, stats.misses), (1, 2));
    assert_eq!(server.calls("set"), 2, "the new value replaced it");
}

static DISK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 3600)]
fn hourly_on_disk(n: u32) -> u32 {
    DISK_RUNS.fetch_add(1, SeqCst);
    n + 1
}

/// The disk store's expiry is on the moved clock too.
#[test]
fn an_hour_passes_for_values_read_back_from_disk() {
    let _serial = serial();
    let dir = TempDir::new("test-clock");
    cache_runtime::Config::new()
        .disk(dir.path())
        .install()
        .unwrap();
    read_back_then_pass_the_hour(
        || {
            hourly_on_disk(4);
        },
        hourly_on_disk::clear_local,
        &DISK_RUNS,
        || hourly_on_disk::stats().l2_hits,
    );
    hourly_on_disk(4);
    assert_eq!(
        DISK_RUNS.load(SeqCst),
        2,
        "the row was past its expiry: a miss"
    );
    assert_eq!(hourly_on_disk::stats().l2_hits, 1);
}
