//! How long an entry lives and when a caller should refresh it: TTL with jitter, the
//! stale-while-revalidate window, and probabilistic early refresh (XFetch).
//!
//! XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache Stampede
//! Prevention", VLDB 2015): a caller that reads an entry recomputes it early when
//! `now − Δ·β·ln(rand) ≥ expiry`, where Δ is how long the value took to compute. The
//! probability rises as expiry nears and with Δ, so a hot key is refreshed by one caller shortly
//! before it expires instead of by every caller just after.

use std::time::Duration;

use crate::{clock, random};

/// The lifetime settings of one function.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifetime {
    /// How long an entry is fresh; `None` = until evicted.
    pub ttl: Option<Duration>,
    /// Each written lifetime is spread uniformly by up to ± this fraction of `ttl`.
    pub jitter: f64,
    /// How long past expiry an entry may still be served while one caller refreshes it.
    pub stale: Option<Duration>,
    /// β of early refresh; `None` = no early refresh.
    pub early_beta: Option<f64>,
    /// How long past expiry an entry is kept to be returned when the body fails
    /// (`stale_if_error`); `None` = not kept for that.
    pub stale_if_error: Option<Duration>,
    /// The longest L1 keeps an entry (`local_ttl`), shorter than its lifetime in the shared
    /// store; `None` = as long as it is fresh.
    pub local_ttl: Option<Duration>,
}

/// When a new entry expires, in both clocks, and what early refresh needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    /// Monotonic deadline of freshness (`u64::MAX` = never).
    pub(crate) deadline: u64,
    /// Monotonic time until which L1 keeps it (`deadline` plus the stale window).
    pub(crate) keep_until: u64,
    /// Δ·β in nanoseconds (0 = no early refresh).
    pub(crate) delta_beta: u64,
    /// Monotonic time until which L1 keeps it to stand in for a failed body
    /// (`deadline` plus `stale_if_error`; `deadline` without it).
    pub(crate) fallback_until: u64,
    /// Freshness lifetime as written to Redis' envelope.
    pub(crate) fresh_for: Option<Duration>,
}

/// A value that knows how long it stays valid — an access token, a signed URL, a lease. With
/// `#[cached(expires)]` each value is kept for its own [`expires_in`](Expires::expires_in)
/// (at most the function's `ttl`, when one is given), in L1 and in the shared store.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{cached, Expires};
///
/// #[derive(Clone)]
/// struct Token { secret: String, valid_for: Duration }
///
/// impl Expires for Token {
///     fn expires_in(&self) -> Option<Duration> {
///         Some(self.valid_for)
///     }
/// }
///
/// #[cached(local, expires, ttl = 3600)]
/// fn token(user: u32) -> Token {
///     Token { secret: format!("t-{user}"), valid_for: Duration::from_secs(300) }
/// }
///
/// assert_eq!(token(1).secret, token(1).secret); // kept 300 s, not an hour
/// assert_eq!(token::stats().misses, 1);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say how long it stays valid",
    label = "the value type of this cached function",
    note = "`#[cached(expires)]` needs `cache_runtime::Expires` for `{Self}`; without \
            `expires`, every value lives for the function's `ttl`"
)]
pub trait Expires {
    /// How long this value may be served from now; `None` keeps the function's `ttl`.
    fn expires_in(&self) -> Option<Duration>;
}

/// A value's own lifetime under `expires`, capped at the function's `ttl`.
pub(crate) fn capped(own: Option<Duration>, ttl: Option<Duration>) -> Option<Duration> {
    match (own, ttl) {
        (Some(own), Some(ttl)) => Some(own.min(ttl)),
        (own, ttl) => own.or(ttl),
    }
}

/// What a caller should do with an entry it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it.
    Fresh,
    /// Serve it, and refresh it (this caller was picked by early refresh, or it is stale).
    Refresh,
    /// Too old to serve.
    Gone,
}

impl Lifetime {
    /// The times of an entry computed now whose own lifetime is `ttl` (the function's, or
    /// one the value decided: `expires`, `none_ttl`), that took `compute_time`.
    pub(crate) fn new_entry_for(&self, ttl: Option<Duration>, compute_time: Duration) -> Times {
        let fresh_for = ttl.map(|ttl| self.jittered(ttl));
        self.times(fresh_for, compute_time)
    }

