//! L1: a moka cache of typed values, one per `#[cached]` function.

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

/// A value in L1 with what the read path needs to know about it.
#[derive(Clone)]
pub(crate) struct Entry<V> {
    /// The one copy of the value, shared with the front-table slots filled from this entry:
    /// cloning the entry (moka's `get` does) or filling a slot counts a reference, and only
    /// an answer handed to a caller copies `V` (see [`Entry::into_value`]).
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

impl<V> Entry<V> {
    pub(crate) fn new(value: V, times: &Times, born: u64) -> Self {
        Entry {
            value: Arc::new(value),
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

    /// The value, for a caller: moved out if nothing else holds it, else copied.
    pub(crate) fn into_value(self) -> V
    where
        V: Clone,
    {
        Arc::unwrap_or_clone(self.value)
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

impl<V> Expiry<Box<str>, Entry<V>> for ByDeadline {
    fn expire_after_create(&self, _: &Box<str>, entry: &Entry<V>, _: Instant) -> Option<Duration> {
        clock::remaining(entry.kept_until())
    }

    fn expire_after_update(
        &self,
        _: &Box<str>,
        entry: &Entry<V>,
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
pub(crate) type SizeFn<V> = fn(&V) -> usize;

/// How L1 is bounded.
pub(crate) enum Bound<V> {
    /// At most this many entries (`capacity`).
    Entries(u64),
    /// At most this many bytes of encoded values and keys (`max_bytes`), each value sized
    /// by the function.
    Bytes(u64, SizeFn<V>),
}

/// The L1 store of one function.
pub(crate) struct LocalStore<V> {
    cache: Cache<Box<str>, Entry<V>, FastHash>,
    /// Sizes values that come without their encoded length, under `max_bytes`.
    size: Option<SizeFn<V>>,
}

impl<V: Clone + Send + Sync + 'static> LocalStore<V> {
    pub(crate) fn new(bound: Bound<V>, idle: Option<Duration>, policy: Policy) -> Self {
        let (builder, size) = match bound {
            Bound::Entries(capacity) => (Cache::builder().max_capacity(capacity), None),
            Bound::Bytes(max_bytes, size) => (
                Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|_, entry: &Entry<V>| entry.weight),
                Some(size),
            ),
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
        LocalStore {
            cache: builder.build_with_hasher(FastHash),
            size,
        }
    }

    /// The entry for `args` if it may still be served (fresh, or stale within its window).
    pub(crate) fn get(&self, args: &str) -> Option<Entry<V>> {
        self.cache
            .get(args)
            .filter(|entry| !clock::expired(entry.keep_until))
    }

    /// The entry for `args` while L1 keeps it: servable, or past that but still able to stand
    /// in for a failed body.
    pub(crate) fn get_kept(&self, args: &str) -> Option<Entry<V>> {
        self.cache
            .get(args)
            .filter(|entry| !clock::expired(entry.kept_until()))
    }

    /// Whether a fresh entry is held. Without a stale window (`kept_stale` false) an entry's
    /// `keep_until`, where moka expires it, is its deadline: `contains_key` answers alone,
    /// without copying the value out and without recording a read in moka's popularity log.
    /// moka does not see the test clock, so once it was moved the slower check answers.
    pub(crate) fn holds_fresh(&self, args: &str, kept_stale: bool) -> bool {
        if kept_stale || clock::offset() != 0 {
            self.get(args).is_some_and(|e| !clock::expired(e.deadline))
        } else {
            self.cache.contains_key(args)
        }
    }

    /// Whether L1 is at its bound (as moka last counted: cheap, and approximate while moka
    /// has writes pending).
    pub(crate) fn is_full(&self) -> bool {
        self.cache
            .policy()
            .max_capacity()
            .is_some_and(|bound| self.cache.weighted_size() >= bound)
    }

    pub(crate) fn insert(&self, args: &str, mut entry: Entry<V>) {
        if let (Some(size), 0) = (self.size, entry.weight) {
            entry.weight = weight(size(&entry.value), args);
        }
        self.cache.insert(args.into(), entry);
    }

    pub(crate) fn remove(&self, args: &str) {
        self.cache.invalidate(args);
    }

    /// Removes the entry for `args` if it was born no later than `at` (a newer one stays).
    pub(crate) fn remove_born_by(&self, args: &str, at: u64) {
        self.cache
            .entry(Box::from(args))
            .and_compute_with(|entry| match entry {
                Some(entry) if entry.value().born <= at => moka::ops::compute::Op::Remove,
                _ => moka::ops::compute::Op::Nop,
            });
    }

    /// Entries held, once moka has applied its pending work (a slow call: for stats pages).
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// What the entries weigh in all (see [`Bound::Bytes`]; under a `capacity` bound, each
    /// weighs 1), once moka has applied its pending work.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Drops every entry now (moka's `invalidate_all` alone is lazy: each later access would
    /// pay to filter the invalidated entries).
    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }
}
