//! Time for expiry checks: a monotonic nanosecond clock, plus a cheap test of "has this
//! deadline passed?" that is exact but rarely pays for a precise clock read.
//!
//! On Linux the coarse monotonic clock costs a few nanoseconds but lags real time by up to one
//! kernel tick. A deadline more than a safety margin ahead of the coarse reading is certainly
//! in the future; only entries within that margin of expiry read the precise clock. So an
//! entry is never served after its deadline, and the hit path almost never pays for
//! `clock_gettime(CLOCK_MONOTONIC)`.
//!
//! With the `testing` feature every reading here (both clocks and [`unix_millis`]) adds
//! [`offset`], which [`crate::testing::advance`] moves forward; without it `offset` is the
//! constant 0 and compiles away.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds on the monotonic clock (an arbitrary, process-wide origin).
#[inline]
pub fn now() -> u64 {
    read(Source::Precise).wrapping_add(offset())
}

/// `true` when `deadline` (a [`now`] reading) has passed.
#[inline]
pub fn expired(deadline: u64) -> bool {
    if deadline == u64::MAX {
        return false;
    }
    let coarse = read(Source::Coarse).wrapping_add(offset());
    if coarse.saturating_add(coarse_margin()) < deadline {
        return false;
    }
    now() >= deadline
}

/// The deadline `ttl` from now; `None` means never.
pub fn deadline_after(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => u64::MAX,
        Some(ttl) => now().saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64),
    }
}

/// Time left before `deadline`, `None` if it never expires.
pub fn remaining(deadline: u64) -> Option<Duration> {
    (deadline != u64::MAX).then(|| Duration::from_nanos(deadline.saturating_sub(now())))
}

/// Milliseconds since the Unix epoch (for expiry times that cross process boundaries).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        + offset() / 1_000_000
}

/// Nanoseconds the test clock was moved forward (see [`crate::testing::advance`]).
#[cfg(feature = "testing")]
pub(crate) static OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What every reading adds: the test clock's offset, or 0 without the `testing` feature.
#[inline(always)]
pub(crate) fn offset() -> u64 {
    #[cfg(feature = "testing")]
    {
        OFFSET.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "testing"))]
    {
        0
    }
}

#[derive(Clone, Copy)]
enum Source {
    Precise,
    Coarse,
}

#[cfg(target_os = "linux")]
#[inline]
fn read(source: Source) -> u64 {
    let id = match source {
        Source::Precise => libc::CLOCK_MONOTONIC,
        Source::Coarse => libc::CLOCK_MONOTONIC_COARSE,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and both clock ids exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn read(_source: Source) -> u64 {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    origin.elapsed().as_nanos() as u64
}

/// How far the coarse clock may lag: four of its ticks, and never less than 10 ms.
#[inline]
fn coarse_margin() -> u64 {
    static MARGIN: OnceLock<u64> = OnceLock::new();
    *MARGIN.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            let mut res = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `res` is a valid, writable timespec.
            let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0;
            let tick = if ok {
                res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64
            } else {
                u64::MAX / 8
            };
            tick.saturating_mul(4).max(10_000_000)
        }
        #[cfg(not(target_os = "linux"))]
        {
            0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_exact() {
        let deadline = deadline_after(Some(Duration::from_millis(30)));
        assert!(!expired(deadline));
        while now() < deadline {
            std::hint::spin_loop();
        }
        assert!(expired(deadline));
        assert!(!expired(u64::MAX));
    }
}
