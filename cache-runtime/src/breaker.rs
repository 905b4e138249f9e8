//! A circuit breaker: after repeated failures, stop asking a dead server for a while.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock;

/// Closed (requests go through) until `threshold` consecutive failures; then open (requests
/// are skipped) for `cooldown`; then requests go through again, and the first failure opens it
/// again while the first success closes it.
pub(crate) struct Breaker {
    consecutive_failures: AtomicU32,
    open_until: AtomicU64,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            consecutive_failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            threshold,
            cooldown,
        }
    }

    /// Whether a request may be sent now.
    pub(crate) fn allows(&self) -> bool {
        let until = self.open_until.load(Relaxed);
        until == 0 || clock::now() >= until
    }

    pub(crate) fn succeeded(&self) {
        if self.consecutive_failures.swap(0, Relaxed) >= self.threshold {
            tracing::info!("redis answered again: circuit breaker closed");
        }
        self.open_until.store(0, Relaxed);
    }

    pub(crate) fn failed(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if failures >= self.threshold {
            if failures == self.threshold {
                tracing::warn!(
                    failures,
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "redis keeps failing: circuit breaker open, calls compute without it"
                );
            }
            self.open_until
                .store(clock::deadline_after(Some(self.cooldown)), Relaxed);
        }
    }
}
