//! The per-thread front table: the first thing a call looks at.
//!
//! Each `#[cached]` function has, on each thread that calls it, a small set-associative table
//! of recently hit entries. A hit there takes no lock and writes no shared cache line (but
//! what copying the value writes, such as an `Arc`'s count): one thread-local access, a hash
//! of the encoded arguments, a string compare, an epoch check, an expiry check and a copy of
//! the value. It stays exact:
//!
//! - **TTL**: each slot keeps its entry's deadline and is checked with [`clock::expired`],
//!   which never serves an entry after its deadline.
//! - **Invalidation and replacement**: the function keeps [`Epochs`], a small array of
//!   counters indexed by the key's hash. `invalidate` and `clear_local` bump all of them
//!   *after* removing entries from L1; a refresh that replaces a value before its deadline
//!   (early refresh) bumps its key's counter after putting the new value in L1. A slot filled
//!   under an older count is ignored, so no thread serves a value after it was removed or
//!   replaced. A slot is always stamped with the count read *before* the L1 lookup that filled
//!   it, so a concurrent invalidation or refresh can never leave a stale slot looking current.
//!   A refresh flushes only the slots of keys sharing its counter (one in [`STRIPES`]).
//!
//! A slot shares its value with the L1 entry it was filled from (an `Arc`): however many
//! threads hold a key, the process holds one copy of its value, and a hit copies it out for
//! its caller (one pointer more to follow than a value kept in the slot).
//!
//! The table starts at 16 slots and doubles each time it has been refilled a quarter of its
//! size over, up to a bound
//! derived from the function's `capacity`, so rarely called functions cost almost nothing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock;
use crate::freshness::{self, Verdict};
use crate::key::{CallProbe, KeyBuf, HEAD};
use crate::stats::{Counters, OwnedCounter};

/// Slots looked at for one key: one cache line's worth of tags. Eight rather than four: with
/// four, 1 000 hot keys in the largest table (1 024 buckets) overflow a few buckets, whose
/// keys then evict each other and miss about 2 % of the time; with eight, none do.
const WAYS: usize = 8;
const INITIAL_SLOTS: usize = 16;
const MAX_SLOTS: usize = 4096;

struct Slot<V> {
    hash: u64,
    head: Head,
    len: usize,
    /// The whole key, kept only when it is longer than `head`.
    long: Option<Box<str>>,
    /// Shared with the L1 entry the slot was filled from: no thread holds a copy of its own.
    value: Arc<V>,
    deadline: u64,
    delta_beta: u64,
    epoch: u64,
}

/// What [`Front::fresh`] found: `None`, no fresh value; `Some(None)`, one (not asked to
/// share it); `Some(Some(..))`, the value, its deadline and early refresh's Δ·β.
pub(crate) type Fresh<V> = Option<Option<(Arc<V>, u64, u64)>>;

/// What a front-table lookup found.
pub(crate) enum Lookup<V> {
    /// A fresh value.
    Hit(V),
    /// A fresh value, but early refresh picked this caller to recompute it; the deadline of
    /// the copy that was picked (the refresh is for that entry, not a newer one).
    PickedForRefresh(u64),
    /// Nothing usable.
    Miss,
}

/// What a slot is filled with.
pub(crate) struct Fill<V: ?Sized> {
    /// The L1 entry's value (a reference counted, not a copy).
    pub(crate) value: Arc<V>,
    /// Freshness deadline of the entry the value came from.
    pub(crate) deadline: u64,
    /// Δ·β of early refresh (0 = off): a caller picked to refresh early falls through to L1.
    pub(crate) delta_beta: u64,
    /// The key's count in [`Epochs`], read before that entry was looked up.
    pub(crate) epoch: u64,
}

/// Counters that void front-table slots: one per stripe of keys (by hash).
pub(crate) const STRIPES: usize = 64;

/// The front tables' validity counters of one function (see the module docs).
pub(crate) struct Epochs {
    counts: [AtomicU64; STRIPES],
    /// Whether a slot may have been filled since every slot was last voided: `false` lets a
    /// preload scope skip the front table (a hint only: skipping it is always safe, L1
    /// answers instead).
    filled: AtomicBool,
}

