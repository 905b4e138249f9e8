//! `rediss://` (feature `tls`): values go to a TLS-only `redis-server` (`--port 0`) that asks
//! for client certificates, trusting a private CA given with `Config::tls_ca_file` and showing
//! the client certificate of `Config::tls_client_cert`, sync and async. The TLS handshake is
//! bounded by the timeout like every other step: against a server that accepts TCP and never
//! completes TLS, `install()` and each call still end in time.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{cached, Config};
use integration_tests::hostile::Hostile;
use integration_tests::info::command_stat;
use integration_tests::serial;
use integration_tests::tls::{Certificates, TlsRedis};

const TIMEOUT: Duration = Duration::from_millis(200);

fn install(url: &str, certificates: &Certificates) {
    let (cert, key) = certificates.client();
    Config::new()
        .redis(url)
        .prefix("tls")
        .timeout(TIMEOUT)
        // Never opens in these tests: every failing call is timed in full.
        .circuit_breaker(1000, Duration::from_secs(60))
        .tls_ca_file(certificates.ca())
        .tls_client_cert(cert, key)
        .install()
        .expect("install");
}

fn exists(conn: &mut redis::Connection, key: &cache_runtime::Key) -> bool {
    redis::cmd("EXISTS")
        .arg(key.to_string())
        .query(conn)
        .expect("EXISTS")
}

static SYNC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60)]
fn sync_over_tls(n: u64) -> String {
    SYNC_RUNS.fetch_add(1, SeqCst);
    format!("sync_over_tls computed {n}")
}

#[test]
fn sync_values_are_stored_and_read_over_tls() {
    let _guard = serial();
    let certificates = Certificates::make();
    let server = TlsRedis::start(&certificates);
    install(&server.url(), &certificates);
    let mut admin = server.connection(&certificates);
    assert_eq!(sync_over_tls(7), "sync_over_tls computed 7");
    assert!(exists(&mut admin, &sync_over_tls::key(7)), "not written");
    sync_over_tls::clear_local();
    assert_eq!(sync_over_tls(7), "sync_over_tls computed 7");
    let stats = sync_over_tls::stats();
    assert_eq!(SYNC_RUNS.load(SeqCst), 1, "the second call read Redis");
    assert_eq!((stats.l2_hits, stats.l2_errors), (1, 0), "{stats:?}");
    assert_eq!(command_stat(&mut admin, "get", "calls"), 2);
    assert_eq!(command_stat(&mut admin, "set", "calls"), 1);
    Config::uninstall();
}

static ASYNC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60)]
async fn async_over_tls(n: u64) -> String {
    ASYNC_RUNS.fetch_add(1, SeqCst);
    format!("async_over_tls computed {n}")
}

#[test]
fn async_values_are_stored_and_read_over_tls() {
    let _guard = serial();
    let certificates = Certificates::make();
    let server = TlsRedis::start(&certificates);
    install(&server.url(), &certificates);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut admin = server.connection(&certificates);
    assert_eq!(rt.block_on(async_over_tls(7)), "async_over_tls computed 7");
    assert!(exists(&mut admin, &async_over_tls::key(7)), "not written");
    async_over_tls::clear_local();
    assert_eq!(rt.block_on(async_over_tls(7)), "async_over_tls computed 7");
    let stats = async_over_tls::stats();
    assert_eq!(ASYNC_RUNS.load(SeqCst), 1, "the second call read Redis");
    assert_eq!((stats.l2_hits, stats.l2_errors), (1, 0), "{stats:?}");
    assert_eq!(command_stat(&mut admin, "get", "calls"), 2);
    assert_eq!(command_stat(&mut admin, "set", "calls"), 1);
    Config::uninstall();
}

#[cached(ttl = 60)]
fn no_certificate(n: u64) -> String {
    format!("no_certificate computed {n}")
}

/// Without its client certificate the server refuses the connection: fail-open, counted,
/// nothing written.
#[test]
fn a_client_without_its_certificate_computes() {
    let _guard = serial();
    let certificates = Certificates::make();
    let server = TlsRedis::start(&certificates);
    Config::new()
        .redis(server.url())
        .timeout(TIMEOUT)
        .tls_ca_file(certificates.ca())
        .install()
        .expect("fail-open");
    assert_eq!(no_certificate(1), "no_certificate computed 1");
    assert!(no_certificate::stats().l2_errors >= 1);
    let mut admin = server.connection(&certificates);
    assert!(!exists(&mut admin, &no_certificate::key(1)));
    Config::uninstall();
}

#[cached(ttl = 60)]
fn stuck_handshake(n: u64) -> String {
    format!("stuck_handshake computed {n}")
}

#[cached(ttl = 60)]
async fn stuck_handshake_async(n: u64) -> String {
    format!("stuck_handshake_async computed {n}")
}

#[test]
fn a_tls_handshake_that_never_completes_is_bounded() {
    let _guard = serial();
    let certificates = Certificates::make();
    let silent = Hostile::silent();
    let url = format!("rediss://127.0.0.1:{}/", silent.port());
    let started = Instant::now();
    install(&url, &certificates);
    let took = started.elapsed();
    assert!(
        took < TIMEOUT * 3 / 2,
        "install took {took:?} (timeout {TIMEOUT:?})"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in 0..2 {
        let started = Instant::now();
        stuck_handshake(n);
        let sync = started.elapsed();
        let started = Instant::now();
        rt.block_on(stuck_handshake_async(n));
        let not_sync = started.elapsed();
        for (what, took) in [("sync", sync), ("async", not_sync)] {
            assert!(
                took < TIMEOUT * 5 / 2,
                "{what} call {n} took {took:?} (timeout {TIMEOUT:?})"
            );
            assert!(took >= TIMEOUT, "{what} call {n} did not wait: {took:?}");
        }
    }
    assert!(silent.accepted() >= 2, "the server saw no handshake");
    Config::uninstall();
}
