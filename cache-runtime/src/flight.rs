//! In-process single-flight: one caller per key computes, the others wait for it.
//!
//! A caller that finds no entry [`join`](Flights::join)s the flight for its key. The first
//! becomes the [`Leader`]; later callers get a [`Waiter`]. When the leader is dropped — after
//! storing the value, after a body that returned an uncacheable `Err`/`None`, after a panic,
//! or because its async caller was cancelled — every waiter wakes up and looks again. A waiter
//! that still finds nothing joins again, and one of them leads. So no key is ever poisoned
//! and no waiter is left stuck. Flights of different keys never block each other (the map is
//! sharded and its locks are held only to insert or remove).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
    shards: [Mutex<HashMap<Box<str>, Arc<Flight>>>; SHARDS],
}

/// What [`Flights::join`] hands out.
pub(crate) enum Joined<'a> {
    Leader(Leader<'a>),
    Waiter(Waiter),
}

/// The caller that computes; dropping it releases the waiters.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    shard: usize,
    args: Box<str>,
    flight: Arc<Flight>,
}

/// A caller waiting for the leader.
pub(crate) struct Waiter {
    flight: Arc<Flight>,
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    pub(crate) fn join(&self, args: &str, hash: u64) -> Joined<'_> {
        let shard = (hash as usize >> 7) % SHARDS;
        let mut map = lock(&self.shards[shard]);
        if let Some(flight) = map.get(args) {
            return Joined::Waiter(Waiter {
                flight: flight.clone(),
            });
        }
        let flight = Arc::new(Flight::default());
        map.insert(args.into(), flight.clone());
        Joined::Leader(Leader {
            flights: self,
            shard,
            args: args.into(),
            flight,
        })
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        lock(&self.flights.shards[self.shard]).remove(&self.args);
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
