//! L1: a moka cache per `#[cached]` function.
//!
//! The moka cache holds values of an erased type ([`AnyValue`]), so that its code (moka's,
//! crossbeam's, and this module's) is compiled once, in this crate, rather than once per value
//! type in every crate that uses `#[cached]`: it was more than a third of what 50 cached
//! functions made the compiler generate. A value goes in as the `Arc` it already is, and the
//! layers hand it to a caller through one type check (see `layered::typed`).

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry;

use crate::clock;
use crate::freshness::{self, Times, Verdict};
use crate::hash::FastHash;

/// How a full L1 chooses its victims (`#[cached(policy = "..")]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// moka's TinyLFU (the default): a new entry is admitted into a full cache only if it has
    /// been asked for more often than the entry it would evict, which keeps one-off keys from
    /// flushing popular ones — and turns away new keys that are not popular yet.
    #[default]
    TinyLfu,
    /// Least recently used: every new entry is admitted and the least recently used one goes.
    Lru,
}

/// A value of any type, as the moka cache (and every layer past the front table) holds it.
pub(crate) type AnyValue = dyn Any + Send + Sync;

/// A value in L1 with what the read path needs to know about it.
pub(crate) struct Entry<V: ?Sized> {
    /// The one copy of the value, shared with the front-table slots filled from this entry:
    /// cloning the entry (moka's `get` does) or filling a slot counts a reference, and only
    /// an answer handed to a caller copies `V`.
    pub(crate) value: Arc<V>,
    /// Monotonic deadline of freshness ([`clock::now`] nanoseconds); `u64::MAX` = never.
    pub(crate) deadline: u64,
    /// Kept (and servable while refreshing) until then: the deadline plus the stale window.
    pub(crate) keep_until: u64,
    /// Δ·β of early refresh, in nanoseconds (0 = off).
    pub(crate) delta_beta: u64,
    /// Kept until then to stand in for a failed body (`stale_if_error`).
    pub(crate) fallback_until: u64,
    /// When the call that read or computed the value began ([`clock::now`]): see
    /// [`crate::coherence`].
    pub(crate) born: u64,
    /// What the entry weighs in an L1 bounded by `max_bytes` (its encoded length plus its
    /// key's); 0 until known.
    weight: u32,
}

impl<V: ?Sized> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Entry {
            value: Arc::clone(&self.value),
            ..*self
        }
    }
}

impl<V: ?Sized> Entry<V> {
    pub(crate) fn new(value: Arc<V>, times: &Times, born: u64) -> Self {
        Entry {
            value,
            deadline: times.deadline,
            keep_until: times.keep_until,
            delta_beta: times.delta_beta,
            fallback_until: times.fallback_until,
            born,
            weight: 0,
        }
    }

    /// The entry, known to be `encoded_len` bytes long in the shared store (read from there):
    /// an L1 bounded by `max_bytes` need not encode it again to weigh it.
    pub(crate) fn encoded(mut self, encoded_len: usize, args: &str) -> Self {
        self.weight = weight(encoded_len, args);
        self
    }

    /// The value, shared (not copied).
    pub(crate) fn into_value(self) -> Arc<V> {
        self.value
    }

    /// When moka may drop it: once it can neither be served nor stand in for a failure.
    fn kept_until(&self) -> u64 {
        self.keep_until.max(self.fallback_until)
    }

    pub(crate) fn verdict(&self) -> Verdict {
        freshness::verdict(self.deadline, self.keep_until, self.delta_beta)
    }
}

/// Tells moka to drop each entry when it may no longer be served (entries backfilled from L2
/// keep only their remaining lifetime).
struct ByDeadline;

impl Expiry<Box<str>, Entry<AnyValue>> for ByDeadline {
    fn expire_after_create(
        &self,
        _: &Box<str>,
        entry: &Entry<AnyValue>,
        _: Instant,
    ) -> Option<Duration> {
        clock::remaining(entry.kept_until())
    }

    fn expire_after_update(
        &self,
        _: &Box<str>,
        entry: &Entry<AnyValue>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        clock::remaining(entry.kept_until())
    }
}

/// What an entry weighs: its encoded length plus its key's, clamped to moka's `u32`.
fn weight(encoded_len: usize, args: &str) -> u32 {
    u32::try_from(encoded_len.saturating_add(args.len())).unwrap_or(u32::MAX)
}

/// The encoded length of a value (see [`crate::codec::encoded_len`]).
pub(crate) type SizeFn = Arc<dyn Fn(&AnyValue) -> usize + Send + Sync>;

/// How L1 is bounded.
pub(crate) enum Bound {
    /// At most this many entries (`capacity`).
    Entries(u64),
    /// At most this many bytes of encoded values and keys (`max_bytes`), each value sized
    /// by the function.
    Bytes(u64, SizeFn),
}

/// The L1 store of one function: an [`ErasedStore`] and how its values are weighed.
pub(crate) struct LocalStore {
    erased: ErasedStore,
    /// Sizes values that come without their encoded length, under `max_bytes`.
    size: Option<SizeFn>,
}

