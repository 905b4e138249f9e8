//! L2 against a real Redis: the commands each path sends (from INFO commandstats), remaining
//! TTL on backfill, local functions, invalidation, async, and two processes sharing.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::{cached, Config};
use integration_tests::{serial, with_redis, RedisServer};

/// Two functions with one `name` share Redis entries, each with its own L1: `reader` sees what
/// `writer` stored only through Redis.
macro_rules! shared_pair {
    ($writer:ident, $reader:ident, $runs:ident, $name:literal, $ttl:expr) => {
        static $runs: AtomicUsize = AtomicUsize::new(0);

        #[cached(ttl = $ttl, name = $name)]
        fn $writer(n: u64) -> String {
            format!("value {n}")
        }

        #[cached(ttl = $ttl, name = $name)]
        fn $reader(n: u64) -> String {
            $runs.fetch_add(1, SeqCst);
            format!("recomputed {n}")
        }
    };
}

shared_pair!(write_a, read_a, READ_A_RUNS, "layer::a", 60);

#[test]
fn each_path_sends_exactly_its_commands() {
    let (_guard, server) = with_redis("paths");
    // Miss everywhere: one GET, one SET, body once.
    assert_eq!(write_a(1), "value 1");
    assert_eq!((server.calls("get"), server.calls("set")), (1, 1));
    // L1 hit: nothing.
    write_a(1);
    assert_eq!((server.calls("get"), server.calls("set")), (1, 1));
    // L1 miss, L2 hit: one GET, no SET, no body.
    assert_eq!(read_a(1), "value 1");
    assert_eq!((server.calls("get"), server.calls("set")), (2, 1));
    assert_eq!(READ_A_RUNS.load(SeqCst), 0);
    assert_eq!(read_a::stats().l2_hits, 1);
    // ...and the value is now in the reader's L1.
    read_a(1);
    assert_eq!(server.calls("get"), 2);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(write_a::key(1).to_string())
        .query(&mut server.connection())
        .unwrap();
    assert!(pttl > 55_000 && pttl <= 60_000, "PTTL {pttl}");
}

shared_pair!(
    write_b,
    read_b,
    READ_B_RUNS,
    "layer::b",
    Duration::from_millis(1500)
);

#[test]
fn a_backfilled_entry_keeps_only_its_remaining_lifetime() {
    let (_guard, server) = with_redis("remaining");
    write_b(1);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(read_b(1), "value 1"); // from Redis, ~0.5 s left
    std::thread::sleep(Duration::from_millis(600));
    // A full 1.5 s TTL from the backfill would still hold; the remaining 0.5 s does not.
    server.reset_stats();
    assert_eq!(read_b(1), "recomputed 1");
    assert_eq!(READ_B_RUNS.load(SeqCst), 1);
}

#[cached(ttl = 60, local)]
fn only_here(n: u64) -> u64 {
    n + 1
}

#[cached(ttl = 60)]
fn plain(n: u64) -> u64 {
    n + 2
}

#[test]
fn local_functions_and_an_uninstalled_config_send_nothing() {
    let (_guard, server) = with_redis("local");
    only_here(1);
    only_here(2);
    assert_eq!(server.calls("get") + server.calls("set"), 0);
    Config::uninstall();
    plain(1);
    assert_eq!(server.calls("get") + server.calls("set"), 0);
    assert_eq!(plain::stats().l2_errors, 0);
}

#[cached(ttl = 60, version = 4)]
fn versioned(text: String) -> usize {
    text.len()
}

#[test]
fn prefix_name_and_version_make_the_stored_key() {
    let (_guard, server) = with_redis("app");
    versioned("a:b".into());
    let key = versioned::key("a:b".into()).to_string();
    assert_eq!(key, "app:redis_layer::versioned:v4:a\\:b");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query(&mut server.connection())
        .unwrap();
    assert!(exists);
}

static INVALIDATED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn invalidated(n: u64) -> usize {
    INVALIDATED_RUNS.fetch_add(1, SeqCst) + n as usize
}

#[test]
fn invalidate_removes_the_entry_from_both_layers() {
    let (_guard, server) = with_redis("invalidate");
    invalidated(1);
    let key = invalidated::key(1).to_string();
    invalidated::invalidate(1);
    assert_eq!(server.calls("del"), 1);
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query(&mut server.connection())
        .unwrap();
    assert!(!exists);
    invalidated(1);
    assert_eq!(INVALIDATED_RUNS.load(SeqCst), 2);
}

static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "layer::async")]
async fn async_value(n: u64) -> String {
    ASYNC_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!("async {n}")
}

#[test]
fn async_functions_send_the_same_commands_without_blocking_the_runtime() {
    let (_guard, server) = with_redis("async");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // On one thread, two cold calls of different keys overlap: the runtime is never blocked.
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(async_value(1), async_value(2));
        assert_eq!((a.as_str(), b.as_str()), ("async 1", "async 2"));
        assert!(
            started.elapsed() < Duration::from_millis(95),
            "the two bodies did not overlap"
        );
        assert_eq!((server.calls("get"), server.calls("set")), (2, 2));
        async_value(1).await;
        assert_eq!(server.calls("get"), 2);
        async_value::invalidate(1).await;
        assert_eq!(server.calls("del"), 1);
    });
    assert_eq!(ASYNC_RUNS.load(SeqCst), 2);
}

#[cached(ttl = 60, name = "fleet::shared")]
fn shared(n: u64) -> String {
    format!("computed here for {n}")
}

#[test]
fn a_value_computed_by_another_process_is_read_from_redis() {
    let _guard = serial();
    let server = RedisServer::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleet_peer"))
        .args(["share", &server.url(), "fleet", "7"])
        .output()
        .expect("run the peer process");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(theirs.starts_with("computed by pid"));
    Config::new()
        .redis(server.url())
        .prefix("fleet")
        .install()
        .unwrap();
    assert_eq!(shared(7), theirs);
    assert_eq!(shared::stats().misses, 0);
    assert_eq!(shared::stats().l2_hits, 1);
}
