//! Helpers for testing code that uses `#[cached]` (the `testing` cargo feature; add it to
//! your dev-dependencies only).
//!
//! - [`advance`] moves the cache's clock forward, so a test of a one-hour TTL takes no hour
//!   and no sleep.
//! - [`RedisServer`] runs a real `redis-server` on a free loopback port for one test and
//!   counts the commands it received.
//!
//! ```toml
//! [dev-dependencies]
//! cache-runtime = { version = "0.1", features = ["testing"] }
//! ```
//!
//! # What the test clock moves
//!
//! Every expiry decision of this crate reads one clock, and [`advance`] adds to it: the
//! per-thread front tables, L1 (an entry past its deadline is not served, whatever moka
//! thinks), stale windows, early refresh, how long a `lock` waiter waits before computing
//! itself (two leases), the circuit breaker's cool-down, the disk store's expiry times, and
//! the expiry time written into each value sent to Redis. A
//! value read back from Redis whose written expiry has passed on the moved clock is treated
//! as a miss, so a TTL test behaves the same with Redis behind L1.
//!
//! What it does not move:
//!
//! - Redis' own TTLs: the key stays in Redis until Redis' real clock expires it (this crate
//!   reads it, finds its expiry passed, runs the body and overwrites it); so does a `lock`'s
//!   lease, which is a Redis TTL on the lock key.
//! - moka's clock (moka keeps one of its own): `idle = N` (time-to-idle) counts real time,
//!   and moka frees expired entries' memory on its own schedule (they are never served
//!   meanwhile).
//! - Timeouts of Redis operations (`Config::timeout`) and the pauses between a lock waiter's
//!   looks, which measure real waiting.
//!
//! The offset is process-wide and only grows (a clock that went back would make entries
//! written meanwhile live longer than their TTL). Tests in one binary run on parallel
//! threads, so a test that advances the clock makes other tests' entries expire early: put
//! clock tests in a test file of their own, or run them one at a time (`--test-threads=1`
//! or a lock they share).

mod redis_server;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::clock::OFFSET;

pub use redis_server::{free_port, parse_command_counts, RedisServer};

/// Moves the cache's clock forward by `by`, for every thread of the process.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use cache_runtime::{cached, testing};
///
/// static RUNS: AtomicU32 = AtomicU32::new(0);
///
/// #[cached(ttl = 3600, local)]
/// fn rate(currency: &str) -> u32 {
///     RUNS.fetch_add(1, Ordering::SeqCst);
///     42
/// }
///
/// rate("EUR");
/// rate("EUR");
/// assert_eq!(RUNS.load(Ordering::SeqCst), 1);
/// testing::advance(Duration::from_secs(3601));
/// rate("EUR");
/// assert_eq!(RUNS.load(Ordering::SeqCst), 2); // the hour passed: the body ran again
/// ```
pub fn advance(by: Duration) {
    let nanos = by.as_nanos().min(u64::MAX as u128) as u64;
    let _ = OFFSET.fetch_update(Relaxed, Relaxed, |now| Some(now.saturating_add(nanos)));
}

/// How far [`advance`] has moved the clock since the process started.
pub fn now_offset() -> Duration {
    Duration::from_nanos(OFFSET.load(Relaxed))
}
