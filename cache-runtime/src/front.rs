//! The per-thread front table: the first thing a call looks at.
//!
//! Each `#[cached]` function has, on each thread that calls it, a small set-associative table
//! of recently hit entries. A hit there touches no lock and no shared cache line: one
//! thread-local access, a hash of the encoded arguments, a string compare, an epoch check and
//! an expiry check. It stays exact:
//!
//! - **TTL**: each slot keeps its entry's deadline and is checked with [`clock::expired`],
//!   which never serves an entry after its deadline.
//! - **Invalidation**: the function keeps an epoch counter that `invalidate` bumps *after*
//!   removing the entry from L1; a slot filled under an older epoch is ignored. A slot is
//!   always stamped with the epoch read *before* the L1 lookup that filled it, so a concurrent
//!   invalidation can never leave a stale slot looking current.
//!
//! The table starts at 16 slots and doubles while it keeps being refilled, up to a bound
//! derived from the function's `capacity`, so rarely called functions cost almost nothing.

use std::cell::RefCell;
use std::sync::Arc;

use crate::clock;
use crate::freshness::{self, Verdict};
use crate::stats::{Counters, OwnedCounter};

/// Slots looked at for one key (one cache line's worth of tags).
const WAYS: usize = 4;
const INITIAL_SLOTS: usize = 16;
const MAX_SLOTS: usize = 4096;

struct Slot<V> {
    hash: u64,
    args: Box<str>,
    value: V,
    deadline: u64,
    delta_beta: u64,
    epoch: u64,
}

/// What a front-table lookup found.
pub(crate) enum Lookup<V> {
    /// A fresh value.
    Hit(V),
    /// A fresh value, but early refresh picked this caller to recompute it.
    PickedForRefresh,
    /// Nothing usable.
    Miss,
}

/// What a slot is filled with.
pub(crate) struct Fill<V> {
    pub(crate) value: V,
    /// Freshness deadline of the entry the value came from.
    pub(crate) deadline: u64,
    /// Δ·β of early refresh (0 = off): a caller picked to refresh early falls through to L1.
    pub(crate) delta_beta: u64,
    /// The function's epoch read before that entry was looked up.
    pub(crate) epoch: u64,
}

struct Table<V> {
    slots: Vec<Option<Slot<V>>>,
    max_slots: usize,
    refills: usize,
    next_victim: usize,
    hits: Option<(Arc<OwnedCounter>, &'static Counters)>,
}

/// One thread's front table for one function. Generated code declares it in a
/// `thread_local!`; users never name it.
pub struct Front<V> {
    table: RefCell<Table<V>>,
}

impl<V> Front<V> {
    /// An empty table (no allocation until first use).
    pub const fn new() -> Self {
        Front {
            table: RefCell::new(Table {
                slots: Vec::new(),
                max_slots: MAX_SLOTS,
                refills: 0,
                next_victim: 0,
                hits: None,
            }),
        }
    }
}

impl<V> Default for Front<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone> Front<V> {
    /// The value for `args` if this thread holds a fresh one (and counts the hit).
    #[inline]
    pub(crate) fn get(&self, args: &str, hash: u64, epoch: u64) -> Lookup<V> {
        let Ok(table) = self.table.try_borrow() else {
            return Lookup::Miss;
        };
        if table.slots.is_empty() {
            return Lookup::Miss;
        }
        let start = table.bucket(hash);
        for slot in table.slots[start..start + WAYS].iter().flatten() {
            if slot.hash == hash && slot.epoch == epoch && &*slot.args == args {
                return match freshness::verdict(slot.deadline, slot.deadline, slot.delta_beta) {
                    Verdict::Fresh => {
                        if let Some((cell, _)) = &table.hits {
                            cell.bump();
                        }
                        Lookup::Hit(slot.value.clone())
                    }
                    Verdict::Refresh => Lookup::PickedForRefresh,
                    Verdict::Gone => Lookup::Miss,
                };
            }
        }
        Lookup::Miss
    }

    /// Remembers `fill` for `args` on this thread.
    pub(crate) fn put(
        &self,
        args: &str,
        hash: u64,
        fill: Fill<V>,
        counters: &'static Counters,
        capacity: u64,
    ) {
        let Ok(mut table) = self.table.try_borrow_mut() else {
            return;
        };
        if table.hits.is_none() {
            table.hits = Some((counters.register_thread(), counters));
            let wanted = (capacity as usize).saturating_mul(2).next_power_of_two();
            table.max_slots = wanted.clamp(INITIAL_SLOTS, MAX_SLOTS);
        }
        table.refills += 1;
        if table.slots.is_empty() {
            table.resize(INITIAL_SLOTS);
        } else if table.refills > table.slots.len() && table.slots.len() < table.max_slots {
            let doubled = table.slots.len() * 2;
            table.resize(doubled);
        }
        table.insert(Slot {
            hash,
            args: args.into(),
            value: fill.value,
            deadline: fill.deadline,
            delta_beta: fill.delta_beta,
            epoch: fill.epoch,
        });
    }
}

impl<V> Table<V> {
    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        (hash as usize & (self.slots.len() - 1)) & !(WAYS - 1)
    }

    fn resize(&mut self, len: usize) {
        let old = std::mem::take(&mut self.slots);
        self.slots = (0..len).map(|_| None).collect();
        self.refills = 0;
        for slot in old.into_iter().flatten() {
            if !clock::expired(slot.deadline) {
                self.insert(slot);
            }
        }
    }

    fn insert(&mut self, slot: Slot<V>) {
        let start = self.bucket(slot.hash);
        let bucket = &mut self.slots[start..start + WAYS];
        let index = bucket
            .iter()
            .position(|s| match s {
                None => true,
                Some(s) => {
                    (s.hash == slot.hash && s.args == slot.args) || clock::expired(s.deadline)
                }
            })
            .unwrap_or_else(|| {
                self.next_victim = (self.next_victim + 1) % WAYS;
                self.next_victim
            });
        bucket[index] = Some(slot);
    }
}

impl<V> Drop for Table<V> {
    fn drop(&mut self) {
        if let Some((cell, counters)) = &self.hits {
            counters.retire_thread(cell);
        }
    }
}

/// A fast, stable hash of encoded arguments (FxHash's multiply-rotate over 8-byte words).
#[inline]
pub(crate) fn hash(text: &str) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h: u64 = text.len() as u64;
    let mut bytes = text.as_bytes();
    while bytes.len() >= 8 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[..8]);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
        bytes = &bytes[8..];
    }
    if !bytes.is_empty() {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
    }
    // Mix the high bits down: bucket selection uses the low bits.
    h ^ (h >> 29) ^ (h >> 47)
}