    /// The times of an entry read from Redis with `fresh_for` left.
    pub(crate) fn times(&self, fresh_for: Option<Duration>, compute_time: Duration) -> Times {
        let deadline = clock::deadline_after(fresh_for);
        let past = |window: Option<Duration>| match (deadline, window) {
            (u64::MAX, _) | (_, None) => deadline,
            (deadline, Some(window)) => deadline.saturating_add(window.as_nanos() as u64),
        };
        let mut keep_until = past(self.stale);
        let mut fallback_until = past(self.stale_if_error);
        let mut delta_beta = match (self.early_beta, fresh_for) {
            (Some(beta), Some(_)) => ((compute_time.as_nanos() as f64 * beta) as u64).max(1),
            _ => 0,
        };
        let mut deadline = deadline;
        let local_end = clock::deadline_after(self.local_ttl);
        if local_end < deadline {
            // L1 lets it go before it expires: the next call reads the shared store, where it
            // is still fresh (no refresh is due when L1's copy ends).
            (deadline, keep_until, fallback_until, delta_beta) =
                (local_end, local_end, local_end, 0);
        }
        Times {
            deadline,
            keep_until,
            delta_beta,
            fallback_until,
            fresh_for,
        }
    }

    /// How long the shared store keeps an entry that is fresh for `fresh_for`: plus the
    /// longer of the stale and stale-if-error windows.
    pub(crate) fn remote_ttl(&self, fresh_for: Option<Duration>) -> Option<Duration> {
        let window = self.stale.max(self.stale_if_error).unwrap_or_default();
        fresh_for.map(|f| f + window)
    }

    /// Whether L1 keeps entries past their deadline (a stale or a stale-if-error window).
    pub(crate) fn keeps_past_deadline(&self) -> bool {
        self.stale.is_some() || self.stale_if_error.is_some()
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        let spread = (random::unit() * 2.0 - 1.0) * self.jitter;
        ttl.mul_f64((1.0 + spread).max(0.0))
    }
}

/// Judges an entry with the given times at this instant.
#[inline]
pub(crate) fn verdict(deadline: u64, keep_until: u64, delta_beta: u64) -> Verdict {
    if !clock::expired(deadline) {
        if delta_beta != 0 && picked_early(deadline, delta_beta) {
            return Verdict::Refresh;
        }
        return Verdict::Fresh;
    }
    if keep_until > deadline && !clock::expired(keep_until) {
        return Verdict::Refresh;
    }
    Verdict::Gone
}

/// XFetch's draw: `−Δβ·ln(rand) ≥ time left`.
#[inline]
fn picked_early(deadline: u64, delta_beta: u64) -> bool {
    let left = deadline.saturating_sub(clock::now());
    // −ln(rand) < 37 for every rand this generator can give: skip the draw when far from expiry.
    if left / 37 > delta_beta {
        return false;
    }
    -(random::unit().ln()) * delta_beta as f64 >= left as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_within_bounds() {
        let lifetime = Lifetime {
            ttl: Some(Duration::from_secs(100)),
            jitter: 0.1,
            ..Lifetime::default()
        };
        let spreads: Vec<Duration> = (0..1000)
            .map(|_| {
                lifetime
                    .new_entry_for(lifetime.ttl, Duration::ZERO)
                    .fresh_for
                    .unwrap()
            })
            .collect();
        assert!(spreads
            .iter()
            .all(|d| d.as_secs_f64() >= 90.0 && d.as_secs_f64() <= 110.0));
        let min = spreads.iter().min().unwrap().as_secs_f64();
        let max = spreads.iter().max().unwrap().as_secs_f64();
        assert!(min < 92.0 && max > 108.0, "spread {min}..{max}");
    }

    #[test]
    fn early_refresh_is_rare_far_from_expiry_and_certain_at_it() {
        let far = clock::deadline_after(Some(Duration::from_secs(60)));
        let delta_beta = Duration::from_millis(1).as_nanos() as u64;
        assert!((0..10_000).all(|_| verdict(far, far, delta_beta) == Verdict::Fresh));
        let near = clock::deadline_after(Some(Duration::from_micros(50)));
        let refreshes = (0..1000)
            .filter(|_| verdict(near, near, delta_beta) != Verdict::Fresh)
            .count();
        assert!(refreshes > 900, "{refreshes} of 1000 picked near expiry");
    }
}
