//! What a call tells `tracing`: a miss opens exactly one `cache_miss` span, with the
//! function's name, the layers asked, the outcome and its timings, closed by one event that
//! says what happened; a hit (this thread's front table, or L1 from another thread) creates
//! no span and logs nothing.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::{cached, Config};
use integration_tests::logs::{CapturedSpan, Logs};
use integration_tests::with_redis;

static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60, name = "spans::page")]
fn page(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("page {n}")
}

/// The spans opened since the last call, and every line logged meanwhile.
fn taken(logs: &Logs) -> (Vec<CapturedSpan>, Vec<String>) {
    (logs.take_spans(), logs.take())
}

/// The only span of `spans`, which must be a `cache_miss` of `spans::page`.
fn one_miss(spans: &[CapturedSpan], lines: &[String]) -> CapturedSpan {
    assert_eq!(spans.len(), 1, "{spans:#?}\n{lines:#?}");
    let span = spans[0].clone();
    assert_eq!(span.name, "cache_miss");
    assert_eq!(span.field("cache"), Some("spans::page"), "{span:#?}");
    span
}

#[test]
fn a_miss_opens_one_span_with_its_outcome_and_a_hit_logs_nothing() {
    let logs = Logs::capture();
    let (_guard, _server) = with_redis("spans");
    taken(logs);

    assert_eq!(page(1), "page 1");
    let (spans, lines) = taken(logs);
    let miss = one_miss(&spans, &lines);
    assert_eq!(miss.field("outcome"), Some("computed"), "{miss:#?}");
    assert_eq!(miss.field("layers"), Some("l1,l2"), "{miss:#?}");
    for timing in ["compute_ms", "store_ms", "wait_ms", "total_ms"] {
        let ms: f64 = miss.field(timing).expect(timing).parse().expect("a number");
        assert!(ms >= 0.0, "{timing}: {ms}");
    }
    let said: Vec<_> = miss
        .events
        .iter()
        .filter(|l| l.starts_with("DEBUG"))
        .collect();
    assert_eq!(said.len(), 1, "{miss:#?}");
    assert!(
        said[0].contains("ran the body and kept its value"),
        "{said:?}"
    );

    // Hits: this thread's front table, then L1 from a thread whose table is empty.
    assert_eq!(page(1), "page 1");
    std::thread::spawn(|| assert_eq!(page(1), "page 1"))
        .join()
        .expect("hit on another thread");
    assert_eq!(RUNS.load(SeqCst), 1);
    assert_eq!(page::stats().l1_hits, 2);
    let (spans, lines) = taken(logs);
    assert!(
        spans.is_empty() && lines.is_empty(),
        "{spans:#?}\n{lines:#?}"
    );

    // A miss of L1 that Redis answers: one span again, another outcome.
    page::clear_local();
    assert_eq!(page(1), "page 1");
    let (spans, lines) = taken(logs);
    let miss = one_miss(&spans, &lines);
    assert_eq!(miss.field("outcome"), Some("l2_hit"), "{miss:#?}");
    assert_eq!(RUNS.load(SeqCst), 1);
    assert!(
        miss.events
            .iter()
            .any(|l| l.contains("found in the shared store")),
        "{miss:#?}"
    );
    assert!(
        miss.events
            .iter()
            .any(|l| l.contains("filled L1 from stored bytes")),
        "the fill is an event of the miss: {miss:#?}"
    );
    Config::uninstall();
}

static REPORT_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60, name = "spans::report", lock, lock_timeout = Duration::from_millis(100))]
fn report(n: u64) -> String {
    REPORT_RUNS.fetch_add(1, SeqCst);
    format!("report {n}")
}

#[test]
fn a_wait_for_another_process_lock_is_told_in_the_miss() {
    let logs = Logs::capture();
    let (_guard, server) = with_redis("spans-lock");
    // Another process holds this key's compute lock and never writes the value.
    let () = redis::cmd("SET")
        .arg(format!("{}:lock", report::key(7)))
        .arg("elsewhere")
        .arg("PX")
        .arg(60_000)
        .query(&mut server.connection())
        .expect("a lock held elsewhere");
    taken(logs);

    assert_eq!(report(7), "report 7");
    assert_eq!(REPORT_RUNS.load(SeqCst), 1, "computed after the wait");
    let (spans, lines) = taken(logs);
    assert_eq!(spans.len(), 1, "{spans:#?}\n{lines:#?}");
    let events = &spans[0].events;
    assert!(
        events
            .iter()
            .any(|l| l.starts_with("DEBUG") && l.contains("holds this key's compute lock")),
        "{events:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("lock owner did not finish in time")),
        "{lines:#?}"
    );
    Config::uninstall();
}
