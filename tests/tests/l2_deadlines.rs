//! A timeout bounds the whole operation, and what one call spends on Redis in all: against a
//! server that accepts and never answers, or one that trickles its reply 32 bytes every
//! 150 ms, a call returns its computed value within 2.5 × `Config::timeout`, sync and async,
//! with or without the fleet lock (which adds requests to a call).

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use cache_runtime::{cached, Config};
use integration_tests::hostile::Hostile;
use integration_tests::serial;

const TIMEOUT: Duration = Duration::from_millis(200);

/// The most one call may spend on Redis, from the README's failure policy.
const BOUND: Duration = Duration::from_millis(500);

fn install(server: &Hostile) {
    Config::new()
        .redis(server.url())
        .prefix("deadlines")
        .timeout(TIMEOUT)
        // Never opens here: every failing call is timed in full.
        .circuit_breaker(1000, Duration::from_secs(60))
        .install()
        .expect("install");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Installs `server`, then times `calls` calls of `call` (new keys each), each bounded.
fn check_bounded(
    _guard: MutexGuard<'static, ()>,
    server: Hostile,
    call: &dyn Fn(u64) -> String,
    what: &str,
) {
    install(&server);
    for n in 0..3 {
        let started = Instant::now();
        assert_eq!(call(n), format!("computed {n}"));
        let took = started.elapsed();
        assert!(
            took < BOUND,
            "{what}: call {n} took {took:?} (timeout {TIMEOUT:?}, bound {BOUND:?})"
        );
        assert!(
            took >= TIMEOUT,
            "{what}: call {n} took {took:?}, less than one timeout: it never waited on the server"
        );
    }
    assert!(
        server.accepted() >= 1,
        "{what}: the server saw no connection"
    );
    Config::uninstall();
}

#[cached(ttl = 60)]
fn sync_silent(n: u64) -> String {
    format!("computed {n}")
}

#[test]
fn sync_call_against_a_silent_server_is_bounded() {
    check_bounded(serial(), Hostile::silent(), &sync_silent, "sync, silent");
}

#[cached(ttl = 60)]
async fn async_silent(n: u64) -> String {
    format!("computed {n}")
}

#[test]
fn async_call_against_a_silent_server_is_bounded() {
    let rt = runtime();
    check_bounded(
        serial(),
        Hostile::silent(),
        &|n| rt.block_on(async_silent(n)),
        "async, silent",
    );
}

#[cached(ttl = 60)]
fn sync_trickled(n: u64) -> String {
    format!("computed {n}")
}

fn trickler() -> Hostile {
    Hostile::trickle(32, Duration::from_millis(150))
}

#[test]
fn sync_call_against_a_trickling_server_is_bounded() {
    check_bounded(serial(), trickler(), &sync_trickled, "sync, trickled");
}

#[cached(ttl = 60)]
async fn async_trickled(n: u64) -> String {
    format!("computed {n}")
}

#[test]
fn async_call_against_a_trickling_server_is_bounded() {
    let rt = runtime();
    check_bounded(
        serial(),
        trickler(),
        &|n| rt.block_on(async_trickled(n)),
        "async, trickled",
    );
}

#[cached(ttl = 60, lock)]
fn sync_locked(n: u64) -> String {
    format!("computed {n}")
}

/// GET, SET NX of the lock, SET, and the lock's release: four requests, one call.
#[test]
fn sync_locked_call_against_a_silent_server_is_bounded() {
    check_bounded(
        serial(),
        Hostile::silent(),
        &sync_locked,
        "sync, lock, silent",
    );
}

#[cached(ttl = 60, lock)]
async fn async_locked(n: u64) -> String {
    format!("computed {n}")
}

#[test]
fn async_locked_call_against_a_silent_server_is_bounded() {
    let rt = runtime();
    check_bounded(
        serial(),
        Hostile::silent(),
        &|n| rt.block_on(async_locked(n)),
        "async, lock, silent",
    );
}
