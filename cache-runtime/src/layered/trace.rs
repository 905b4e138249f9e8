//! What one miss tells `tracing` (and, with the `metrics` feature, the recorder): a `debug`
//! span named `cache_miss` from the moment neither L1 nor a preload scope answered, with the
//! function's name, the layers asked, the outcome and the timings as fields, closed by one
//! `debug` event that says what happened. Hits create nothing.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::Span;

use crate::store::Op;

/// A layer or step a miss went through, for the span's `layers` field.
#[derive(Clone, Copy)]
pub(super) enum Asked {
    /// A preload scope held the key (absent, or a value that did not serve).
    Scope = 1,
    /// The shared store was read.
    L2 = 2,
    /// The fleet-wide compute lock was tried.
    Lock = 4,
    /// Another caller of this process was waited for.
    Flight = 8,
}

/// How a miss ended, for the span's `outcome` field and the closing event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Still under way (or the call was dropped before it ended).
    Open = 0,
    /// The shared store held a fresh value.
    L2Hit,
    /// Another caller of this process computed (or read) it meanwhile.
    Joined,
    /// An expired or early-refresh value, served while another caller refreshes it.
    Stale,
    /// The body ran and its value was kept.
    Computed,
    /// The body ran and returned what is not cached (`Err`, `None`).
    Uncacheable,
    /// The body failed and an expired value was served instead (`stale_if_error`).
    StaleIfError,
}

impl Ending {
    const ALL: [Ending; 7] = [
        Ending::Open,
        Ending::L2Hit,
        Ending::Joined,
        Ending::Stale,
        Ending::Computed,
        Ending::Uncacheable,
        Ending::StaleIfError,
    ];

    fn name(self) -> &'static str {
        match self {
            Ending::Open => "unfinished",
            Ending::L2Hit => "l2_hit",
            Ending::Joined => "joined",
            Ending::Stale => "stale",
            Ending::Computed => "computed",
            Ending::Uncacheable => "uncacheable",
            Ending::StaleIfError => "stale_if_error",
        }
    }

    fn says(self) -> &'static str {
        match self {
            Ending::Open => "cache miss: the call ended before an answer",
            Ending::L2Hit => "cache miss: found in the shared store",
            Ending::Joined => "cache miss: another caller of this process got the value meanwhile",
            Ending::Stale => {
                "cache miss: served the previous value while another caller refreshes it"
            }
            Ending::Computed => "cache miss: ran the body and kept its value",
            Ending::Uncacheable => {
                "cache miss: ran the body; its result (Err or None) is not cached"
            }
            Ending::StaleIfError => {
                "cache miss: the body failed; served the last value within stale_if_error"
            }
        }
    }
}

/// The trace of one call past L1; empty (and free) until [`begin`](Trace::begin).
#[derive(Default)]
pub(super) struct Trace {
    /// The span and when the miss began.
    began: OnceLock<(Span, Instant)>,
    asked: AtomicU8,
    ending: AtomicU8,
    compute_nanos: AtomicU64,
    wait_nanos: AtomicU64,
}

impl Trace {
    /// Opens the miss's span (once; later calls keep the first).
    pub(super) fn begin(&self, cache: &str) {
        self.began.get_or_init(|| {
            let span = tracing::debug_span!(
                "cache_miss",
                cache,
                layers = Empty,
                outcome = Empty,
                compute_ms = Empty,
                store_ms = Empty,
                wait_ms = Empty,
                total_ms = Empty,
            );
            (span, Instant::now())
        });
    }

    /// The miss's span, which events of the miss name as their parent (before
    /// [`begin`](Trace::begin), and for companions: the caller's current span).
    pub(super) fn span(&self) -> Span {
        self.began
            .get()
            .map_or_else(Span::current, |(span, _)| span.clone())
    }

    pub(super) fn asked(&self, step: Asked) {
        self.asked.fetch_or(step as u8, Relaxed);
    }

    pub(super) fn ended(&self, ending: Ending) {
        self.ending.store(ending as u8, Relaxed);
    }

    /// Counts time spent running the body, recorded in `cache_compute_seconds` too.
    pub(super) fn computed(&self, cache: &Label, elapsed: Duration) {
        add(&self.compute_nanos, elapsed);
        body_ran(cache, elapsed);
    }

    /// Counts time spent waiting for another caller or a lock's owner.
    pub(super) fn waited(&self, elapsed: Duration) {
        add(&self.wait_nanos, elapsed);
    }

    /// Fills the span's fields and says how the miss ended; `on_store`: the time the call
    /// spent on its shared store.
    pub(super) fn finish(&self, on_store: Duration) {
        let Some((span, began)) = self.began.get() else {
            return;
        };
        if span.is_disabled() {
            return;
        }
        let asked = self.asked.load(Relaxed);
        let mut layers = String::from("l1");
        for (step, name) in [
            (Asked::Scope, "scope"),
            (Asked::Flight, "flight"),
            (Asked::L2, "l2"),
            (Asked::Lock, "lock"),
        ] {
            if asked & step as u8 != 0 {
                layers.push(',');
                layers.push_str(name);
            }
        }
        let ending = Ending::ALL
            .get(self.ending.load(Relaxed) as usize)
            .copied()
            .unwrap_or(Ending::Open);
        // Milliseconds to the microsecond.
        let ms = |nanos: u64| (nanos as f64 / 1e3).round() / 1e3;
        let total = began.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        span.record("layers", layers.as_str());
        span.record("outcome", ending.name());
        span.record("compute_ms", ms(self.compute_nanos.load(Relaxed)));
        span.record("store_ms", ms(on_store.as_nanos() as u64));
        span.record("wait_ms", ms(self.wait_nanos.load(Relaxed)));
        span.record("total_ms", ms(total));
        tracing::debug!(parent: span, "{}", ending.says());
    }
}

fn add(nanos: &AtomicU64, elapsed: Duration) {
    nanos.fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
}

/// A function's name as the `cache` label of its histograms, with their keys built once
/// (feature `metrics`; empty without it).
pub(crate) struct Label {
    #[cfg(feature = "metrics")]
    keys: crate::publish::HistogramKeys,
}

impl Label {
    pub(crate) fn new(name: &str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = name;
        Label {
            #[cfg(feature = "metrics")]
            keys: crate::publish::HistogramKeys::new(name),
        }
    }
}

/// Records one run of `cache`'s body in `cache_compute_seconds` (feature `metrics`).
pub(super) fn body_ran(cache: &Label, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    crate::publish::compute_time(&cache.keys, elapsed);
    #[cfg(not(feature = "metrics"))]
    let _ = (cache, elapsed);
}

/// Records one request to `cache`'s shared store in `cache_store_seconds` (feature
/// `metrics`).
pub(super) fn store_took(cache: &Label, store: &'static str, op: &Op<'_>, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    crate::publish::store_time(&cache.keys, store, op.index(), elapsed);
    #[cfg(not(feature = "metrics"))]
    let _ = (cache, store, op, elapsed);
}
