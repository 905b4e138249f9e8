//! L1: a moka cache of typed values, one per `#[cached]` function.

use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::clock;

/// A value in L1 with what the read path needs to know about it.
#[derive(Clone)]
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    /// Monotonic deadline ([`clock::now`] nanoseconds); `u64::MAX` = never.
    pub(crate) deadline: u64,
}

/// Tells moka to drop each entry at its own deadline (entries backfilled from L2 keep only
/// their remaining lifetime).
struct ByDeadline;

impl<V> Expiry<Box<str>, Entry<V>> for ByDeadline {
    fn expire_after_create(&self, _: &Box<str>, entry: &Entry<V>, _: Instant) -> Option<Duration> {
        clock::remaining(entry.deadline)
    }

    fn expire_after_update(
        &self,
        _: &Box<str>,
        entry: &Entry<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        clock::remaining(entry.deadline)
    }
}

/// The L1 store of one function.
pub(crate) struct LocalStore<V> {
    cache: Cache<Box<str>, Entry<V>>,
}

impl<V: Clone + Send + Sync + 'static> LocalStore<V> {
    pub(crate) fn new(capacity: u64) -> Self {
        LocalStore {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByDeadline)
                .build(),
        }
    }

    /// The live entry for `args`, if any.
    pub(crate) fn get(&self, args: &str) -> Option<Entry<V>> {
        self.cache
            .get(args)
            .filter(|entry| !clock::expired(entry.deadline))
    }

    pub(crate) fn contains(&self, args: &str) -> bool {
        self.get(args).is_some()
    }

    pub(crate) fn insert(&self, args: &str, entry: Entry<V>) {
        self.cache.insert(args.into(), entry);
    }

    pub(crate) fn remove(&self, args: &str) {
        self.cache.invalidate(args);
    }

    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }
}
