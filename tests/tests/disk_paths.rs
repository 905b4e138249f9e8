//! The read and write path over the disk store, through `#[cached]`: each test against a
//! SQLite file in a directory of its own, looked at directly (its `entries` rows) beside the
//! functions' counters. A second process is the `disk_peer` binary.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{cached, Config, Store};
use integration_tests::disk::{peer_get, TempDir};
use integration_tests::logs::Logs;
use integration_tests::{serial, RedisServer};

fn install(dir: &TempDir, prefix: &str) {
    Config::new()
        .disk(dir.path())
        .prefix(prefix)
        .install()
        .expect("install");
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

static READ_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60)]
fn read_path(n: u64) -> String {
    READ_RUNS.fetch_add(1, SeqCst);
    format!("value {n}")
}

#[test]
fn an_l1_miss_reads_the_disk_and_a_miss_everywhere_computes_once_and_writes() {
    let _guard = serial();
    let dir = TempDir::new("read-path");
    install(&dir, "paths");

    assert_eq!(read_path(1), "value 1");
    assert_eq!(READ_RUNS.load(SeqCst), 1);
    let key = read_path::key(1).to_string();
    assert_eq!(dir.rows().len(), 1, "one row written");
    let expires = dir.expiry_of(&key).expect("an expiry");
    let left = expires - unix_millis();
    assert!((55_000..=60_000).contains(&left), "expires in {left} ms");

    read_path::clear_local();
    assert_eq!(read_path(1), "value 1");
    assert_eq!(
        READ_RUNS.load(SeqCst),
        1,
        "read from the disk, not computed"
    );
    let stats = read_path::stats();
    assert_eq!((stats.l2_hits, stats.misses, stats.l2_errors), (1, 1, 0));
    assert_eq!(read_path(1), "value 1");
    assert_eq!(read_path::stats().l1_hits, 1, "backfilled into L1");
    assert_eq!(dir.rows().len(), 1, "a read writes no row");
    Config::uninstall();
}

static SHARED_RUNS: AtomicU32 = AtomicU32::new(0);

/// The peer's function (same name and prefix): values another process computed.
#[cached(ttl = 600, name = "disk::page")]
fn page(n: u64) -> String {
    SHARED_RUNS.fetch_add(1, SeqCst);
    format!("page {n} by {}", std::process::id())
}

#[test]
fn values_survive_the_process_that_wrote_them() {
    let _guard = serial();
    let dir = TempDir::new("restart");
    let first = peer_get(dir.path(), 0, 20);
    assert_eq!((first.runs, first.l2_hits, first.l2_errors), (20, 0, 0));
    let writer = first.by[0].0;
    assert_eq!(first.from(writer), 20);

    let second = peer_get(dir.path(), 0, 20);
    assert_eq!(
        (second.runs, second.l2_hits, second.l2_errors),
        (0, 20, 0),
        "a new process read every value from the disk"
    );
    assert_eq!(second.from(writer), 20, "the first process' values");

    install(&dir, "peer");
    for n in 0..20 {
        assert_eq!(page(n), format!("page {n} by {writer}"));
    }
    assert_eq!(SHARED_RUNS.load(SeqCst), 0, "this process' body never ran");
    assert_eq!(page::stats().l2_hits, 20);
    Config::uninstall();
}

static SHORT_RUNS: AtomicU32 = AtomicU32::new(0);
static LONG_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = Duration::from_millis(500))]
fn short_lived(n: u64) -> u64 {
    SHORT_RUNS.fetch_add(1, SeqCst);
    n
}

