//! Batch functions: `#[cached(batch)] fn users(ids: &[K]) -> HashMap<K, V>`, each element
//! cached on its own under the key of a one-argument call (`users::key_for(&id)`).
//!
//! ```text
//! call_batch(ids)
//!   each id (once): front table, L1, preload scope           fresh hit -> into the answer
//!                                                            stale / picked early -> refresh
//!   each id still missing or to refresh: single flight       another caller leads -> wait
//!                                                            (or its stale value, at once)
//!   the ids this call leads: one GetMany (one MGET)          fresh -> decode, backfill L1
//!   [lock] each of the rest: its fleet lock                  held elsewhere -> later (`fleet`)
//!   the rest: body(ids) once -> L1 insert -> release waiters -> one SetMany (pipelined SETs)
//!   [lock] release the locks taken, then wait for the ids held elsewhere
//!   the ids waited for: L1 again; one whose leader's body did not return it goes round again
//! ```
//!
//! `stale` and `refresh = early` work per element, as for a one-key call: an element past its
//! deadline but inside its stale window (or picked by early refresh) is served at once to
//! every call but the one that leads its refresh, which folds every element it refreshes into
//! its one body call, beside the missing ones, and answers with the new values (an element
//! the body leaves out keeps its stale value in the answer).
//!
//! A call never waits for another while it leads keys of its own (it releases them first),
//! so batches overlapping in any order cannot deadlock. Elements the body did not return are
//! not cached; `misses` counts the elements the body was asked for.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Instant;

mod fleet;

use super::typed::{self, typed};
use super::{Backfill, CachedFn, Call, FrontKey, Remote, Value};
use crate::config::{self, Installed};
use crate::flight::{Joined, Leader, Waiter};
use crate::freshness::Verdict;
use crate::front::{Lookup, Probe};
use crate::io::{self, Blocking, Io, NonBlocking};
use crate::key::{KeyBuf, RemoteName};
use crate::scope::Preloaded;
use crate::stats::Counters;
use crate::store::local::{AnyValue, Entry};
use crate::store::{Budget, Op, Reply, SetEntry};

/// A return type of a batch function: `HashMap<K, V>` (always cached) or
/// `Result<HashMap<K, V>, E>` (only `Ok` is cached; an `Err` is the call's answer).
pub trait BatchOutcome<K, V>: Sized {
    /// An answer made of these elements.
    fn from_elements(elements: Vec<(K, V)>) -> Self;
    /// The elements to cache, or the result itself when nothing is to be (an `Err`).
    fn into_elements(self) -> Result<Vec<(K, V)>, Self>;
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> BatchOutcome<K, V> for HashMap<K, V, S> {
    fn from_elements(elements: Vec<(K, V)>) -> Self {
        elements.into_iter().collect()
    }

    fn into_elements(self) -> Result<Vec<(K, V)>, Self> {
        Ok(self.into_iter().collect())
    }
}

impl<K: Eq + Hash, V, S: BuildHasher + Default, E> BatchOutcome<K, V>
    for Result<HashMap<K, V, S>, E>
{
    fn from_elements(elements: Vec<(K, V)>) -> Self {
        Ok(elements.into_iter().collect())
    }

    fn into_elements(self) -> Result<Vec<(K, V)>, Self> {
        match self {
            Ok(map) => Ok(map.into_iter().collect()),
            Err(error) => Err(Err(error)),
        }
    }
}

/// One distinct id of a batch call and where its key lives.
struct Element<'a, K> {
    id: &'a K,
    call: Call<'a>,
    /// Whether the shared store may hold it (no preload scope found it absent).
    ask_first: bool,
    /// Its stale (or picked for early refresh) value: served unless this call leads the
    /// refresh.
    servable: Option<Value>,
    /// `lock`: the fleet lock was tried (this call holds it, or computes without it).
    lock_settled: bool,
}