impl LocalStore {
    pub(crate) fn new(bound: Bound, idle: Option<Duration>, policy: Policy) -> Self {
        let (max, size) = match bound {
            Bound::Entries(capacity) => (Max::Entries(capacity), None),
            Bound::Bytes(max_bytes, size) => (Max::Bytes(max_bytes), Some(size)),
        };
        LocalStore {
            erased: ErasedStore::new(max, idle, policy),
            size,
        }
    }

    /// The entry for `args` if it may still be served (fresh, or stale within its window).
    #[inline]
    pub(crate) fn get(&self, args: &str) -> Option<Entry<AnyValue>> {
        self.erased.get(args)
    }

    /// The entry for `args` while L1 keeps it: servable, or past that but still able to stand
    /// in for a failed body.
    pub(crate) fn get_kept(&self, args: &str) -> Option<Entry<AnyValue>> {
        self.erased.get_kept(args)
    }

    /// The fresh entry held for `args`, if any. With `read` false and no stale window
    /// (`kept_stale` false) an entry's `keep_until`, where moka expires it, is its deadline: an
    /// absent key is told by `contains_key` alone, without recording a read in moka's
    /// popularity log (only a held one is read). With `read`, the key is looked up as a call
    /// does, and the read is recorded either way. moka does not see the test clock, so once
    /// it was moved every key is read.
    #[inline]
    pub(crate) fn fresh(
        &self,
        args: &str,
        kept_stale: bool,
        read: bool,
    ) -> Option<Entry<AnyValue>> {
        self.erased.fresh(args, kept_stale || read)
    }

    /// Whether L1 is at its bound (as moka last counted: cheap, and approximate while moka
    /// has writes pending).
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.erased.is_full()
    }

    #[inline]
    pub(crate) fn insert(&self, args: &str, mut entry: Entry<AnyValue>) {
        if let (Some(size), 0) = (&self.size, entry.weight) {
            entry.weight = weight(size(&*entry.value), args);
        }
        self.erased.insert(args, entry);
    }

    #[inline]
    pub(crate) fn remove(&self, args: &str) {
        self.erased.remove(args);
    }

    /// Removes the entry for `args` if it was born no later than `at` (a newer one stays).
    #[inline]
    pub(crate) fn remove_born_by(&self, args: &str, at: u64) {
        self.erased.remove_born_by(args, at);
    }

    /// Entries held, once moka has applied its pending work (a slow call: for stats pages).
    pub(crate) fn entry_count(&self) -> u64 {
        self.erased.entry_count()
    }

    /// What the entries weigh in all (see [`Bound::Bytes`]; under a `capacity` bound, each
    /// weighs 1), once moka has applied its pending work.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.erased.weighted_size()
    }

    /// Drops every entry now (moka's `invalidate_all` alone is lazy: each later access would
    /// pay to filter the invalidated entries).
    pub(crate) fn clear(&self) {
        self.erased.clear();
    }
}

/// The bound of an [`ErasedStore`]: entries, or the weights entries carry.
enum Max {
    Entries(u64),
    Bytes(u64),
}

/// The moka cache of one function, over values of any type (see the module docs). None of
/// its methods is generic, so each is compiled once, here.
struct ErasedStore {
    cache: Cache<Box<str>, Entry<AnyValue>, FastHash>,
}

impl ErasedStore {
    fn new(max: Max, idle: Option<Duration>, policy: Policy) -> Self {
        let builder = match max {
            Max::Entries(capacity) => Cache::builder().max_capacity(capacity),
            Max::Bytes(max_bytes) => Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, entry: &Entry<AnyValue>| entry.weight),
        };
        let builder = builder
            .expire_after(ByDeadline)
            .eviction_policy(match policy {
                Policy::TinyLfu => EvictionPolicy::tiny_lfu(),
                Policy::Lru => EvictionPolicy::lru(),
            });
        let builder = match idle {
            Some(idle) => builder.time_to_idle(idle),
            None => builder,
        };
        ErasedStore {
            cache: builder.build_with_hasher(FastHash),
        }
    }

    fn get(&self, args: &str) -> Option<Entry<AnyValue>> {
        self.cache
            .get(args)
            .filter(|entry| !clock::expired(entry.keep_until))
    }

    fn get_kept(&self, args: &str) -> Option<Entry<AnyValue>> {
        self.cache
            .get(args)
            .filter(|entry| !clock::expired(entry.kept_until()))
    }

    /// [`LocalStore::fresh`]; `read`: never answer from `contains_key` alone.
    fn fresh(&self, args: &str, read: bool) -> Option<Entry<AnyValue>> {
        if !read && clock::offset() == 0 && !self.cache.contains_key(args) {
            return None;
        }
        self.get(args).filter(|e| !clock::expired(e.deadline))
    }

    fn is_full(&self) -> bool {
        self.cache
            .policy()
            .max_capacity()
            .is_some_and(|bound| self.cache.weighted_size() >= bound)
    }

    fn insert(&self, args: &str, entry: Entry<AnyValue>) {
        self.cache.insert(args.into(), entry);
    }

    fn remove(&self, args: &str) {
        self.cache.invalidate(args);
    }

    fn remove_born_by(&self, args: &str, at: u64) {
        self.cache
            .entry(Box::from(args))
            .and_compute_with(|entry| match entry {
                Some(entry) if entry.value().born <= at => moka::ops::compute::Op::Remove,
                _ => moka::ops::compute::Op::Nop,
            });
    }

    fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }
}