#[cached(ttl = 600)]
fn long_lived(n: u64) -> u64 {
    LONG_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn each_entry_expires_after_its_own_ttl() {
    let _guard = serial();
    let dir = TempDir::new("ttl");
    install(&dir, "paths");
    let before = unix_millis();
    short_lived(1);
    long_lived(1);
    let after = unix_millis();
    let short_at = dir
        .expiry_of(&short_lived::key(1).to_string())
        .expect("expiry");
    let long_at = dir
        .expiry_of(&long_lived::key(1).to_string())
        .expect("expiry");
    assert!(
        (before + 500..=after + 500).contains(&short_at),
        "the row expires with its TTL"
    );
    assert!((before + 600_000..=after + 600_000).contains(&long_at));

    // Before the short TTL is over, both are read back from the disk.
    short_lived::clear_local();
    long_lived::clear_local();
    short_lived(1);
    long_lived(1);
    if unix_millis() < short_at {
        assert_eq!(short_lived::stats().l2_hits, 1, "fresh on disk");
    }
    // Past its expiry (time has to pass: nothing else shows it), only the short one is gone.
    let wait = short_at + 5 - unix_millis();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    short_lived::clear_local();
    long_lived::clear_local();
    short_lived(1);
    long_lived(1);
    assert_eq!(
        SHORT_RUNS.load(SeqCst),
        2,
        "the expired entry was computed again"
    );
    assert_eq!(LONG_RUNS.load(SeqCst), 1, "the other entry is still served");
    assert_eq!(long_lived::stats().l2_hits, 2);
    let new_short_at = dir
        .expiry_of(&short_lived::key(1).to_string())
        .expect("expiry");
    assert!(
        new_short_at > short_at,
        "the new value was written with a new expiry"
    );
    Config::uninstall();
}

static INVALIDATE_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60)]
fn invalidated(n: u64) -> u64 {
    INVALIDATE_RUNS.fetch_add(1, SeqCst);
    n * 10
}

#[test]
fn invalidate_removes_the_row() {
    let _guard = serial();
    let dir = TempDir::new("invalidate");
    install(&dir, "paths");
    invalidated(1);
    invalidated(2);
    let (one, two) = (
        invalidated::key(1).to_string(),
        invalidated::key(2).to_string(),
    );
    assert!(dir.has_row(&one) && dir.has_row(&two));

    invalidated::invalidate(1);
    assert!(!dir.has_row(&one), "the row is gone");
    assert!(dir.has_row(&two), "the other row stays");
    invalidated::clear_local();
    assert_eq!(invalidated(1), 10);
    assert_eq!(invalidated(2), 20);
    assert_eq!(
        INVALIDATE_RUNS.load(SeqCst),
        3,
        "only the invalidated entry ran again"
    );
    assert_eq!(invalidated::stats().l2_hits, 1);
    Config::uninstall();
}

static CLEARED_RUNS: AtomicU32 = AtomicU32::new(0);
static KEPT_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "paths::clear")]
fn cleared(n: u64) -> u64 {
    CLEARED_RUNS.fetch_add(1, SeqCst);
    n
}

/// Its name begins with the cleared function's name.
#[cached(ttl = 60, name = "paths::clear_too")]
fn kept_same_start(n: u64) -> u64 {
    KEPT_RUNS.fetch_add(1, SeqCst);
    n
}

/// Same name, another version.
#[cached(ttl = 60, name = "paths::clear", version = 2)]
fn kept_other_version(n: u64) -> u64 {
    KEPT_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn clear_removes_the_functions_rows_and_no_other() {
    let _guard = serial();
    let dir = TempDir::new("clear");
    install(&dir, "paths");
    for n in 0..5 {
        cleared(n);
        kept_same_start(n);
        kept_other_version(n);
    }
    assert_eq!(dir.rows().len(), 15);

    cleared::clear();
    let left: Vec<String> = dir.rows().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left.len(), 10, "{left:?}");
    assert!(
        left.iter()
            .all(|k| !(0..5).any(|n| *k == cleared::key(n).to_string())),
        "{left:?}"
    );
    for n in 0..5 {
        assert_eq!(cleared(n), n);
    }
    assert_eq!(
        CLEARED_RUNS.load(SeqCst),
        10,
        "cleared from L1 and the disk"
    );
    kept_same_start::clear_local();
    kept_other_version::clear_local();
    for n in 0..5 {
        kept_same_start(n);
        kept_other_version(n);
    }
    assert_eq!(
        KEPT_RUNS.load(SeqCst),
        10,
        "the others are read from the disk"
    );
    assert_eq!(
        kept_same_start::stats().l2_hits + kept_other_version::stats().l2_hits,
        10
    );
    Config::uninstall();
}

static PEEK_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60)]
fn peeked(n: u64) -> String {
    PEEK_RUNS.fetch_add(1, SeqCst);
    format!("computed {n}")
}

