//! In-process single-flight: one caller per key computes, the others wait for it.
//!
//! A caller that finds no entry [`join`](Flights::join)s the flight for its key. The first
//! becomes the [`Leader`]; later callers get a [`Waiter`]. When the leader is dropped — after
//! storing the value, after a body that returned an uncacheable `Err`/`None`, after a panic,
//! or because its async caller was cancelled — every waiter wakes up and looks again. A waiter
//! that still finds nothing joins again, and one of them leads. So no key is ever poisoned
//! and no waiter is left stuck. Flights of different keys never block each other (the map is
//! sharded and its locks are held only to insert or remove).

use hashbrown::HashTable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::Notify;

const SHARDS: usize = 16;

#[derive(Default)]
struct Flight {
    done: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
    notify: Notify,
}

/// The flights in progress for one function.
pub(crate) struct Flights {
    /// The flights in progress, found by the probe hash the caller already has.
    shards: [Mutex<HashTable<InFlight>>; SHARDS],
    /// Per shard, how many leaders have landed (counted before their shard's lock is let go).
    landed: [AtomicU64; SHARDS],
}

/// One flight in its shard: the key's probe hash, the key, the flight.
type InFlight = (u64, Arc<str>, Arc<Flight>);

/// What [`Flights::join`] hands out.
pub(crate) enum Joined<'a> {
    Leader(Leader<'a>),
    Waiter(Waiter),
}

/// The caller that computes; dropping it releases the waiters.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    shard: usize,
    hash: u64,
    args: Arc<str>,
    flight: Arc<Flight>,
}

/// A caller waiting for the leader.
pub(crate) struct Waiter {
    flight: Arc<Flight>,
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights {
            shards: std::array::from_fn(|_| Mutex::new(HashTable::new())),
            landed: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn shard(hash: u64) -> usize {
        (hash as usize >> 7) % SHARDS
    }

    /// How many leaders of keys sharing this hash's shard have landed so far. A caller that
    /// reads the same count before looking in L1 and after becoming a leader knows that no
    /// flight for its key ended in between, so L1 cannot have gained the key's value from
    /// one: it need not look again.
    pub(crate) fn landed(&self, hash: u64) -> u64 {
        self.landed[Self::shard(hash)].load(Ordering::Acquire)
    }

    pub(crate) fn join(&self, args: &str, hash: u64) -> Joined<'_> {
        let shard = Self::shard(hash);
        let mut map = lock(&self.shards[shard]);
        if let Some((_, _, flight)) = map.find(hash, |(_, key, _)| **key == *args) {
            return Joined::Waiter(Waiter {
                flight: flight.clone(),
            });
        }
        let flight = Arc::new(Flight::default());
        let args: Arc<str> = args.into();
        map.insert_unique(hash, (hash, args.clone(), flight.clone()), |(hash, ..)| {
            *hash
        });
        Joined::Leader(Leader {
            flights: self,
            shard,
            hash,
            args,
            flight,
        })
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.flights.shards[self.shard]);
        if let Ok(entry) = map.find_entry(self.hash, |(_, key, _)| Arc::ptr_eq(key, &self.args)) {
            entry.remove();
        }
        self.flights.landed[self.shard].fetch_add(1, Ordering::Release);
        // Waiters take their share of the flight only under the shard's lock, held here: when
        // none holds one now, none will, and there is nobody to wake.
        let waited_for = Arc::strong_count(&self.flight) > 1;
        drop(map);
        if !waited_for {
            return;
        }
        let flight = &self.flight;
        flight.done.store(true, Ordering::Release);
        drop(lock(&flight.lock));
        flight.cond.notify_all();
        flight.notify.notify_waiters();
    }
}

impl Waiter {
    /// Blocks the thread until the leader is done.
    pub(crate) fn wait(self) {
        let mut guard = lock(&self.flight.lock);
        while !self.flight.done.load(Ordering::Acquire) {
            guard = match self.flight.cond.wait(guard) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }

    /// Waits, without blocking the thread, until the leader is done.
    pub(crate) async fn wait_async(self) {
        let mut notified = std::pin::pin!(self.flight.notify.notified());
        notified.as_mut().enable();
        if self.flight.done.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

pub(crate) use crate::sync::lock;

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(joined: Joined<'_>) -> Leader<'_> {
        match joined {
            Joined::Leader(leader) => leader,
            Joined::Waiter(_) => panic!("a waiter where a leader was expected"),
        }
    }

    #[test]
    fn a_landing_is_counted_for_its_shard_and_no_other() {
        let flights = Flights::new();
        let (hash, elsewhere) = (5 << 7, 6 << 7);
        let (before, other) = (flights.landed(hash), flights.landed(elsewhere));
        let first = leader(flights.join("k", hash));
        assert_eq!(
            flights.landed(hash),
            before,
            "nothing landed while in flight"
        );
        drop(first);
        assert_ne!(flights.landed(hash), before);
        assert_eq!(flights.landed(elsewhere), other);
        // The key is free again: the next caller leads.
        leader(flights.join("k", hash));
    }

    #[test]
    fn keys_with_one_hash_are_told_apart() {
        let flights = Flights::new();
        let _a = leader(flights.join("a", 42));
        let _b = leader(flights.join("b", 42));
        assert!(matches!(flights.join("a", 42), Joined::Waiter(_)));
    }

    #[test]
    fn a_waiter_wakes_when_its_leader_lands() {
        let flights = Flights::new();
        let first = leader(flights.join("k", 7));
        let Joined::Waiter(waiter) = flights.join("k", 7) else {
            panic!("a second caller of a key in flight waits");
        };
        std::thread::scope(|threads| {
            let waiting = threads.spawn(move || waiter.wait());
            drop(first);
            waiting.join().expect("the waiter woke");
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let first = leader(flights.join("k", 7));
        let Joined::Waiter(waiter) = flights.join("k", 7) else {
            panic!("a second caller of a key in flight waits");
        };
        std::thread::scope(|threads| {
            let waiting = threads.spawn(move || runtime.block_on(waiter.wait_async()));
            drop(first);
            waiting.join().expect("the async waiter woke");
        });
    }
}
