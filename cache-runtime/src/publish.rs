//! Metrics through the [`metrics`](::metrics) facade (feature `metrics`): the library emits,
//! the application installs a recorder (Prometheus, StatsD, ...).
//!
//! Counters are published from each function's cumulative [`Stats`](crate::Stats), by
//! [`publish_metrics`] or by a background thread on an interval
//! ([`Config::metrics_every`](crate::Config::metrics_every)); the hit path is not touched.
//! The histograms of body time and shared-store latency are recorded where they are measured,
//! on the miss path only.
//!
//! The names and labels are listed at [`publish_metrics`]; no label ever holds a key or an
//! argument.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, Key, Label, Level,
    Metadata, Unit,
};

use crate::registry::{functions, FunctionInfo};
use crate::store::OP_NAMES;

const HITS: &str = "cache_hits_total";
const MISSES: &str = "cache_misses_total";
const STALE_SERVED: &str = "cache_stale_served_total";
const STORE_ERRORS: &str = "cache_store_errors_total";
const DECODE_ERRORS: &str = "cache_decode_errors_total";
const COHERENCE_FLUSHES: &str = "cache_coherence_flushes_total";
const ENTRIES: &str = "cache_entries";
const COMPUTE_SECONDS: &str = "cache_compute_seconds";
const STORE_SECONDS: &str = "cache_store_seconds";

/// Pushes every `#[cached]` function's counters (see [`functions`]) into the installed
/// `metrics` recorder; without one, does nothing. Counters are set to their cumulative
/// values (`Counter::absolute`), so calling it often or rarely gives the same series.
///
/// | metric | kind | labels |
/// | --- | --- | --- |
/// | `cache_hits_total` | counter | `cache`, `layer` = `scope` / `l1` / `l2` |
/// | `cache_misses_total` (body runs) | counter | `cache` |
/// | `cache_stale_served_total` | counter | `cache` |
/// | `cache_store_errors_total` | counter | `cache` |
/// | `cache_decode_errors_total` | counter | `cache` |
/// | `cache_coherence_flushes_total` | counter | `cache` |
/// | `cache_entries` (L1 entries) | gauge | `cache` |
///
/// `cache` is the function's cache name (module path and function name, or `name = ".."`);
/// `layer = "l1"` counts hits of the in-process layer, this thread's front table included.
/// No label holds a key. Two histograms are recorded as misses happen, not by this call:
/// `cache_compute_seconds{cache}` (each run of a body) and
/// `cache_store_seconds{cache, store, op}` (each request to a shared store; `store` =
/// `redis`, `redis-cluster` or `disk`, `op` = `get`, `set`, `get_many`, `set_many`,
/// `delete`, `lock`, ...).
///
/// ```
/// use cache_runtime::cached;
///
/// #[cached(local)]
/// fn square(n: u64) -> u64 { n * n }
///
/// square(3);
/// cache_runtime::publish_metrics(); // a scrape handler calls this before rendering
/// ```
///
/// # Concurrency
///
/// Reads each function's counters as [`functions`] does (a lock per function held while
/// its threads' hit cells are summed); a hit never waits for it.
pub fn publish_metrics() {
    describe();
    for function in functions() {
        publish(&function);
    }
}

fn publish(function: &FunctionInfo) {
    let cache = function.name.clone();
    let stats = &function.stats;
    for (layer, hits) in [
        ("scope", stats.scope_hits),
        ("l1", stats.l1_hits),
        ("l2", stats.l2_hits),
    ] {
        counter!(HITS, "cache" => cache.clone(), "layer" => layer).absolute(hits);
    }
    for (name, value) in [
        (MISSES, stats.misses),
        (STALE_SERVED, stats.stale_served),
        (STORE_ERRORS, stats.l2_errors),
        (DECODE_ERRORS, stats.decode_errors),
        (COHERENCE_FLUSHES, stats.coherence_flushes),
    ] {
        counter!(name, "cache" => cache.clone()).absolute(value);
    }
    gauge!(ENTRIES, "cache" => cache).set(function.entries as f64);
}

