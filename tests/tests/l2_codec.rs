//! Values in Redis that a function cannot decode (foreign bytes, a truncated envelope, another
//! return type) are a miss, counted in `decode_errors`, and overwritten; a value under another
//! `version` is a plain miss under a different key.
//!
//! Each case has a `victim` (the function meeting the bad value) and a `checker` sharing its
//! cache name with a cold L1, which proves the key now holds a decodable value.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::{cached, Key, Stats};
use integration_tests::{with_redis, RedisServer};

fn compute(runs: &AtomicU32, who: &str, n: u64) -> String {
    runs.fetch_add(1, SeqCst);
    format!("{who} computed {n}")
}

fn raw_get(server: &RedisServer, key: &Key) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key.to_string())
        .query(&mut server.connection())
        .expect("GET")
}

fn raw_set(server: &RedisServer, key: &Key, bytes: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(key.to_string())
        .arg(bytes)
        .query(&mut server.connection())
        .expect("SET");
}

/// The victim ran its body `runs` times, met `decode_errors` undecodable values, and never
/// took a value from Redis.
fn assert_victim(stats: Stats, runs: &AtomicU32, expected_runs: u32, decode_errors: u64) {
    assert_eq!(runs.load(SeqCst), expected_runs);
    assert_eq!(stats.decode_errors, decode_errors);
    assert_eq!(stats.l2_hits, 0);
}

/// A cold-L1 reader of the same name now gets `expected` from Redis, without computing.
fn assert_readable(server: &RedisServer, read: fn(u64) -> String, n: u64, expected: &str) {
    server.reset_stats();
    assert_eq!(read(n), expected);
    assert_eq!(server.calls("get"), 1);
    assert_eq!(server.calls("set"), 0, "an L2 hit writes nothing");
}

fn assert_clean_l2_hits(stats: Stats, hits: u64) {
    assert_eq!(
        (stats.l2_hits, stats.misses, stats.decode_errors),
        (hits, 0, 0)
    );
}

static FOREIGN: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, name = "codec::foreign")]
fn foreign_victim(n: u64) -> String {
    compute(&FOREIGN, "foreign_victim", n)
}

#[cached(ttl = 60, name = "codec::foreign")]
fn foreign_checker(n: u64) -> String {
    format!("foreign_checker computed {n}")
}

#[test]
fn foreign_bytes_are_a_counted_miss_and_get_overwritten() {
    let (_guard, server) = with_redis("codec");
    raw_set(&server, &foreign_victim::key(1), b"garbage");
    assert_eq!(foreign_victim(1), "foreign_victim computed 1");
    assert_victim(foreign_victim::stats(), &FOREIGN, 1, 1);
    assert_readable(&server, foreign_checker, 1, "foreign_victim computed 1");
    assert_clean_l2_hits(foreign_checker::stats(), 1);
}

#[cached(ttl = 60, name = "codec::truncated")]
fn truncated_writer(n: u64) -> String {
    format!("truncated_writer computed {n}")
}

static TRUNCATED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, name = "codec::truncated")]
fn truncated_victim(n: u64) -> String {
    compute(&TRUNCATED, "truncated_victim", n)
}

#[cached(ttl = 60, name = "codec::truncated")]
fn truncated_checker(n: u64) -> String {
    format!("truncated_checker computed {n}")
}

/// Cut inside the header (argument 1) and inside the payload (argument 2).
#[test]
fn truncated_envelopes_are_counted_misses_and_get_overwritten() {
    let (_guard, server) = with_redis("codec");
    for n in [1, 2] {
        truncated_writer(n);
        let key = truncated_writer::key(n);
        let bytes = raw_get(&server, &key).expect("written");
        let cut = if n == 1 { 10 } else { bytes.len() - 1 };
        raw_set(&server, &key, &bytes[..cut]);
    }
    for n in [1, 2] {
        assert_eq!(
            truncated_victim(n),
            format!("truncated_victim computed {n}")
        );
    }
    assert_victim(truncated_victim::stats(), &TRUNCATED, 2, 2);
    for n in [1, 2] {
        let expected = format!("truncated_victim computed {n}");
        assert_readable(&server, truncated_checker, n, &expected);
    }
    assert_clean_l2_hits(truncated_checker::stats(), 2);
}

#[cached(ttl = 60, name = "codec::retyped")]
fn retyped_writer(n: u64) -> u64 {
    n * 1000
}

static RETYPED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, name = "codec::retyped")]
fn retyped_victim(n: u64) -> String {
    compute(&RETYPED, "retyped_victim", n)
}

#[cached(ttl = 60, name = "codec::retyped")]
fn retyped_checker(n: u64) -> String {
    format!("retyped_checker computed {n}")
}

#[test]
fn a_value_of_another_return_type_is_a_counted_miss_and_gets_overwritten() {
    let (_guard, server) = with_redis("codec");
    assert_eq!(retyped_writer(1), 1000);
    assert!(raw_get(&server, &retyped_writer::key(1)).is_some());
    assert_eq!(retyped_victim(1), "retyped_victim computed 1");
    assert_victim(retyped_victim::stats(), &RETYPED, 1, 1);
    assert_readable(&server, retyped_checker, 1, "retyped_victim computed 1");
    assert_clean_l2_hits(retyped_checker::stats(), 1);
}

