//! TinyLFU's doorkeeper, in front of a full L1 for the values a preload scope brings.
//!
//! A scope decodes every value its MGET returned. Backfilling each one into a full moka cache
//! costs an insert (and soon an eviction), and moka's own admission policy turns most of them
//! away anyway when they are one-off reads. So while L1 is full, a value from a scope is
//! admitted only if its key was seen once before within the window: the first sighting sets
//! two bits in a small bit set, the second finds them set and admits. Every
//! [`WINDOW`] sightings the set is cleared, so "seen before" means recently. Two keys may share
//! bits (a Bloom filter's false positive): such a key is admitted a sighting early, which is
//! what happens to every key without the doorkeeper. With room in L1, every value is
//! admitted at once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const WORDS: usize = 256;
const BITS: u64 = (WORDS * 64) as u64;
/// Sightings between two clearings: a quarter of the bits, so that few are set by then.
const WINDOW: u64 = BITS / 4;

/// One function's doorkeeper (2 KiB).
pub(crate) struct Doorkeeper {
    bits: [AtomicU64; WORDS],
    sightings: AtomicU64,
}

impl Doorkeeper {
    pub(crate) const fn new() -> Self {
        Doorkeeper {
            bits: [const { AtomicU64::new(0) }; WORDS],
            sightings: AtomicU64::new(0),
        }
    }

    /// Notes a sighting of the key with this hash; whether it was seen before in the window.
    pub(crate) fn seen_before(&self, hash: u64) -> bool {
        if self.sightings.fetch_add(1, Relaxed) % WINDOW == WINDOW - 1 {
            for word in &self.bits {
                word.store(0, Relaxed);
            }
        }
        let mixed = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (a, b) = (mixed % BITS, (mixed >> 32) % BITS);
        let was_a = self.set(a);
        let was_b = self.set(b);
        was_a && was_b
    }

    /// Sets bit `n`; whether it was set already.
    fn set(&self, n: u64) -> bool {
        let mask = 1u64 << (n % 64);
        self.bits[(n / 64) as usize].fetch_or(mask, Relaxed) & mask != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_admitted_on_its_second_sighting() {
        let door = Doorkeeper::new();
        assert!(!door.seen_before(42));
        assert!(door.seen_before(42));
        assert!(!door.seen_before(7), "another key starts over");
    }

    #[test]
    fn the_window_forgets() {
        let door = Doorkeeper::new();
        assert!(!door.seen_before(42));
        // Fill the rest of the window with other keys; then the set is cleared.
        for n in 0..WINDOW {
            door.seen_before(1_000_000 + n);
        }
        assert!(
            !door.seen_before(42),
            "a sighting from the last window is forgotten"
        );
    }
}