/// Units and help texts (a Prometheus exporter shows them as `# HELP`).
fn describe() {
    let counters = [
        (HITS, "Calls answered without running the body, by layer"),
        (MISSES, "Times the function body ran"),
        (
            STALE_SERVED,
            "Failed bodies answered with an expired value (stale_if_error)",
        ),
        (
            STORE_ERRORS,
            "Shared-store requests that failed, timed out or were skipped by the circuit breaker",
        ),
        (
            DECODE_ERRORS,
            "Values in the shared store that could not be decoded",
        ),
        (
            COHERENCE_FLUSHES,
            "Times L1 was emptied after the invalidation listener lost its connection",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    describe_gauge!(ENTRIES, Unit::Count, "Entries in the in-process layer (L1)");
    describe_histogram!(
        COMPUTE_SECONDS,
        Unit::Seconds,
        "Time the function body took"
    );
    describe_histogram!(
        STORE_SECONDS,
        Unit::Seconds,
        "Time one shared-store request took"
    );
}

/// One function's histogram keys, each built at its first use and then reused: recording on
/// the miss path builds no labels and allocates nothing.
pub(crate) struct HistogramKeys {
    name: Arc<str>,
    compute: OnceLock<Key>,
    /// Per kind of store request: the store's kind and the key (the kind is checked at each
    /// use, as a later `Config` may put another store behind the function).
    store: [OnceLock<(&'static str, Key)>; OP_NAMES.len()],
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl HistogramKeys {
    pub(crate) fn new(name: &str) -> Self {
        HistogramKeys {
            name: name.into(),
            compute: OnceLock::new(),
            store: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn store_key(&self, store: &'static str, op: usize) -> Key {
        Key::from_parts(
            STORE_SECONDS,
            vec![
                Label::new("cache", self.name.clone()),
                Label::new("store", store),
                Label::new("op", OP_NAMES[op]),
            ],
        )
    }
}

fn record(key: &Key, elapsed: Duration) {
    ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
        .record(elapsed);
}

/// Records one run of a function's body.
pub(crate) fn compute_time(keys: &HistogramKeys, elapsed: Duration) {
    let key = keys.compute.get_or_init(|| {
        Key::from_parts(
            COMPUTE_SECONDS,
            vec![Label::new("cache", keys.name.clone())],
        )
    });
    record(key, elapsed);
}

/// Records one request to a function's shared store; `op` is the request's `Op::index`.
pub(crate) fn store_time(keys: &HistogramKeys, store: &'static str, op: usize, elapsed: Duration) {
    let (kind, key) = keys.store[op].get_or_init(|| (store, keys.store_key(store, op)));
    if *kind == store {
        record(key, elapsed);
    } else {
        record(&keys.store_key(store, op), elapsed);
    }
}

/// The background thread of [`Config::metrics_every`](crate::Config::metrics_every).
struct Publisher {
    /// Dropped to stop the thread (it wakes at once).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    fn start(every: Duration) -> Option<Publisher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cache-metrics".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => publish_metrics(),
                    _ => return,
                }
            });
        match thread {
            Ok(thread) => Some(Publisher {
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(error) => {
                tracing::warn!(%error, "could not start the metrics thread; metrics are published only by publish_metrics()");
                None
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // What changed since the thread's last round.
        publish_metrics();
    }
}

static PUBLISHER: Mutex<Option<Publisher>> = Mutex::new(None);

/// Stops the running publisher, if any (after a last round), then starts one for `every`.
pub(crate) fn every(every: Option<Duration>) {
    let mut running = PUBLISHER.lock().unwrap_or_else(|e| e.into_inner());
    drop(running.take());
    *running = every
        .filter(|every| !every.is_zero())
        .and_then(Publisher::start);
}
