//! What a preload scope logs when it cannot fetch: with the circuit breaker open, the MGET is
//! skipped and so are the calls' own requests: they compute, and the log says so (it used to
//! say the calls go to Redis one by one, which they do not while the breaker is open).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::{cached, preload, Config};
use integration_tests::logs::Logs;
use integration_tests::serial;

static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60)]
fn fragment(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("fragment {n}")
}

#[test]
fn a_preload_skipped_by_the_open_breaker_says_calls_compute() {
    let _guard = serial();
    let logs = Logs::capture();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Config::new()
        .redis(format!("redis://127.0.0.1:{port}/"))
        .circuit_breaker(1, Duration::from_secs(600))
        .install()
        .expect("fail-open install");
    fragment(0); // its GET fails: the breaker opens
    let errors = fragment::stats().l2_errors;
    assert!(errors >= 1);
    logs.take();
    let page = preload((1..=5).map(fragment::key), || {
        (1..=5).map(fragment).collect::<Vec<_>>().join("")
    });
    assert!(page.contains("fragment 5"));
    assert_eq!(RUNS.load(SeqCst), 6, "every call computed");
    let lines = logs.take();
    let told: Vec<_> = lines.iter().filter(|l| l.contains("preload")).collect();
    assert_eq!(told.len(), 1, "{lines:#?}");
    assert!(
        told[0].contains("circuit breaker open") && told[0].contains("compute"),
        "{told:?}"
    );
    assert!(!told[0].contains("one by one"), "{told:?}");
    Config::uninstall();
}