#[cached(ttl = 60, name = "codec::versioned", version = 1)]
fn version_one_writer(n: u64) -> String {
    format!("version_one_writer computed {n}")
}

static VERSION_TWO: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, name = "codec::versioned", version = 2)]
fn version_two_victim(n: u64) -> String {
    compute(&VERSION_TWO, "version_two_victim", n)
}

#[cached(ttl = 60, name = "codec::versioned", version = 2)]
fn version_two_checker(n: u64) -> String {
    format!("version_two_checker computed {n}")
}

#[test]
fn a_value_under_another_version_is_a_plain_miss_under_another_key() {
    let (_guard, server) = with_redis("codec");
    version_one_writer(1);
    let old = raw_get(&server, &version_one_writer::key(1));
    assert_ne!(version_one_writer::key(1), version_two_victim::key(1));
    assert_eq!(version_two_victim(1), "version_two_victim computed 1");
    assert_victim(version_two_victim::stats(), &VERSION_TWO, 1, 0);
    assert_eq!(
        raw_get(&server, &version_one_writer::key(1)),
        old,
        "the old version's entry is left alone"
    );
    assert_readable(
        &server,
        version_two_checker,
        1,
        "version_two_victim computed 1",
    );
    assert_clean_l2_hits(version_two_checker::stats(), 1);
}

#[cached(ttl = 60, name = "codec::flipped")]
fn flipped_writer(n: u64) -> String {
    format!("flipped_writer computed {n}")
}

static FLIPPED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, name = "codec::flipped")]
fn flipped_victim(n: u64) -> String {
    compute(&FLIPPED, "flipped_victim", n)
}

#[cached(ttl = 60, name = "codec::flipped")]
fn flipped_checker(n: u64) -> String {
    format!("flipped_checker computed {n}")
}

/// One bit flipped in the payload of each of 40 stored values (whose header and length stay
/// valid): none is served, each is a counted miss, recomputed and overwritten.
#[test]
fn a_flipped_bit_is_a_counted_miss_never_a_wrong_value() {
    let (_guard, server) = with_redis("codec");
    for n in 0..40 {
        flipped_writer(n);
        let key = flipped_writer::key(n);
        let mut bytes = raw_get(&server, &key).expect("written");
        // Past the 30-byte header: a bit of the text's characters.
        let bit = 30 * 8 + 8 + (n as usize * 7) % ((bytes.len() - 31) * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        raw_set(&server, &key, &bytes);
    }
    for n in 0..40 {
        assert_eq!(flipped_victim(n), format!("flipped_victim computed {n}"));
    }
    assert_victim(flipped_victim::stats(), &FLIPPED, 40, 40);
    assert_readable(&server, flipped_checker, 3, "flipped_victim computed 3");
    assert_clean_l2_hits(flipped_checker::stats(), 1);
}

#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Debug)]
struct Tree {
    children: Vec<Tree>,
}

fn chain(depth: usize) -> Tree {
    let mut tree = Tree { children: vec![] };
    for _ in 1..depth {
        tree = Tree {
            children: vec![tree],
        };
    }
    tree
}

static DEEP: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, name = "codec::deep")]
fn deep_tree(levels: u64) -> Tree {
    DEEP.fetch_add(1, SeqCst);
    chain(levels as usize)
}

/// A value nested deeper than the decoder reads is served from memory but never written (it
/// would be unreadable everywhere); one within the limit is written and read back.
#[test]
fn a_value_too_deep_to_read_back_stays_out_of_redis() {
    let (_guard, server) = with_redis("codec");
    assert_eq!(deep_tree(1000), chain(1000));
    assert_eq!(deep_tree(1000), chain(1000), "from L1");
    assert_eq!(DEEP.load(SeqCst), 1);
    assert_eq!(server.calls("set"), 0, "nothing written");
    assert!(raw_get(&server, &deep_tree::key(1000)).is_none());
    assert_eq!(deep_tree(60), chain(60));
    assert!(raw_get(&server, &deep_tree::key(60)).is_some());
    deep_tree::clear_local();
    assert_eq!(deep_tree(60), chain(60));
    assert_eq!(deep_tree::stats().l2_hits, 1);
}

#[cached(ttl = 60, name = "codec::hostile")]
async fn hostile_tree(n: u64) -> Tree {
    chain(n as usize)
}

/// Bytes in Redis that nest a million levels (a valid envelope around them, as anyone able to
/// write to Redis could craft) are a counted miss on a tokio worker, not a stack overflow.
#[test]
fn hostile_nesting_in_redis_is_a_miss_on_a_tokio_worker() {
    let (_guard, server) = with_redis("codec");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(512 * 1024)
        .enable_all()
        .build()
        .expect("runtime");
    let key = hostile_tree::key(2);
    let valid = rt.block_on(async {
        hostile_tree(2).await;
        hostile_tree::clear_local();
        raw_get(&server, &key).expect("written")
    });
    let mut bytes = valid[..30].to_vec();
    bytes.extend(std::iter::repeat_n(1u8, 1_000_000));
    cache_runtime::codec::reseal(&mut bytes);
    raw_set(&server, &key, &bytes);
    let value = rt.block_on(async { tokio::spawn(hostile_tree(2)).await.expect("no panic") });
    assert_eq!(value, chain(2));
    assert_eq!(hostile_tree::stats().decode_errors, 1);
}
