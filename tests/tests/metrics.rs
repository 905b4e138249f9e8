//! Feature `metrics` (on for this package): `publish_metrics()` and
//! `Config::metrics_every` put each function's counters into the installed recorder under
//! Prometheus-style names, labelled with the function's name and never a key; the misses
//! record body and store-latency histograms, the hits record nothing. The recorder is a real
//! one (metrics-util's `DebuggingRecorder`), the store a real redis-server.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cache_runtime::{cached, publish_metrics, Config};
use integration_tests::{serial, with_redis, RedisServer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::CompositeKey;

/// The process's recorder, installed once. A snapshot drains it: counters read 0 and
/// histograms are empty until something records again.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("no other recorder");
        snapshotter
    })
}

/// One metric of a snapshot: kind, name, labels (sorted) and value.
struct Metric {
    name: String,
    labels: Vec<(String, String)>,
    value: DebugValue,
}

fn snapshot() -> Vec<Metric> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value): (CompositeKey, _, _, _)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            Metric {
                name: key.name().to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the metric `name` whose labels are exactly `labels`.
fn find<'a>(metrics: &'a [Metric], name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wanted.sort();
    metrics
        .iter()
        .find(|m| m.name == name && m.labels == wanted)
        .map(|m| &m.value)
}

fn counter(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    match find(metrics, name, labels)? {
        DebugValue::Counter(n) => Some(*n),
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

/// How many samples the histogram `name` with `labels` holds in this snapshot (0 if absent).
fn samples(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> usize {
    match find(metrics, name, labels) {
        Some(DebugValue::Histogram(values)) => values.len(),
        Some(other) => panic!("{name} is not a histogram: {other:?}"),
        None => 0,
    }
}

const FRAGMENT: &str = "metrics::fragment";
static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60, name = "metrics::fragment")]
fn fragment(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(2));
    format!("fragment {n}")
}

#[test]
fn counts_by_layer_histograms_of_misses_and_no_key_in_any_label() {
    let (_guard, server) = with_redis("metrics");
    snapshot(); // drains what other tests recorded
    for n in 0..3 {
        fragment(n); // 3 misses: a GET and a SET each, the body runs
    }
    for _ in 0..4 {
        fragment(0); // 4 hits in this thread's front table
    }
    fragment::clear_local();
    fragment(1); // 1 hit in Redis: a GET
    fragment(1); // 1 more L1 hit
    assert_eq!(RUNS.load(SeqCst), 3);
    assert_eq!((server.calls("get"), server.calls("set")), (4, 3));

    publish_metrics();
    let metrics = snapshot();
    let cache = ("cache", FRAGMENT);
    let hits = |layer| counter(&metrics, "cache_hits_total", &[cache, ("layer", layer)]);
    assert_eq!(
        (hits("scope"), hits("l1"), hits("l2")),
        (Some(0), Some(5), Some(1))
    );
    assert_eq!(counter(&metrics, "cache_misses_total", &[cache]), Some(3));
    for name in [
        "cache_stale_served_total",
        "cache_store_errors_total",
        "cache_decode_errors_total",
        "cache_coherence_flushes_total",
    ] {
        assert_eq!(counter(&metrics, name, &[cache]), Some(0), "{name}");
    }
    match find(&metrics, "cache_entries", &[cache]) {
        Some(DebugValue::Gauge(entries)) => assert_eq!(entries.into_inner(), 1.0),
        other => panic!("cache_entries: {other:?}"),
    }
    assert_eq!(samples(&metrics, "cache_compute_seconds", &[cache]), 3);
    let store = |op| {
        samples(
            &metrics,
            "cache_store_seconds",
            &[cache, ("store", "redis"), ("op", op)],
        )
    };
    assert_eq!(
        (store("get"), store("set")),
        (4, 3),
        "one sample per request Redis saw"
    );
    match find(&metrics, "cache_compute_seconds", &[cache]) {
        Some(DebugValue::Histogram(_)) => {}
        other => panic!("{other:?}"),
    }

    // Labels name functions, layers, stores and operations: never a key or an argument.
    let names: Vec<String> = cache_runtime::functions()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let allowed = |label: &str, value: &str| match label {
        "cache" => names.iter().any(|name| name == value),
        "layer" => ["scope", "l1", "l2"].contains(&value),
        "store" => ["redis", "redis-cluster", "disk"].contains(&value),
        "op" => [
            "get",
            "get_many",
            "set",
            "set_many",
            "delete",
            "delete_prefix",
            "lock",
            "unlock",
        ]
        .contains(&value),
        _ => false,
    };
    for metric in &metrics {
        for (label, value) in &metric.labels {
            assert!(allowed(label, value), "{}: {label}={value}", metric.name);
            assert!(!value.contains(":v0:"), "{}: {label}={value}", metric.name);
        }
    }

    // Hits record nothing: no histogram sample, and the counters move only when published.
    fragment(0); // back in L1 (cleared above): an L2 hit, which records its GET
    snapshot();
    for _ in 0..1_000 {
        fragment(0);
    }
    let metrics = snapshot();
    assert_eq!(samples(&metrics, "cache_compute_seconds", &[cache]), 0);
    assert_eq!(
        samples(
            &metrics,
            "cache_store_seconds",
            &[cache, ("store", "redis"), ("op", "get")]
        ),
        0
    );
    assert_eq!(
        counter(&metrics, "cache_hits_total", &[cache, ("layer", "l1")]),
        Some(0),
        "drained by the last snapshot, not counted by the hits"
    );
    publish_metrics();
    assert_eq!(
        counter(&snapshot(), "cache_hits_total", &[cache, ("layer", "l1")]),
        Some(1_005)
    );
    Config::uninstall();
}

static TICKS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60, name = "metrics::ticker")]
fn ticker(n: u64) -> u64 {
    TICKS.fetch_add(1, SeqCst);
    n + 1
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Waits up to 10 s for `condition`, and fails the test if it never holds.
fn eventually(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "{:?}", thread_names());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn metrics_every_publishes_from_a_thread_that_uninstall_stops() {
    let _guard = serial();
    let server = RedisServer::start();
    snapshotter();
    let install = |every| {
        Config::new()
            .redis(server.url())
            .prefix("metrics-every")
            .metrics_every(every)
            .install()
            .expect("install")
    };
    install(Duration::from_millis(50));
    ticker(1);
    ticker(2);
    ticker(1);
    // A new thread names itself as it starts: seen within moments.
    eventually(|| thread_names().iter().any(|n| n == "cache-metrics"));
    // Nothing here publishes: the thread does, within a few of its rounds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cache = ("cache", "metrics::ticker");
    loop {
        let metrics = snapshot();
        let published = (
            counter(&metrics, "cache_misses_total", &[cache]),
            counter(&metrics, "cache_hits_total", &[cache, ("layer", "l1")]),
        );
        if published == (Some(2), Some(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "not published: {published:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Config::uninstall();
    // Joined by `uninstall`; its /proc entry may outlive the join by a moment.
    eventually(|| !thread_names().iter().any(|n| n == "cache-metrics"));
    // Stopping runs a last round: what happened since the previous one is published.
    install(Duration::from_secs(3_600));
    ticker(3);
    assert_eq!(
        counter(&snapshot(), "cache_misses_total", &[cache]),
        Some(2)
    );
    Config::uninstall();
    assert_eq!(
        counter(&snapshot(), "cache_misses_total", &[cache]),
        Some(3)
    );
}