impl Epochs {
    pub(crate) const fn new() -> Self {
        Epochs {
            counts: [const { AtomicU64::new(0) }; STRIPES],
            filled: AtomicBool::new(false),
        }
    }

    /// Notes that a slot is being filled (see [`Epochs::may_hold`]).
    #[inline]
    pub(crate) fn filling(&self) {
        if !self.filled.load(Ordering::Relaxed) {
            self.filled.store(true, Ordering::Relaxed);
        }
    }

    /// `false` when no slot was filled since every slot was voided: no front table can
    /// hold a current one.
    #[inline]
    pub(crate) fn may_hold(&self) -> bool {
        self.filled.load(Ordering::Relaxed)
    }

    /// The count slots of the key with this probe hash are checked against.
    #[inline]
    pub(crate) fn of(&self, hash: u64) -> u64 {
        self.counts[hash as usize % STRIPES].load(Ordering::Acquire)
    }

    /// Voids every slot of keys in this hash's stripe, on every thread.
    pub(crate) fn bump(&self, hash: u64) {
        self.counts[hash as usize % STRIPES].fetch_add(1, Ordering::AcqRel);
    }

    /// Voids every slot, on every thread.
    pub(crate) fn bump_all(&self) {
        for count in &self.counts {
            count.fetch_add(1, Ordering::AcqRel);
        }
        // A slot filled meanwhile may be current and not noted: then a scope asks L1 about
        // its key, as it would without a front table.
        self.filled.store(false, Ordering::Relaxed);
    }
}

struct Table<V> {
    /// The hash of each slot's key (0 = empty), scanned before touching any slot: one cache
    /// line covers a bucket's tags, while the slots themselves are large.
    tags: Vec<u64>,
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
                tags: Vec::new(),
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
    pub(crate) fn get(&self, probe: &Probe, args: &str, epoch: u64) -> Lookup<V> {
        let Ok(table) = self.table.try_borrow() else {
            return Lookup::Miss;
        };
        let Some(slot) = table.slot_of(probe, args, epoch) else {
            return Lookup::Miss;
        };
        match freshness::verdict(slot.deadline, slot.deadline, slot.delta_beta) {
            Verdict::Fresh => {
                if let Some((cell, _)) = &table.hits {
                    cell.bump();
                }
                Lookup::Hit(V::clone(&slot.value))
            }
            Verdict::Refresh => Lookup::PickedForRefresh(slot.deadline),
            Verdict::Gone => Lookup::Miss,
        }
    }

    /// Whether [`get`](Self::get) would return a fresh value for `args` now (`Some`), with
    /// no hit counted: the same slot, epoch and deadline checks (and early refresh's draw),
    /// so that it never says so of a value a call would not serve. With `share`, the value
    /// itself (shared, no copy), its deadline and early refresh's Δ·β. One function for both
    /// (generated for each value type), rather than one each.
    // `let .. else` rather than `?`, which would generate its `Try` glue per value type.
    #[allow(clippy::question_mark)]
    pub(crate) fn fresh(&self, probe: &Probe, args: &str, epoch: u64, share: bool) -> Fresh<V> {
        let Ok(table) = self.table.try_borrow() else {
            return None;
        };
        let Some(slot) = table.slot_of(probe, args, epoch) else {
            return None;
        };
        if freshness::verdict(slot.deadline, slot.deadline, slot.delta_beta) != Verdict::Fresh {
            return None;
        }
        if !share {
            return Some(None);
        }
        Some(Some((
            Arc::clone(&slot.value),
            slot.deadline,
            slot.delta_beta,
        )))
    }

    /// Remembers `fill` for `args` on this thread.
    pub(crate) fn put(
        &self,
        probe: &Probe,
        args: &str,
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
        } else if table.refills > table.slots.len() / 4 && table.slots.len() < table.max_slots {
            let doubled = table.slots.len() * 2;
            table.resize(doubled);
        }
        table.insert(Slot {
            hash: probe.hash,
            head: probe.head,
            len: probe.len,
            long: probe.long_of(args),
            value: fill.value,
            deadline: fill.deadline,
            delta_beta: fill.delta_beta,
            epoch: fill.epoch,
        });
    }
}

