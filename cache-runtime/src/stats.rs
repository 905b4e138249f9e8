//! Per-function counters.
//!
//! Hits served by a thread's front table are counted in a cell only that thread writes, so a
//! hit costs no shared atomic write (which would bounce a cache line between cores). The
//! other counters change only on slower paths and live in shared atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Counters of one `#[cached]` function since the process started (or since
/// [`reset_stats`](crate::reset_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from a preload scope.
    pub scope_hits: u64,
    /// Calls answered from the in-process cache (L1).
    pub l1_hits: u64,
    /// Calls answered from Redis (L2).
    pub l2_hits: u64,
    /// Times the function body ran.
    pub misses: u64,
    /// Redis operations that failed, timed out, or were skipped while the circuit breaker was
    /// open. Each one fell back to computing the value.
    pub l2_errors: u64,
    /// Values in Redis that could not be decoded (foreign, truncated or of another type); each
    /// was treated as a miss and overwritten.
    pub decode_errors: u64,
    /// Calls whose body failed (`Err`, `None`) and that returned an expired value instead
    /// (`stale_if_error`).
    pub stale_served: u64,
    /// Times L1 and the front tables were emptied because the connection that hears other
    /// processes' invalidations was lost (messages may have been missed meanwhile); see
    /// [`Config::coherent`](crate::Config::coherent).
    pub coherence_flushes: u64,
}

impl Stats {
    /// The share of calls answered without running the body: hits in any layer over hits
    /// plus body runs (0 when there were no calls).
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.scope_hits + self.l1_hits + self.l2_hits;
        let calls = hits + self.misses;
        if calls == 0 {
            0.0
        } else {
            hits as f64 / calls as f64
        }
    }

    /// What was counted after `earlier` (a snapshot of the same function taken before): a
    /// test's own calls, whatever other tests counted before it began.
    ///
    /// ```
    /// use cache_runtime::cached;
    ///
    /// #[cached(local)]
    /// fn double(n: u64) -> u64 { n * 2 }
    ///
    /// double(1); // an earlier test's call
    /// let before = double::stats();
    /// double(2);
    /// double(2);
    /// let mine = double::stats().since(&before);
    /// assert_eq!((mine.misses, mine.l1_hits), (1, 1));
    /// ```
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            scope_hits: self.scope_hits.saturating_sub(earlier.scope_hits),
            l1_hits: self.l1_hits.saturating_sub(earlier.l1_hits),
            l2_hits: self.l2_hits.saturating_sub(earlier.l2_hits),
            misses: self.misses.saturating_sub(earlier.misses),
            l2_errors: self.l2_errors.saturating_sub(earlier.l2_errors),
            decode_errors: self.decode_errors.saturating_sub(earlier.decode_errors),
            stale_served: self.stale_served.saturating_sub(earlier.stale_served),
            coherence_flushes: self
                .coherence_flushes
                .saturating_sub(earlier.coherence_flushes),
        }
    }
}

/// A counter written by a single thread and read by any.
#[derive(Default)]
pub(crate) struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    /// Adds one. Only the owning thread calls this, so a plain load and store suffice.
    #[inline]
    pub(crate) fn bump(&self) {
        self.0.store(self.0.load(Relaxed) + 1, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The shared counters of one function, plus the per-thread hit cells.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) scope_hits: AtomicU64,
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) coherence_flushes: AtomicU64,
    thread_hits: Mutex<Vec<Arc<OwnedCounter>>>,
    /// What [`snapshot`](Self::snapshot) subtracts: the counts at the last reset. The
    /// counters themselves are never zeroed, since each thread's hit cell may be written only
    /// by its thread.
    zero: Mutex<Stats>,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// A new hit cell for the calling thread.
    pub(crate) fn register_thread(&self) -> Arc<OwnedCounter> {
        let cell = Arc::new(OwnedCounter::default());
        if let Ok(mut cells) = self.thread_hits.lock() {
            cells.push(cell.clone());
        }
        cell
    }

    /// Folds a finished thread's hits into the shared count and forgets its cell.
    pub(crate) fn retire_thread(&self, cell: &Arc<OwnedCounter>) {
        if let Ok(mut cells) = self.thread_hits.lock() {
            self.l1_hits.fetch_add(cell.get(), Relaxed);
            cells.retain(|c| !Arc::ptr_eq(c, cell));
        }
    }

    /// Counts since the last [`reset`](Self::reset).
    pub(crate) fn snapshot(&self) -> Stats {
        let zero = *self.zero.lock().unwrap_or_else(|e| e.into_inner());
        self.raw().since(&zero)
    }

    /// Makes the counts start again from 0.
    pub(crate) fn reset(&self) {
        let raw = self.raw();
        *self.zero.lock().unwrap_or_else(|e| e.into_inner()) = raw;
    }

    /// Counts since the function was created.
    fn raw(&self) -> Stats {
        // `l1_hits` is read under the lock `retire_thread` holds while it moves a cell's hits
        // into it, so a finishing thread's hits are counted exactly once.
        let l1_hits = match self.thread_hits.lock() {
            Ok(cells) => self.l1_hits.load(Relaxed) + cells.iter().map(|c| c.get()).sum::<u64>(),
            Err(_) => self.l1_hits.load(Relaxed),
        };
        Stats {
            scope_hits: self.scope_hits.load(Relaxed),
            l1_hits,
            l2_hits: self.l2_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            l2_errors: self.l2_errors.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            coherence_flushes: self.coherence_flushes.load(Relaxed),
        }
    }
}