/// The shared store of a batch call, and the prefix its keys are named with.
struct Shared {
    installed: Arc<Installed>,
    remote: Remote,
}

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// A sync batch call: answers every id from the layers it can, and runs `body` with the
    /// ids still missing (once, unless another caller's body left out ids this call waited
    /// for). `encode` writes one id's key.
    pub fn call_batch<K, O>(
        &'static self,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        mut body: impl FnMut(Vec<K>) -> O,
    ) -> O
    where
        K: Clone + Eq + Hash,
        O: BatchOutcome<K, V>,
    {
        let run = |missing: Vec<K>| std::future::ready(body(missing));
        io::block_on(self.batch(&Blocking, front, ids, encode, run))
    }

    /// An async batch call (see [`call_batch`](Self::call_batch)).
    pub async fn call_batch_async<K, O, F>(
        &'static self,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        body: impl FnMut(Vec<K>) -> F,
    ) -> O
    where
        K: Clone + Eq + Hash,
        O: BatchOutcome<K, V>,
        F: Future<Output = O>,
    {
        self.batch(&NonBlocking, front, ids, encode, body).await
    }

    async fn batch<I: Io, K, O, F>(
        &'static self,
        io: &I,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        mut body: impl FnMut(Vec<K>) -> F,
    ) -> O
    where
        K: Clone + Eq + Hash,
        O: BatchOutcome<K, V>,
        F: Future<Output = O>,
    {
        self.list();
        let keys: Vec<KeyBuf> = ids.iter().map(&encode).collect();
        let mut found: Vec<(K, V)> = Vec::with_capacity(ids.len());
        let mut pending: Vec<Element<'_, K>> = Vec::new();
        let mut seen = HashSet::with_capacity(ids.len());
        for (id, args) in ids.iter().zip(&keys) {
            if !seen.insert(args.as_str()) {
                continue;
            }
            let probe = Probe::of(args);
            let lookup = match self.front_hit(front, &probe, args.as_str()) {
                Lookup::Hit(value) => {
                    found.push((id.clone(), value));
                    continue;
                }
                lookup => lookup,
            };
            let call = self.call_site(front, args.as_str(), probe, lookup);
            // Past L1 from here (see `coherence`): what is read or computed is this new.
            call.born
                .store(crate::clock::now(), std::sync::atomic::Ordering::Relaxed);
            let mut servable = None;
            if let Some(entry) = self.l1.get(call.args) {
                match judged(&call, &entry) {
                    Verdict::Fresh => {
                        found.push((id.clone(), typed(self.l1_served(&call, entry))));
                        continue;
                    }
                    Verdict::Refresh => servable = Some(entry.into_value()),
                    Verdict::Gone => {}
                }
            }
            let ask_first = match self.preloaded(&call) {
                Preloaded::Served(Backfill::Fresh(value)) => {
                    found.push((id.clone(), typed(value)));
                    continue;
                }
                // The store held what the scope holds: refresh it without asking again.
                Preloaded::Served(Backfill::Servable(value)) => {
                    servable = Some(value);
                    false
                }
                Preloaded::Served(Backfill::Undecodable) | Preloaded::Absent => false,
                Preloaded::Served(Backfill::Expired) | Preloaded::Unknown => true,
            };
            pending.push(Element {
                id,
                call,
                ask_first,
                servable,
                lock_settled: false,
            });
        }
        let shared = if pending.is_empty() {
            None
        } else {
            self.shared()
        };
        let budget = Budget::default();
        // The fleet locks this call holds (see `fleet`).
        let mut held = Vec::new();
        while !pending.is_empty() {
            let mut led: Vec<(Element<'_, K>, Leader<'static>)> = Vec::new();
            let mut waiting: Vec<(Element<'_, K>, Waiter)> = Vec::new();
            for mut element in pending.drain(..) {
                match self
                    .flights
                    .join(element.call.args, element.call.probe.hash)
                {
                    Joined::Leader(leader) => {
                        // Another caller stored it since this call looked (a value picked
                        // for early refresh is still fresh: it is not asked).
                        let stored = match element.servable {
                            None => self.fresh_in_l1(&element.call),
                            Some(_) => None,
                        };
                        match stored {
                            Some(value) => found.push((element.id.clone(), typed(value))),
                            None => led.push((element, leader)),
                        }
                    }
                    // Another caller refreshes it: its stale value, without waiting.
                    Joined::Waiter(waiter) => match element.servable.take() {
                        Some(value) => {
                            found.push((element.id.clone(), typed(self.count_hit(value))))
                        }
                        None => waiting.push((element, waiter)),
                    },
                }
            }
            let mut busy = Vec::new();
            if let Some(shared) = &shared {
                led = self.read_many(io, shared, led, &mut found, &budget).await;
                if let Some(lease) = self.settings.lock {
                    let locked = self
                        .lock_led(io, shared, led, lease, &budget, &mut found)
                        .await;
                    (led, busy) = (locked.compute, locked.busy);
                    if !locked.held.is_empty() {
                        held.extend(locked.held);
                        // What a lock's last owner wrote just before this call took it.
                        led = self.read_many(io, shared, led, &mut found, &budget).await;
                    }
                }
            }
            if !led.is_empty() {
                let asked: Vec<K> = led.iter().map(|(e, _)| e.id.clone()).collect();
                for _ in &asked {
                    Counters::add(&self.counters.misses);
                }
                let started = Instant::now();
                let elements = match body(asked).await.into_elements() {
                    Ok(elements) => elements,
                    // Nothing is cached; the leaders are released as they drop.
                    Err(out) => match self.stand_ins(&mut led) {
                        Some(kept) => {
                            found.extend(kept);
                            Vec::new()
                        }
                        None => {
                            drop(led);
                            if let Some(shared) = &shared {
                                self.unlock_all(io, shared, held, &budget).await;
                            }
                            return out;
                        }
                    },
                };
                let compute_time = started.elapsed();
                super::trace::body_ran(&self.label, compute_time);
                let mut writes = Vec::new();
                let remote = shared.as_ref().map(|s| &s.remote);
                let position: HashMap<&K, usize> = led
                    .iter()
                    .enumerate()
                    .map(|(at, (e, _))| (e.id, at))
                    .collect();
                let mut returned = vec![false; led.len()];
                for (id, value) in &elements {
                    // Only the ids asked for are cached (and each once).
                    let Some(&at) = position.get(id) else {
                        continue;
                    };
                    returned[at] = true;
                    let element = &led[at].0;
                    let call = &element.call;
                    // An invalidation since the call began: the value may predate it.
                    if self.epoch.load(std::sync::atomic::Ordering::Acquire) != call.epoch {
                        continue;
                    }
                    // A refreshed element replaces a value front tables may hold as fresh.
                    let replaces = element.servable.is_some();
                    if let Some(write) = self.store_value(
                        call,
                        remote,
                        &typed::shared(value),
                        compute_time,
                        replaces,
                    ) {
                        writes.push((call.args, write));
                    }
                }
                drop(position);
                // A refreshed element the body left out keeps its stale value in the answer.
                for ((element, _), returned) in led.iter_mut().zip(returned) {
                    if let (false, Some(value)) = (returned, element.servable.take()) {
                        found.push((element.id.clone(), typed(self.count_hit(value))));
                    }
                }
                drop(led);
                found.extend(elements);
                if let Some(shared) = &shared {
                    self.write_many(io, shared, &writes, &budget).await;
                }
            }
            if let Some(shared) = &shared {
                if !held.is_empty() {
                    self.unlock_all(io, shared, std::mem::take(&mut held), &budget)
                        .await;
                }
                if !busy.is_empty() {
                    let settled = self
                        .await_owners(io, shared, busy, &budget, &mut found, &mut held)
                        .await;
                    pending.extend(settled);
                }
            }
            for (element, waiter) in waiting {
                io.wait(waiter).await;
                match self.fresh_in_l1(&element.call) {
                    Some(value) => found.push((element.id.clone(), typed(value))),
                    // The leader's body did not return it (or failed): look again.
                    None => pending.push(element),
                }
            }
        }
        O::from_elements(found)
    }

    /// `stale_if_error`, when the body failed: the last good value of every element it was
    /// asked for (a stale one being refreshed, or one L1 keeps within the window, perhaps read
    /// from the shared store just now), each counted in `stale_served`; `None` when one of
    /// them has none (the call then answers with the error).
    fn stand_ins<K: Clone>(
        &self,
        led: &mut [(Element<'_, K>, Leader<'static>)],
    ) -> Option<Vec<(K, V)>> {
        self.settings.lifetime.stale_if_error?;
        let mut kept = Vec::with_capacity(led.len());
        for (element, _) in led.iter_mut() {
            let value = element
                .servable
                .take()
                .or_else(|| self.l1.get_kept(element.call.args).map(Entry::into_value))?;
            kept.push((element.id.clone(), typed(value)));
        }
        for _ in &kept {
            Counters::add(&self.counters.stale_served);
        }
        tracing::debug!(
            name = %self.settings.name,
            elements = kept.len(),
            "the body failed; serving the last values within `stale_if_error`"
        );
        Some(kept)
    }

    /// The function's shared store, when it has one and it is available.
    fn shared(&self) -> Option<Shared> {
        self.remote.as_ref()?;
        let installed = config::current()?;
        let store = Arc::clone(self.store_in(&installed)?);
        if !store.available() {
            Counters::add(&self.counters.l2_errors);
            return None;
        }
        let channel = installed.channel(self.settings.store).cloned();
        Some(Shared {
            installed,
            remote: Remote {
                store,
                key: String::new(),
                ask_first: true,
                channel,
            },
        })
    }

    /// Reads the led elements the store may hold with one `GetMany`; those found fresh go to
    /// `found` (and L1), their leaders are released, and the others are returned.
    async fn read_many<'a, I: Io, K: Clone, T>(
        &'static self,
        io: &I,
        shared: &Shared,
        led: Vec<(Element<'a, K>, T)>,
        found: &mut Vec<(K, V)>,
        budget: &Budget,
    ) -> Vec<(Element<'a, K>, T)> {
        let names: Vec<RemoteName<'_>> = led
            .iter()
            .filter(|(e, _)| e.ask_first)
            .map(|(e, _)| self.remote_name(&shared.installed, e.call.args))
            .collect();
        if names.is_empty() {
            return led;
        }
        let reply = self
            .send(io, &shared.remote, Op::GetMany(&names), budget)
            .await;
        let values = match reply {
            Some(Reply::Values(values)) if values.len() == names.len() => values,
            _ => return led,
        };
        let mut values = values.into_iter();
        let mut missing = Vec::with_capacity(led.len());
        for (mut element, leader) in led {
            if !element.ask_first {
                missing.push((element, leader));
                continue;
            }
            let bytes = values.next().flatten();
            let backfill =
                bytes.map(|bytes| self.decode_into_l1(&element.call, &bytes, element.call.born()));
            match backfill {
                Some(Backfill::Fresh(value)) => {
                    Counters::add(&self.counters.l2_hits);
                    // Refreshed by another process: newer than what front tables hold.
                    let value = self.replaced_if(element.servable.is_some(), &element.call, value);
                    found.push((element.id.clone(), typed(value)));
                }
                // Stale in the store too (now in L1): this call refreshes it.
                Some(Backfill::Servable(value)) => {
                    element.servable.get_or_insert(value);
                    missing.push((element, leader));
                }
                _ => missing.push((element, leader)),
            }
        }
        missing
    }

    /// Sends the computed elements' writes in one `SetMany`.
    async fn write_many<I: Io>(
        &self,
        io: &I,
        shared: &Shared,
        writes: &[(&str, super::Write)],
        budget: &Budget,
    ) {
        if writes.is_empty() {
            return;
        }
        let keys: Vec<String> = writes
            .iter()
            .map(|(args, _)| self.remote_name(&shared.installed, args).to_string())
            .collect();
        let entries: Vec<SetEntry<'_>> = writes
            .iter()
            .zip(&keys)
            .map(|((_, write), key)| SetEntry {
                key,
                value: &write.bytes,
                ttl: write.ttl,
            })
            .collect();
        self.send(io, &shared.remote, Op::SetMany(&entries), budget)
            .await;
    }

    fn remote_name<'a>(&'a self, installed: &'a Installed, args: &'a str) -> RemoteName<'a> {
        RemoteName {
            prefix: &installed.prefix,
            name: &self.settings.name,
            version: self.settings.version,
            args,
        }
    }
}

/// What a call should do with an L1 entry: as [`Entry::verdict`], but an entry this call's
/// front table already picked for early refresh is refreshed without a second draw.
fn judged(call: &Call<'_>, entry: &Entry<AnyValue>) -> Verdict {
    match entry.verdict() {
        Verdict::Fresh if call.picked_for_refresh == Some(entry.deadline) => Verdict::Refresh,
        verdict => verdict,
    }
}
