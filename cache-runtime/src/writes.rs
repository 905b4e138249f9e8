//! How many values were put in one function's L1, per stripe of keys: what lets a preload
//! scope answer a call before L1 is asked.
//!
//! A scope reads L1 for each key when it is planned, and keeps L1's value or the MGET's
//! bytes. A call inside it may take the slot's answer without asking L1 again only if L1 got
//! no newer value for the key in between (another caller's read or computation, a `put`):
//! the slot notes the key's stripe count here when planned, and the call compares it with
//! the count now. Any insert into the stripe since, for this key or another, sends the call
//! to L1 first, as it always went before; so a miscount can only cost a lookup, never serve
//! an older value.
//!
//! The counters are allocated by the first scope that plans a key of the function: a
//! function no scope names pays one pointer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Stripes of keys, by probe hash (4 KiB of counters once allocated). Under load other
/// requests fill L1 all the time; with 20 keys a page and a hundred inserts while it
/// renders, about one key in ten finds its stripe moved.
const STRIPES: usize = 1024;

/// One function's L1 write counts (see the module docs).
pub(crate) struct Writes {
    counts: OnceLock<Box<[AtomicU32]>>,
}

impl Writes {
    pub(crate) const fn new() -> Self {
        Writes {
            counts: OnceLock::new(),
        }
    }

    fn stripe(hash: u64) -> usize {
        // Other bits than the front epochs' stripes take (the low ones).
        (hash >> 20) as usize % STRIPES
    }

    /// The count of the key with this probe hash, for a scope to note: allocates the
    /// counters the first time.
    pub(crate) fn noted(&self, hash: u64) -> u32 {
        let counts = self
            .counts
            .get_or_init(|| (0..STRIPES).map(|_| AtomicU32::new(0)).collect());
        counts[Self::stripe(hash)].load(Ordering::Acquire)
    }

    /// The count of the key with this probe hash now (0 while no scope has noted one).
    #[inline]
    pub(crate) fn now(&self, hash: u64) -> u32 {
        self.counts.get().map_or(0, |counts| {
            counts[Self::stripe(hash)].load(Ordering::Acquire)
        })
    }

    /// Counts a value put in L1 for the key with this probe hash, after it was put there.
    #[inline]
    pub(crate) fn inserted(&self, hash: u64) {
        if let Some(counts) = self.counts.get() {
            counts[Self::stripe(hash)].fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_moves_its_stripe_once_counters_exist() {
        let writes = Writes::new();
        writes.inserted(7);
        assert_eq!(
            writes.now(7),
            0,
            "nothing counted before a scope noted a key"
        );
        let noted = writes.noted(7);
        writes.inserted(7);
        assert_ne!(writes.now(7), noted);
        let elsewhere = 7 + (1 << 20);
        assert_eq!(writes.now(elsewhere), writes.noted(elsewhere));
    }
}