impl<V> Slot<V> {
    #[inline]
    fn matches(&self, probe: &Probe, args: &str) -> bool {
        self.len == probe.len
            && same_head(&self.head, &probe.head)
            && self.long.as_deref().is_none_or(|long| long == args)
    }

    fn same_key(&self, other: &Slot<V>) -> bool {
        self.hash == other.hash
            && self.len == other.len
            && self.head == other.head
            && self.long == other.long
    }
}

impl<V> Table<V> {
    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        (hash as usize & (self.slots.len() - 1)) & !(WAYS - 1)
    }

    /// The slot a lookup of `args` answers with: the first one of the key at this epoch.
    #[inline(always)]
    fn slot_of(&self, probe: &Probe, args: &str, epoch: u64) -> Option<&Slot<V>> {
        if self.slots.is_empty() {
            return None;
        }
        let start = self.bucket(probe.hash);
        let tags = &self.tags[start..start + WAYS];
        let slots = &self.slots[start..start + WAYS];
        for (tag, slot) in tags.iter().zip(slots) {
            if *tag != probe.hash {
                continue;
            }
            let Some(slot) = slot else {
                continue;
            };
            if slot.epoch == epoch && slot.matches(probe, args) {
                return Some(slot);
            }
        }
        None
    }

    fn resize(&mut self, len: usize) {
        let old = std::mem::take(&mut self.slots);
        self.slots = (0..len).map(|_| None).collect();
        self.tags = vec![0; len];
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
                Some(s) => s.same_key(&slot) || clock::expired(s.deadline),
            })
            .unwrap_or_else(|| {
                self.next_victim = (self.next_victim + 1) % WAYS;
                self.next_victim
            });
        self.tags[start + index] = slot.hash;
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

/// One call's key as the front table compares it: a hash, the zero-padded first bytes and the
/// length. Keys longer than [`HEAD`] are also compared in full.
///
/// Four kinds, which never match each other (their `len`s differ): encoded arguments, one
/// integer (by its bits, `len` = [`INT`]), two or three integers (`len` = [`INT`] minus
/// their count) and one text (unescaped, `len` tagged with [`RAW`]).
#[derive(Clone, Copy)]
pub(crate) struct Probe {
    pub(crate) hash: u64,
    head: Head,
    len: usize,
}

/// A key's first [`HEAD`] bytes as little-endian words. Kept as words, not bytes, so that a
/// probe built in registers and compared word by word never reads back memory in widths it
/// was not written in (a byte array was copied and compared with 16-byte loads that spanned
/// two 8-byte stores, which the processor cannot forward: a stall on every hit).
type Head = [u64; HEAD / 8];

/// The words of a zero-padded head.
#[inline]
fn words_of(bytes: [u8; HEAD]) -> Head {
    let mut head = [0u64; HEAD / 8];
    for (word, chunk) in head.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        *word = u64::from_le_bytes(eight);
    }
    head
}

/// Whether two heads are equal, without the branches (or the wide loads the compiler merges
/// an `==` of arrays into) of a word-by-word compare.
#[inline]
fn same_head(a: &Head, b: &Head) -> bool {
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2])) == 0
}

/// The `len` of an integer probe: no text has it.
const INT: usize = usize::MAX;
/// Tags the `len` of a raw-text probe (texts are far shorter than 2^63 bytes).
const RAW: usize = 1 << (usize::BITS - 1);

impl Probe {
    /// The probe of encoded arguments.
    #[inline]
    pub(crate) fn of(args: &KeyBuf) -> Self {
        let (head, len) = args.head();
        Probe::build(head, len, args.as_str())
    }