#[test]
fn peek_and_put_go_through_the_disk() {
    let _guard = serial();
    let dir = TempDir::new("peek-put");
    install(&dir, "peer");
    peeked::put(7, "warmed 7".to_owned());
    assert!(
        dir.has_row(&peeked::key(7).to_string()),
        "put wrote the row"
    );

    peeked::clear_local();
    assert_eq!(
        peeked::peek(7).as_deref(),
        Some("warmed 7"),
        "read from disk"
    );
    assert_eq!(peeked::peek(8), None);
    assert!(
        !dir.has_row(&peeked::key(8).to_string()),
        "peek writes nothing"
    );
    peeked::clear_local();
    assert_eq!(peeked(7), "warmed 7");
    assert_eq!(PEEK_RUNS.load(SeqCst), 0, "no body ran");
    assert_eq!(peeked::stats().l2_hits, 1);

    // A value put here is what another process reads (the peer's function, same prefix).
    let mine = std::process::id();
    page::put(40, format!("page 40 by {mine}"));
    let other = peer_get(dir.path(), 40, 41);
    assert_eq!((other.runs, other.l2_hits), (0, 1), "{other:?}");
    assert_eq!(other.from(mine), 1, "the value put by this process");
    assert_eq!(SHARED_RUNS.load(SeqCst), 0);
    Config::uninstall();
}

static PAGE_RUNS: AtomicU32 = AtomicU32::new(0);
static FRAGMENT_RUNS: AtomicU32 = AtomicU32::new(0);
static ORPHAN_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, store = "pages")]
fn named_page(n: u64) -> String {
    PAGE_RUNS.fetch_add(1, SeqCst);
    format!("page {n}")
}

#[cached(ttl = 60)]
fn fragment(n: u64) -> String {
    FRAGMENT_RUNS.fetch_add(1, SeqCst);
    format!("fragment {n}")
}

#[cached(ttl = 60, store = "nowhere")]
fn orphan(n: u64) -> String {
    ORPHAN_RUNS.fetch_add(1, SeqCst);
    format!("orphan {n}")
}

fn redis_has(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query(&mut server.connection())
        .expect("EXISTS")
}

#[test]
fn a_named_disk_store_keeps_its_functions_values_and_redis_the_others() {
    let _guard = serial();
    let logs = Logs::capture();
    let dir = TempDir::new("named");
    let server = RedisServer::start();
    Config::new()
        .redis(server.url())
        .named("pages", Store::disk(dir.path()))
        .prefix("named")
        .install()
        .expect("install");
    logs.take();
    for n in 0..3 {
        named_page(n);
        fragment(n);
        orphan(n);
    }
    let rows: Vec<String> = dir.rows().into_iter().map(|(k, _)| k).collect();
    let pages: Vec<String> = (0..3).map(|n| named_page::key(n).to_string()).collect();
    assert_eq!(rows, pages, "only the pages are on disk");
    for n in 0..3 {
        assert!(!redis_has(&server, &named_page::key(n).to_string()));
        assert!(redis_has(&server, &fragment::key(n).to_string()));
        assert!(!redis_has(&server, &orphan::key(n).to_string()));
    }

    named_page::clear_local();
    fragment::clear_local();
    orphan::clear_local();
    for n in 0..3 {
        named_page(n);
        fragment(n);
        orphan(n);
    }
    assert_eq!(PAGE_RUNS.load(SeqCst), 3, "pages read back from disk");
    assert_eq!(named_page::stats().l2_hits, 3);
    assert_eq!(
        FRAGMENT_RUNS.load(SeqCst),
        3,
        "fragments read back from Redis"
    );
    assert_eq!(fragment::stats().l2_hits, 3);
    assert_eq!(
        ORPHAN_RUNS.load(SeqCst),
        6,
        "a function naming a store not configured keeps to L1"
    );
    assert_eq!(orphan::stats().l2_errors, 0);
    let warnings: Vec<String> = logs
        .take()
        .into_iter()
        .filter(|line| line.starts_with("WARN") && line.contains("nowhere"))
        .collect();
    assert_eq!(warnings.len(), 1, "warned once: {warnings:?}");
    Config::uninstall();
}
