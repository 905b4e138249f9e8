//! A small, fast per-thread random source for jitter, early refresh and lock tokens.
//! Not cryptographic: lock tokens only need to differ between callers.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let thread = THREADS.fetch_add(1, Ordering::Relaxed);
    mix(time ^ (std::process::id() as u64) << 32 ^ thread.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniformly random `u64`.
pub(crate) fn next_u64() -> u64 {
    STATE
        .try_with(|state| {
            let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(next);
            mix(next)
        })
        .unwrap_or_else(|_| seed())
}

/// A uniformly random `f64` in `(0, 1]` (never zero, so its logarithm is finite).
pub(crate) fn unit() -> f64 {
    ((next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
}

/// A random token for a lock owner.
pub(crate) fn token() -> String {
    format!("{:016x}{:016x}", next_u64(), next_u64())
}
