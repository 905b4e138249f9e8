//! The fleet lock of a batch call (`#[cached(batch, lock)]`), per element: each element the
//! shared store did not hold is locked as a one-key call locks it (see [`crate::lock`]), one
//! request per element. The call computes the elements it locked, in its one body call, and
//! releases their locks; only then does it wait for the elements other processes hold,
//! polling their values with one `GetMany` per pause and trying their locks again, so that no
//! process waits while it holds a lock. An element whose owner took two leases is computed
//! anyway; a store that fails lets the call compute (fail-open).

use std::time::Duration;

use super::{CachedFn, Element, Shared};
use crate::flight::Leader;
use crate::io::Io;
use crate::layered::typed::typed;
use crate::lock::{Owned, Waiting};
use crate::store::{Budget, Reply};

/// An element whose lock another process holds, with this call's attempt at it.
pub(super) type Busy<'a, K> = (Element<'a, K>, (Leader<'static>, Waiting));

/// What locking the led elements ended with.
pub(super) struct Locked<'a, K> {
    /// To compute now: locked by this call, or to compute without the lock.
    pub(super) compute: Vec<(Element<'a, K>, Leader<'static>)>,
    /// Held by other processes.
    pub(super) busy: Vec<Busy<'a, K>>,
    /// The locks this call took.
    pub(super) held: Vec<Owned>,
}

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// Locks each led element that is not settled yet; one held elsewhere is served stale if
    /// it has a stale value, or else waited for.
    pub(super) async fn lock_led<'a, I: Io, K: Clone>(
        &'static self,
        io: &I,
        shared: &Shared,
        led: Vec<(Element<'a, K>, Leader<'static>)>,
        lease: Duration,
        budget: &Budget,
        found: &mut Vec<(K, V)>,
    ) -> Locked<'a, K> {
        let mut locked = Locked {
            compute: Vec::with_capacity(led.len()),
            busy: Vec::new(),
            held: Vec::new(),
        };
        for (mut element, leader) in led {
            if element.lock_settled {
                locked.compute.push((element, leader));
                continue;
            }
            element.lock_settled = true;
            let key = self
                .remote_name(&shared.installed, element.call.args)
                .to_string();
            let waiting = Waiting::new(&key, lease);
            match self
                .send(io, &shared.remote, waiting.acquire(), budget)
                .await
            {
                Some(Reply::Locked(true)) => {
                    locked.held.push(waiting.owned());
                    locked.compute.push((element, leader));
                }
                Some(Reply::Locked(false)) => match element.servable.take() {
                    // Another process refreshes it: its stale value meanwhile.
                    Some(value) => found.push((element.id.clone(), typed(self.count_hit(value)))),
                    None => locked.busy.push((element, (leader, waiting))),
                },
                // The store failed: compute without the lock.
                _ => locked.compute.push((element, leader)),
            }
        }
        locked
    }

    /// Releases the locks this call took.
    pub(super) async fn unlock_all<I: Io>(
        &self,
        io: &I,
        shared: &Shared,
        held: Vec<Owned>,
        budget: &Budget,
    ) {
        for owned in &held {
            self.send(io, &shared.remote, owned.release(), budget).await;
        }
    }

    /// Waits for the elements other processes hold: their values found in the store go to
    /// `found`; the ones whose lock this call takes over, or whose owner took two leases,
    /// are returned to be computed (their locks in `held`).
    pub(super) async fn await_owners<'a, I: Io, K: Clone>(
        &'static self,
        io: &I,
        shared: &Shared,
        mut busy: Vec<Busy<'a, K>>,
        budget: &Budget,
        found: &mut Vec<(K, V)>,
        held: &mut Vec<Owned>,
    ) -> Vec<Element<'a, K>> {
        let mut settled = Vec::new();
        while !busy.is_empty() {
            let Some(pause) = busy.iter_mut().map(|(_, (_, w))| w.next_pause()).min() else {
                break;
            };
            let Some(pause) = pause else {
                tracing::warn!(
                    name = %self.settings.name,
                    elements = busy.len(),
                    "lock owners did not finish in time; computing"
                );
                settled.extend(busy.drain(..).map(|(element, _)| element));
                break;
            };
            io.sleep(pause).await;
            for (element, _) in &mut busy {
                element.ask_first = true;
            }
            let still = self.read_many(io, shared, busy, found, budget).await;
            busy = Vec::with_capacity(still.len());
            for (mut element, (leader, waiting)) in still {
                match self
                    .send(io, &shared.remote, waiting.acquire(), budget)
                    .await
                {
                    Some(Reply::Locked(false)) => busy.push((element, (leader, waiting))),
                    acquired => {
                        if let Some(Reply::Locked(true)) = acquired {
                            held.push(waiting.owned());
                        }
                        // Just asked of the store: computed next round, without asking again.
                        element.ask_first = false;
                        settled.push(element);
                    }
                }
            }
        }
        settled
    }
}