    /// The probe of a function keyed by one integer, built from its bits (no text).
    #[inline]
    pub(crate) fn of_int(bits: u64) -> Self {
        let head = [bits, 0, 0];
        let h = (bits ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        Probe {
            hash: (h ^ (h >> 29) ^ (h >> 47)) | 1 << 63,
            head,
            len: INT,
        }
    }

    /// The probe of a function keyed by two or three integers (`words[..count]`).
    #[inline]
    pub(crate) fn of_ints(words: [u64; 3], count: usize) -> Self {
        let len = INT - count;
        Probe {
            hash: crate::hash::of_words(len as u64, &words[..count]) | 1 << 63,
            head: words,
            len,
        }
    }

    /// The probe of a function keyed by one text, built from the text itself: the escaped
    /// encoding is written only on a miss.
    #[inline]
    pub(crate) fn of_raw(text: &str) -> Self {
        let (head, len) = crate::key::head_of(text);
        let mut probe = Probe::build(head, len, text);
        probe.len |= RAW;
        probe
    }

    /// The probe of encoded arguments given as text.
    pub(crate) fn of_text(args: &str) -> Self {
        let (head, len) = crate::key::head_of(args);
        Probe::build(head, len, args)
    }

    /// Hands `look` the probe a call makes for the key with the encoded arguments `args`
    /// when its call site probes as `kind`, and the text it compares slots with (see
    /// `CachedFn::probe_key`); `None` when `args` cannot be the encoding of that kind.
    #[inline]
    pub(crate) fn of_call<R>(
        kind: CallProbe,
        args: &KeyBuf,
        look: impl FnOnce(Probe, &str) -> R,
    ) -> Option<R> {
        Some(match kind {
            CallProbe::Int(bits) => look(Probe::of_int(bits), ""),
            CallProbe::Ints(words, count) => look(Probe::of_ints(words, count as usize), ""),
            CallProbe::Text => {
                let text = crate::key::unescape_text(args.as_str())?;
                look(Probe::of_raw(&text), &text)
            }
            CallProbe::Encoded => look(Probe::of(args), args.as_str()),
        })
    }

    /// What a slot keeps of a key beyond its head, for a slot filled by a call with these
    /// encoded arguments: the whole text when it is longer than the head (unescaped for a
    /// raw-text probe, which compares the caller's text), nothing otherwise.
    fn long_of(&self, args: &str) -> Option<Box<str>> {
        if self.len >= INT - 3 || self.len & !RAW <= HEAD {
            return None;
        }
        if self.len & RAW == 0 {
            return Some(args.into());
        }
        crate::key::unescape_text(args).map(|text| text.into())
    }

    #[inline]
    fn build(head: [u8; HEAD], len: usize, full: &str) -> Self {
        // Keys within the head are hashed from it (whole words); longer ones word by word.
        let bytes = if len <= HEAD {
            &head[..len.div_ceil(8) * 8]
        } else {
            full.as_bytes()
        };
        Probe {
            // Mixed down by the hasher (buckets use the low bits); never 0, the empty tag.
            hash: crate::hash::of_bytes(len as u64, bytes) | 1 << 63,
            head: words_of(head),
            len,
        }
    }
}

/// The probe hashes front tables may file the key with these encoded arguments under: the
/// text's; for a key that reads as one integer, the integer's (see [`Probe::of_int`]); for
/// two or three integers joined by `:`, theirs ([`Probe::of_ints`]); for a key that is one
/// escaped text, the text's (see [`Probe::of_raw`]).
pub(crate) fn probe_hashes(args: &str) -> [Option<u64>; 4] {
    let mut words = [0u64; 3];
    let mut count = 0;
    for part in args.split(':') {
        match (words.get_mut(count), int_bits(part)) {
            (Some(word), Some(bits)) => *word = bits,
            _ => {
                count = 0;
                break;
            }
        }
        count += 1;
    }
    [
        Some(Probe::of_text(args).hash),
        int_bits(args).map(|bits| Probe::of_int(bits).hash),
        (count >= 2).then(|| Probe::of_ints(words, count).hash),
        crate::key::unescape_text(args).map(|text| Probe::of_raw(&text).hash),
    ]
}

/// The bits an integer key part's shortcut has, if `part` is one (see `KeyPart::shortcut`).
fn int_bits(part: &str) -> Option<u64> {
    part.parse::<u64>()
        .ok()
        .or_else(|| part.parse::<i64>().ok().map(|n| n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multiplier of `hash::of_bytes`, to build a collision on purpose.
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn step(state: u64, word: u64) -> u64 {
        (state.rotate_left(5) ^ word).wrapping_mul(SEED)
    }

    /// Two different ASCII texts of 40 bytes, equal in their first 24, whose raw-text probes
    /// have the same hash, head and length: only the whole-text compare tells them apart.
    fn colliding_texts() -> (String, String) {
        let prefix = [b'p'; 24];
        let mut state = 40u64;
        for word in prefix.chunks_exact(8) {
            state = step(state, u64::from_le_bytes(word.try_into().unwrap()));
        }
        let (a1, a2) = (*b"aaaaaaaa", *b"bbbbbbbb");
        let last = step(state, u64::from_le_bytes(a1)).rotate_left(5) ^ u64::from_le_bytes(a2);
        let text = |w1: [u8; 8], w2: [u8; 8]| {
            let mut bytes = prefix.to_vec();
            bytes.extend(w1);
            bytes.extend(w2);
            String::from_utf8(bytes).unwrap()
        };
        for i in 0u64.. {
            // Printable words: every byte in 0x20..0x60.
            let b1 = (0..8).fold(0u64, |w, k| w | ((i >> (6 * k)) & 63 | 32) << (8 * k));
            let b2 = step(state, b1).rotate_left(5) ^ last;
            if b1 != u64::from_le_bytes(a1) && b2.to_le_bytes().iter().all(u8::is_ascii) {
                return (text(a1, a2), text(b1.to_le_bytes(), b2.to_le_bytes()));
            }
        }
        unreachable!()
    }

    #[test]
    fn texts_whose_probes_collide_are_told_apart() {
        let (a, b) = colliding_texts();
        let (pa, pb) = (Probe::of_raw(&a), Probe::of_raw(&b));
        assert_ne!(a, b);
        assert_eq!((pa.hash, pa.head, pa.len), (pb.hash, pb.head, pb.len));
        let counters: &'static Counters = Box::leak(Box::default());
        let front = Front::<u64>::new();
        let fill = Fill {
            value: Arc::new(7),
            deadline: u64::MAX,
            delta_beta: 0,
            epoch: 0,
        };
        front.put(&pa, &crate::key::encode(a.as_str()), fill, counters, 100);
        assert!(matches!(front.get(&pa, &a, 0), Lookup::Hit(7)));
        assert!(matches!(front.get(&pb, &b, 0), Lookup::Miss));
    }

    #[test]
    fn holds_fresh_answers_as_get_does_and_counts_no_hit() {
        let (a, b) = colliding_texts();
        let (pa, pb) = (Probe::of_raw(&a), Probe::of_raw(&b));
        let counters: &'static Counters = Box::leak(Box::default());
        let front = Front::<u64>::new();
        let holds =
            |probe: &Probe, text: &str, epoch| front.fresh(probe, text, epoch, false).is_some();
        assert!(!holds(&pa, &a, 0), "an empty table");
        let fill = |deadline| Fill {
            value: Arc::new(7),
            deadline,
            delta_beta: 0,
            epoch: 0,
        };
        front.put(
            &pa,
            &crate::key::encode(a.as_str()),
            fill(u64::MAX),
            counters,
            100,
        );
        assert!(holds(&pa, &a, 0));
        assert!(!holds(&pb, &b, 0), "same probe, another text");
        assert!(!holds(&pa, &a, 1), "filled under an older epoch");
        assert_eq!(counters.snapshot().l1_hits, 0, "nothing counted");
        let int = Probe::of_int(5);
        front.put(&int, "5", fill(clock::now()), counters, 100);
        assert!(!holds(&int, "", 0), "past its deadline");
        assert!(matches!(front.get(&int, "", 0), Lookup::Miss));
    }

    #[test]
    fn a_keys_call_probe_is_the_probe_its_call_makes() {
        use crate::key::{CallProbe, KeyPart};
        fn check<T: KeyPart + ?Sized>(value: &T, call: Probe, call_text: &str) {
            let mut args = KeyBuf::new();
            value.encode_key(&mut args);
            let of_call = |plain| {
                let kind = CallProbe::of(value.shortcut(), plain);
                Probe::of_call(kind, &args, |probe, text| (probe, text.to_owned()))
                    .expect("a probe")
            };
            let (probe, text) = of_call(true);
            assert_eq!(
                (probe.hash, probe.head, probe.len),
                (call.hash, call.head, call.len)
            );
            assert_eq!(text, call_text);
            // A call site that is not plain probes the encoded key.
            let (probe, text) = of_call(false);
            let encoded = Probe::of(&args);
            assert_eq!(
                (probe.hash, probe.head, probe.len),
                (encoded.hash, encoded.head, encoded.len)
            );
            assert_eq!(text, args.as_str());
        }
        check(&42u64, Probe::of_int(42), "");
        check(&-7i32, Probe::of_int(-7i64 as u64), "");
        check(&(1u64, 2u32), Probe::of_ints([1, 2, 0], 2), "");
        check(
            &(1u8, -2i64, 3u16),
            Probe::of_ints([1, -2i64 as u64, 3], 3),
            "",
        );
        for text in ["a", "https://example.com/a:b,c[d]~e+f\\g/long-enough"] {
            check(text, Probe::of_raw(text), text);
        }
        let mut encoded = KeyBuf::new();
        (1u64, "x").encode_key(&mut encoded);
        check(&(1u64, "x"), Probe::of(&encoded), encoded.as_str());
    }

    /// Calls with `keys` (probe, raw text, encoded text) in rounds, filling the table on each
    /// miss as a call would, until it has grown to its largest; returns how many then miss.
    fn misses_after_warming(keys: &[(Probe, String, String)]) -> usize {
        let counters: &'static Counters = Box::leak(Box::default());
        let front = Front::<usize>::new();
        let hit = |(i, (probe, raw, _)): (usize, &(Probe, String, String))| matches!(front.get(probe, raw, 0), Lookup::Hit(v) if v == i);
        for _ in 0..200 {
            for (i, key) in keys.iter().enumerate() {
                if !hit((i, key)) {
                    let fill = Fill {
                        value: Arc::new(i),
                        deadline: u64::MAX,
                        delta_beta: 0,
                        epoch: 0,
                    };
                    front.put(&key.0, &key.2, fill, counters, 10_000);
                }
            }
        }
        keys.iter().enumerate().filter(|&key| !hit(key)).count()
    }

    #[test]
    fn a_thousand_hot_keys_all_stay_in_the_table() {
        let ints: Vec<_> = (0..1000u64)
            .map(|n| (Probe::of_int(n), String::new(), crate::key::encode(&n)))
            .collect();
        let pairs: Vec<_> = (0..1000u64)
            .map(|n| {
                let encoded = crate::key::encode(&(n, 3u32));
                (Probe::of_ints([n, 3, 0], 2), String::new(), encoded)
            })
            .collect();
        let urls: Vec<_> = (0..1000u64)
            .map(|n| {
                let url = format!("https://example.com/notes/{n:06}");
                (
                    Probe::of_raw(&url),
                    url.clone(),
                    crate::key::encode(url.as_str()),
                )
            })
            .collect();
        assert_eq!(misses_after_warming(&ints), 0, "integers");
        assert_eq!(misses_after_warming(&pairs), 0, "pairs");
        assert_eq!(misses_after_warming(&urls), 0, "texts");
    }

    #[test]
    fn an_escaped_key_maps_back_to_the_probes_of_its_shortcuts() {
        for text in ["https://example.com/a:b,c[d]~e+f\\g/long-enough", "x", ""] {
            let encoded = crate::key::encode(text);
            assert!(probe_hashes(&encoded).contains(&Some(Probe::of_raw(text).hash)));
        }
        for n in [0i64, 42, -7, i64::MIN] {
            let encoded = crate::key::encode(&n);
            assert!(probe_hashes(&encoded).contains(&Some(Probe::of_int(n as u64).hash)));
            let pair = crate::key::encode(&(n, 3u32));
            let words = [n as u64, 3, 0];
            assert!(probe_hashes(&pair).contains(&Some(Probe::of_ints(words, 2).hash)));
            let triple = crate::key::encode(&(1u8, n, u64::MAX));
            let words = [1, n as u64, u64::MAX];
            assert!(probe_hashes(&triple).contains(&Some(Probe::of_ints(words, 3).hash)));
        }
    }
}
