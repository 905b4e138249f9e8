//! The read and write path across the layers, for one `#[cached]` function.
//!
//! ```text
//! call(args)
//!   front table of this thread (exact TTL + epoch)   fresh hit -> return
//!   L1 (moka)                                        fresh hit -> fill front, return
//!   preload scope of this thread/task                hit -> decode, backfill L1, return
//!   single flight on the key; the leader then:
//!     L2 GET -> decode -> backfill L1 with the entry's remaining TTL -> return
//!     [lock]  SET NX the key's lock, or wait for the owner's value to appear in L2
//!     body -> L1 insert -> release waiters -> L2 SET with TTL (fail-open) -> unlock -> return
//! ```
//!
//! An entry past its deadline but inside its `stale` window, or picked for early refresh, is
//! served to every caller but one, which refreshes it. The path is written once as an `async
//! fn` over [`Io`]: sync calls run it with blocking steps (see [`crate::io`]).
//!
//! Past the front table, nothing here depends on the function's value type: [`Layers`] holds
//! values as `Arc<dyn Any>` ([`Value`]) and is compiled once, in this crate. What is typed, and
//! so generated again for each value type in the crates that use `#[cached]`, is the thin
//! shell around it ([`CachedFn`], in `typed`): the front table, and the copy of a value handed
//! to a caller (see `typed` for what that saved).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::codec::{DecodeError, Header};
use crate::coherence::{self, Change, Coherent, Stamps};
use crate::doorkeeper::Doorkeeper;
use crate::flight::{Flights, Joined, Leader};
use crate::freshness::{self, Lifetime, Verdict};
use crate::front::{self, Epochs, Probe};
use crate::io::{self, Blocking, Io, NonBlocking};
use crate::key::{Held, Key, KeyBuf, KeyOwner, Marks};
use crate::lock::{self, Lock};
use crate::scope::{self, Found, Preloaded};
use crate::stats::{Counters, Stats};
use crate::store::local::{AnyValue, Bound, Entry, LocalStore, Policy, SizeFn};
use crate::store::{Budget, Op, Reply, SharedStore};
use crate::writes::Writes;

mod batch;
mod fn_core;
mod route;
mod shortcut;
mod trace;
mod typed;
mod warm;
pub use batch::BatchOutcome;
use fn_core::FnCore;
pub use shortcut::{Pending, Probed};
use trace::{Asked, Ending, Trace};
use typed::ThreadFront;
pub use typed::{CachedFn, FrontKey, RemoteCodec};

/// A value as the layers past the front table hold it: shared, and of the function's value
/// type behind `dyn Any` (each function's layers hold values of its type only).
pub(crate) type Value = Arc<AnyValue>;

/// How a function's values go to and from bytes, their type erased (see [`RemoteCodec`] for
/// the typed functions each one calls).
struct Codec {
    /// A value and its header to bytes for the shared store, under the fingerprint.
    encode: Box<EncodeAny>,
    /// Bytes to a value and its header, checked against the fingerprint.
    decode: Box<DecodeAny>,
    /// The fingerprint of the value type that `encode` writes and `decode` expects, computed
    /// once ([`codec::fingerprint`]).
    fingerprint: u64,
    /// The length `encode` writes, which an L1 bounded by `max_bytes` weighs values by.
    size: SizeFn,
}

/// [`Codec::encode`]: a value of the function's type and its header to bytes.
type EncodeAny = dyn Fn(&AnyValue, Header, u64) -> Result<Vec<u8>, String> + Send + Sync;

/// [`Codec::decode`]: bytes to a value of the function's type and its header.
type DecodeAny = dyn Fn(&[u8], u64) -> Result<(Value, Header), DecodeError> + Send + Sync;

/// A lifetime a value decides for itself (see [`ValueTtl`](typed::ValueTtl)).
type ValueTtlAny = dyn Fn(&AnyValue) -> Option<Duration> + Send + Sync;

/// The fixed settings of one function, from its `#[cached(..)]` arguments.
pub struct Settings {
    /// Cache name (default: module path and function name).
    pub name: String,
    /// Part of every key; bump it to orphan old entries.
    pub version: u32,
    /// Most entries kept in L1.
    pub capacity: u64,
    /// TTL, jitter, stale window, early refresh.
    pub lifetime: Lifetime,
    /// Lease of the fleet-wide compute lock; `None` = no lock.
    pub lock: Option<Duration>,
    /// The named shared store (`#[cached(store = "..")]`); `None` = the default one.
    pub store: Option<&'static str>,
    /// L1 drops an entry no call has read for this long (`idle`); `None` = no idle expiry.
    pub idle: Option<Duration>,
    /// How a full L1 picks what to evict (`policy`).
    pub policy: Policy,
}

/// Everything one `#[cached]` function keeps past its front tables: its L1, flights, counters
/// and settings, none of it typed by the value (see the module docs).
pub struct Layers {
    /// What does not depend on the shared store's side either (see `fn_core`); its fields and
    /// methods are reached through `Deref`.
    core: FnCore,
    remote: Option<Codec>,
    l1: LocalStore,
    epoch: AtomicU64,
    /// What front-table slots are checked against (see `front`).
    front_epochs: Epochs,
    /// When messages of other processes last arrived, per stripe of keys (see `coherence`).
    stamps: Stamps,
    /// Whether the function is in the listener's registry (see `coherence`).
    registered: AtomicBool,
    flights: Flights,
    /// Whether the function is in the process's list (see `registry`).
    listed: AtomicBool,
    /// A lifetime decided by the value (`none_ttl`, `expires`): `Some` replaces the `ttl`.
    value_ttl: Option<Box<ValueTtlAny>>,
    /// The identity preload scopes know this cache by, when it is not its address: a
    /// `cached_block!` is known by its name's owner (see `block`).
    alias: std::sync::OnceLock<usize>,
    /// Which keys a full L1 admits from preload scopes (see `doorkeeper`).
    doorkeeper: Doorkeeper,
    /// Values put in L1, per stripe of keys, for preload scopes (see `writes`).
    writes: Writes,
    /// This function's front thread-local, once a call filled a slot (see `warm`).
    front: std::sync::OnceLock<&'static dyn ThreadFront>,
}

impl std::ops::Deref for Layers {
    type Target = FnCore;

    fn deref(&self) -> &FnCore {
        &self.core
    }
}

/// Where one call's key lives, computed once per call.
struct Call<'a> {
    /// This thread's front table (`None` for companions, which have none to fill).
    front: Option<&'static dyn ThreadFront>,
    args: &'a str,
    probe: Probe,
    /// The function's epoch (bumped by invalidations), read before any lookup.
    epoch: u64,
    /// The key's count in the front tables' [`Epochs`], read before any lookup.
    front_epoch: u64,
    /// Early refresh already picked this caller in the front table (no second draw), on
    /// the entry with this deadline.
    picked_for_refresh: Option<u64>,
    /// What the call may still spend waiting on Redis.
    budget: Budget,
    /// `f::refresh(..)`: compute now, whatever the layers hold (others keep serving it).
    force_refresh: bool,
    /// When the call began reading or computing what L1 did not answer ([`clock::now`]; 0
    /// until then): anything it reads or computes is no older (see `coherence`).
    born: AtomicU64,
    /// What the call tells `tracing` once neither L1 nor a scope answered it.
    trace: Trace,
}

impl Call<'_> {
    fn born(&self) -> u64 {
        self.born.load(Ordering::Relaxed)
    }
}

/// What became of stored bytes read from Redis or a preload scope.
enum Backfill {
    /// A fresh value, now in L1.
    Fresh(Value),
    /// Servable while one caller refreshes it (stale, or picked for early refresh); in L1.
    Servable(Value),
    /// Past even its stale window; dropped.
    Expired,
    /// Not a value of this function (counted in `decode_errors`).
    Undecodable,
}

/// Where [`Layers::prepare`] ended.
enum Step {
    /// A value to return.
    Answer(Value),
    /// This caller leads: compute. (Boxed: an async call's future holds it while its body
    /// runs.)
    Compute(Box<Work>),
}

/// Where [`Layers::prepare_start`] left a call.
enum Start {
    /// L1 or a preload scope answered.
    Answered(Value),
    /// On to the single flight, the shared store and the lock.
    Ahead(Ahead),
}

/// What the first part of `prepare` found out, for the rest.
struct Ahead {
    /// A value to hand out while another caller refreshes it.
    servable: Option<Value>,
    /// The key's shard's landings count before the L1 lookup (see `Flights::landed`).
    landed: u64,
    remote: Option<Remote>,
}

/// A value encoded for the shared store, and how long the store keeps it.
struct Write {
    bytes: Vec<u8>,
    ttl: Option<Duration>,
}

/// What the leader holds while it computes.
struct Work {
    leader: Leader<'static>,
    remote: Option<Remote>,
    lock: Option<lock::Owned>,
    /// The stale (or about to expire) value, when this computation is a refresh.
    servable: Option<Value>,
    /// This computation replaces a value that front tables may hold as fresh.
    replaces: bool,
}

/// The shared-store side of a miss: the function's store and the key's remote name.
struct Remote {
    store: Arc<dyn SharedStore>,
    key: String,
    /// `false` when a preload scope already found the key absent: no GET, just compute.
    ask_first: bool,
    /// Where writes and removals are announced to the other processes (see `coherence`).
    channel: Option<Arc<str>>,
}

impl Layers {
    /// The lookups after a front-table miss: L1, the preload scope, the single flight, Redis,
    /// the lock. Ends with an answer, or with this caller leading a computation.
    ///
    /// L1 comes before the scope when the key's value may have been replaced since the scope
    /// was planned (its front epoch moved: a `put`, a refresh, another process's change; or
    /// L1 got a value for a key of its stripe, see `writes`): the value in L1 may then be
    /// newer than the scope's. Otherwise the scope answers first:
    /// planning read L1 for the key (the read moka's admission policy counts, so a backfill
    /// from a scope is admitted into a full L1 as readily as one from a GET), and the slot
    /// holds L1's value or the MGET's bytes.
    async fn prepare<I: Io>(&'static self, io: &I, call: &Call<'_>) -> Step {
        match self.prepare_start(call) {
            Start::Answered(value) => Step::Answer(value),
            Start::Ahead(ahead) => self.prepare_rest(io, call, ahead).await,
        }
    }

    /// The part of [`prepare`](Self::prepare) that waits on nothing: L1 and the preload
    /// scope. Most calls past the front table end here, so `CachedFn::routed` awaits the
    /// rest, the part that may wait, only when needed, and in a box of its own
    /// ([`rest_async`](Self::rest_async)): the future of every cached `async fn` stays small.
    fn prepare_start(&'static self, call: &Call<'_>) -> Start {
        self.list();
        // A value to hand out while another caller refreshes it.
        let mut servable = None;
        let landed = self.flights.landed(call.probe.hash);
        // `f::refresh(..)`: neither the scope nor the shared store is asked.
        let slot = if call.force_refresh {
            None
        } else {
            self.scope_slot(call)
        };
        // What the slot said, when it was asked before L1.
        let mut early = None;
        if let Some(slot) = &slot {
            // Nothing replaced the value and L1 got no other since the scope was planned,
            // and planning read L1 for this key: the scope answers first (see `writes`).
            // Not for a caller the front table picked for early refresh: it recomputes.
            let now = Marks {
                front_epoch: call.front_epoch,
                l1_writes: self.writes.now(call.probe.hash),
            };
            if call.picked_for_refresh.is_none() && slot.unchanged(now) {
                match self.preloaded_from(call, slot) {
                    Preloaded::Served(Backfill::Fresh(value)) => return Start::Answered(value),
                    said => early = Some(said),
                }
            }
        }
        if let Some(entry) = self.l1.get(call.args) {
            let verdict = match entry.verdict() {
                // Picked on this very entry; a newer one (another caller's refresh) stands.
                Verdict::Fresh
                    if call.force_refresh || call.picked_for_refresh == Some(entry.deadline) =>
                {
                    Verdict::Refresh
                }
                verdict => verdict,
            };
            match verdict {
                Verdict::Fresh => return Start::Answered(self.l1_served(call, entry)),
                Verdict::Refresh => servable = Some(entry.into_value()),
                Verdict::Gone => {}
            }
        }
        // Past L1: what is read or computed from here on is as new as this moment.
        call.born.store(clock::now(), Ordering::Relaxed);
        let preloaded = match (early, &slot) {
            (Some(said), _) => said,
            (None, Some(slot)) => self.preloaded_from(call, slot),
            (None, None) => Preloaded::Unknown,
        };
        if !matches!(preloaded, Preloaded::Unknown) {
            call.trace.asked(Asked::Scope);
        }
        let ask_first = !call.force_refresh
            && match preloaded {
                Preloaded::Served(Backfill::Fresh(value)) => return Start::Answered(value),
                // Redis held what the scope holds: refresh it without asking again.
                Preloaded::Served(Backfill::Servable(value)) => {
                    servable = Some(value);
                    false
                }
                Preloaded::Served(Backfill::Undecodable) | Preloaded::Absent => false,
                // The scope outlived the value: Redis may hold a newer one.
                Preloaded::Served(Backfill::Expired) | Preloaded::Unknown => true,
            };
        // Neither L1 nor a scope answered: a miss, traced from here.
        call.trace.begin(&self.settings.name);
        Start::Ahead(Ahead {
            servable,
            landed,
            remote: self.remote_for(call, ask_first),
        })
    }

    /// The part of [`prepare`](Self::prepare) that may wait: the single flight, the shared
    /// store, the lock.
    async fn prepare_rest<I: Io>(&'static self, io: &I, call: &Call<'_>, ahead: Ahead) -> Step {
        let Ahead {
            mut servable,
            landed,
            remote,
        } = ahead;
        loop {
            let leader = match self.flights.join(call.args, call.probe.hash) {
                Joined::Leader(leader) => leader,
                Joined::Waiter(waiter) => {
                    // A forced refresh waits for the value being computed instead.
                    if !call.force_refresh {
                        if let Some(value) = servable {
                            call.trace.ended(Ending::Stale);
                            return Step::Answer(self.count_hit(value));
                        }
                    }
                    call.trace.asked(Asked::Flight);
                    tracing::trace!(
                        parent: &call.trace.span(),
                        "another caller of this process is getting this key; waiting for it"
                    );
                    let waiting = Instant::now();
                    io.wait(waiter).await;
                    call.trace.waited(waiting.elapsed());
                    match self.fresh_in_l1(call) {
                        Some(value) => {
                            call.trace.ended(Ending::Joined);
                            return Step::Answer(value);
                        }
                        None => continue,
                    }
                }
            };
            // A leader that landed since this caller looked in L1 may have put the value there.
            if servable.is_none()
                && !call.force_refresh
                && self.flights.landed(call.probe.hash) != landed
            {
                if let Some(value) = self.fresh_in_l1(call) {
                    call.trace.ended(Ending::Joined);
                    return Step::Answer(value);
                }
            }
            let mut lock = None;
            if let Some(remote) = &remote {
                if remote.ask_first {
                    if let Some(value) = self.read_remote(io, call, remote).await {
                        return Step::Answer(self.replaced_if(servable.is_some(), call, value));
                    }
                    if servable.is_none() {
                        // Redis held a stale value (now in L1): serve it if another caller
                        // holds the lock, rather than wait for that caller's refresh.
                        servable = self.servable_in_l1(call);
                    }
                }
                if let Some(lease) = self.settings.lock {
                    match self.lock(io, call, remote, lease, servable.is_some()).await {
                        Lock::Owner(owned) => lock = Some(owned),
                        Lock::Found(value) => {
                            return Step::Answer(self.replaced_if(servable.is_some(), call, value))
                        }
                        Lock::Busy => {
                            if let Some(value) = servable {
                                call.trace.ended(Ending::Stale);
                                return Step::Answer(self.count_hit(value));
                            }
                        }
                        Lock::Unavailable => {}
                    }
                }
            }
            return Step::Compute(Box::new(Work {
                leader,
                remote,
                lock,
                replaces: servable.is_some() || call.force_refresh,
                servable,
            }));
        }
    }

    /// What the leader does once the body returned: stores its result (`value`; `None` when
    /// it is not to be cached), releases the waiters and the lock. Returns a value to answer
    /// with instead of the body's result: the one kept for `stale_if_error`, when the body
    /// failed.
    async fn computed<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_>,
        work: Box<Work>,
        value: Option<Value>,
        started: Instant,
    ) -> Option<Value> {
        let Work {
            leader,
            remote,
            lock,
            replaces,
            ..
        } = *work;
        call.trace.computed(&self.label, started.elapsed());
        call.trace.ended(match value {
            Some(_) => Ending::Computed,
            None => Ending::Uncacheable,
        });
        let write = self.store_computed(call, remote.as_ref(), value.as_ref(), started, replaces);
        drop(leader);
        if self
            .send_write(io, remote.as_ref(), write, call.args, &call.budget)
            .await
        {
            tracing::trace!(parent: &call.trace.span(), "wrote the value to the shared store");
        }
        if let (Some(remote), Some(owned)) = (&remote, lock) {
            self.send(io, remote, owned.release(), &call.budget).await;
        }
        if value.is_none() && self.settings.lifetime.stale_if_error.is_some() {
            if let Some(stand_in) = self.fallback(io, call, remote.as_ref()).await {
                Counters::add(&self.counters.stale_served);
                call.trace.ended(Ending::StaleIfError);
                tracing::debug!(
                    name = %self.settings.name,
                    "the body failed; serving the last value within `stale_if_error`"
                );
                return Some(stand_in);
            }
        }
        None
    }

    /// A value that expired at most `stale_if_error` ago, to return instead of a failed
    /// body's result: the one L1 keeps, or else the shared store's (which keeps entries that
    /// long past their expiry).
    async fn fallback<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_>,
        remote: Option<&Remote>,
    ) -> Option<Value> {
        if let Some(entry) = self.l1.get_kept(call.args) {
            return Some(entry.into_value());
        }
        let remote = remote?;
        let Reply::Value(Some(bytes)) = self
            .send(io, remote, Op::Get(&remote.key), &call.budget)
            .await?
        else {
            return None;
        };
        match self.decode_into_l1(call, &bytes, call.born()) {
            Backfill::Fresh(value) | Backfill::Servable(value) => Some(value),
            Backfill::Expired | Backfill::Undecodable => {
                self.l1.get_kept(call.args).map(Entry::into_value)
            }
        }
    }

    /// A value read from the shared store while refreshing: it may be newer than the copies
    /// front tables hold as fresh, which are then voided (it is in L1 already).
    fn replaced_if(&self, refreshing: bool, call: &Call<'_>, value: Value) -> Value {
        if refreshing {
            self.front_epochs.bump(call.probe.hash);
        }
        value
    }

    /// Serves an L1 entry: counts the hit and shares its value with this thread's front table.
    fn l1_served(&'static self, call: &Call<'_>, entry: Entry<AnyValue>) -> Value {
        self.fill_front(call, &entry);
        self.count_hit(entry.into_value())
    }

    fn count_hit(&self, value: Value) -> Value {
        Counters::add(&self.counters.l1_hits);
        value
    }

    /// A fresh L1 entry (one another caller may just have stored).
    fn fresh_in_l1(&'static self, call: &Call<'_>) -> Option<Value> {
        let entry = self.l1.get(call.args)?;
        (!clock::expired(entry.deadline)).then(|| self.l1_served(call, entry))
    }

    /// An L1 value that may still be served while it is refreshed (stale, or picked for
    /// early refresh).
    fn servable_in_l1(&self, call: &Call<'_>) -> Option<Value> {
        let entry = self.l1.get(call.args)?;
        (entry.verdict() != Verdict::Gone).then(|| entry.into_value())
    }

    fn fill_front(&'static self, call: &Call<'_>, entry: &Entry<AnyValue>) {
        let Some(front) = call.front else {
            return;
        };
        let fill = front::Fill {
            value: Arc::clone(&entry.value),
            deadline: entry.deadline,
            delta_beta: entry.delta_beta,
            epoch: call.front_epoch,
        };
        self.remember_front(front);
        front.fill(
            &call.probe,
            call.args,
            fill,
            &self.counters,
            self.settings.capacity,
        );
    }

    /// What a preload scope holds for this call; a value found there is backfilled into L1,
    /// and counted when served.
    fn preloaded(&'static self, call: &Call<'_>) -> Preloaded<Backfill> {
        match self.scope_slot(call) {
            Some(slot) => self.preloaded_from(call, &slot),
            None => Preloaded::Unknown,
        }
    }

    /// The slot of the innermost preload scope for this call's key, if any.
    #[inline]
    fn scope_slot(&self, call: &Call<'_>) -> Option<scope::SlotRef> {
        self.remote.as_ref()?;
        scope::find(self.id(), call.args)
    }

    /// [`preloaded`](Self::preloaded), from the slot found.
    fn preloaded_from(
        &'static self,
        call: &Call<'_>,
        slot: &scope::SlotRef,
    ) -> Preloaded<Backfill> {
        slot.serve(call.epoch, |found| match found {
            // Another process changed the key since the scope asked: the store may hold a
            // newer value (see `coherence`).
            Found::Stored { asked_at, .. } | Found::Held { asked_at, .. }
                if self.stamps.last(call.probe.hash) >= asked_at =>
            {
                Backfill::Expired
            }
            Found::Stored { bytes, asked_at } => {
                // A full L1 takes a scope's value only on its key's second sighting (see
                // `doorkeeper`); the value is served either way.
                let keep = !self.l1.is_full() || self.doorkeeper.seen_before(call.probe.hash);
                let backfill = self.decode(call, bytes, asked_at, keep);
                if let Backfill::Fresh(_) = backfill {
                    Counters::add(&self.counters.scope_hits);
                }
                backfill
            }
            // L1 (or a front table) held it when the scope was planned: served as L1 would
            // serve it, and counted as an L1 hit. L1 may have dropped it since; it is not put
            // back. Anything else is as good as expired: L1 is asked, then the store.
            Found::Held { held, .. } => {
                let value = Arc::clone(&held.value);
                match freshness::verdict(held.deadline, held.deadline, held.delta_beta) {
                    // The front table picked this caller to refresh this very value.
                    Verdict::Fresh if call.picked_for_refresh == Some(held.deadline) => {
                        Backfill::Servable(value)
                    }
                    Verdict::Fresh => {
                        Counters::add(&self.counters.l1_hits);
                        Backfill::Fresh(value)
                    }
                    _ => Backfill::Expired,
                }
            }
        })
    }

    /// The shared-store side of this call, if any. `ask_first`: read the key before
    /// computing.
    fn remote_for(&'static self, call: &Call<'_>, ask_first: bool) -> Option<Remote> {
        self.remote_of(call.args, ask_first)
    }

    /// GETs the key; a decodable, fresh value is backfilled and returned.
    async fn read_remote<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_>,
        remote: &Remote,
    ) -> Option<Value> {
        call.trace.asked(Asked::L2);
        let Reply::Value(bytes) = self
            .send(io, remote, Op::Get(&remote.key), &call.budget)
            .await?
        else {
            return None;
        };
        let bytes = bytes?;
        let Backfill::Fresh(value) = self.decode_into_l1(call, &bytes, call.born()) else {
            return None;
        };
        Counters::add(&self.counters.l2_hits);
        call.trace.ended(Ending::L2Hit);
        Some(value)
    }

    /// Takes the fleet-wide lock, or waits for its owner's value (see [`crate::lock`]).
    async fn lock<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_>,
        remote: &Remote,
        lease: Duration,
        have_servable: bool,
    ) -> Lock<Value> {
        call.trace.asked(Asked::Lock);
        let mut waiting = lock::Waiting::new(&remote.key, lease);
        let mut waited: Option<Instant> = None;
        loop {
            let Some(Reply::Locked(acquired)) =
                self.send(io, remote, waiting.acquire(), &call.budget).await
            else {
                return Lock::Unavailable;
            };
            if acquired {
                // The previous owner may have written the value just before we locked.
                if let Some(value) = self.read_remote(io, call, remote).await {
                    let owned = waiting.owned();
                    self.send(io, remote, owned.release(), &call.budget).await;
                    return Lock::Found(value);
                }
                return Lock::Owner(waiting.owned());
            }
            if have_servable {
                return Lock::Busy;
            }
            let since = *waited.get_or_insert_with(|| {
                tracing::debug!(
                    parent: &call.trace.span(),
                    lease_ms = lease.as_millis() as u64,
                    "another process holds this key's compute lock; waiting for its value"
                );
                Instant::now()
            });
            let Some(pause) = waiting.next_pause() else {
                call.trace.waited(since.elapsed());
                tracing::warn!(key = %remote.key, "lock owner did not finish in time; computing");
                return Lock::Unavailable;
            };
            io.sleep(pause).await;
            if let Some(value) = self.read_remote(io, call, remote).await {
                call.trace.waited(since.elapsed());
                return Lock::Found(value);
            }
        }
    }

    /// Decodes stored bytes and backfills L1 with the entry's remaining lifetime (a value
    /// past its deadline but still servable is backfilled too).
    ///
    /// This thread's front table is left to the next L1 hit: a value read from Redis or a
    /// scope is often used once, and copying it there too would cost every backfill.
    /// `asked_at`: when the bytes were asked for (see `coherence`).
    fn decode_into_l1(&'static self, call: &Call<'_>, bytes: &[u8], asked_at: u64) -> Backfill {
        self.decode(call, bytes, asked_at, true)
    }

    /// [`decode_into_l1`](Self::decode_into_l1), or with `keep` false the same answer with
    /// nothing kept in L1 (a value the doorkeeper turned away).
    fn decode(&'static self, call: &Call<'_>, bytes: &[u8], asked_at: u64, keep: bool) -> Backfill {
        let Some(remote) = self.remote.as_ref() else {
            return Backfill::Undecodable;
        };
        let (value, header) = match (remote.decode)(bytes, remote.fingerprint) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::debug!(name = %self.settings.name, %error, "treating an undecodable value as a miss");
                Counters::add(&self.counters.decode_errors);
                return Backfill::Undecodable;
            }
        };
        let fresh_for = header
            .expires_at_ms
            .map(|at| Duration::from_millis(at.saturating_sub(clock::unix_millis())));
        let times = self.settings.lifetime.times(fresh_for, header.compute_time);
        let entry = Entry::new(value, &times, asked_at).encoded(bytes.len(), call.args);
        if clock::expired(entry.keep_until) {
            if keep && !clock::expired(entry.fallback_until) {
                // Not servable, but kept to stand in for a failing body (`stale_if_error`).
                self.l1.insert(call.args, entry);
                self.writes.inserted(call.probe.hash);
            }
            return Backfill::Expired;
        }
        if keep && self.keep(call, entry.clone()) {
            tracing::trace!(parent: &call.trace.span(), "filled L1 from stored bytes");
        }
        match entry.verdict() {
            Verdict::Fresh => Backfill::Fresh(entry.into_value()),
            _ => Backfill::Servable(entry.into_value()),
        }
    }

    /// After the body ran: counts it, stores a cacheable result in L1 and returns the L2 write
    /// to send. Nothing is stored if the function was invalidated meanwhile, here or (for
    /// this key) in another process (the value may predate the invalidation). When the value `replaces` one that front tables may hold
    /// as fresh, their copies are voided once the new one is in L1.
    fn store_computed(
        &'static self,
        call: &Call<'_>,
        remote: Option<&Remote>,
        value: Option<&Value>,
        started: Instant,
        replaces: bool,
    ) -> Option<Write> {
        Counters::add(&self.counters.misses);
        let value = value?;
        if self.epoch.load(Ordering::Acquire) != call.epoch {
            return None;
        }
        if self.stamps.last(call.probe.hash) >= call.born() {
            // Another process changed the key since the body began: the value may predate
            // the change, and is stored nowhere (that process's next read computes anew).
            return None;
        }
        self.store_value(call, remote, value, started.elapsed(), replaces)
    }

    /// Puts `value` in L1 (and this thread's front table, unless it `replaces` a value other
    /// threads may hold, whose copies are then voided) and encodes the shared store's write.
    fn store_value(
        &'static self,
        call: &Call<'_>,
        remote: Option<&Remote>,
        value: &Value,
        compute_time: Duration,
        replaces: bool,
    ) -> Option<Write> {
        let lifetime = &self.settings.lifetime;
        let ttl = self
            .value_ttl
            .as_ref()
            .and_then(|of| of(&**value))
            .or(lifetime.ttl);
        let times = lifetime.new_entry_for(ttl, compute_time);
        let entry = Entry::new(Arc::clone(value), &times, call.born());
        if !self.keep(call, entry.clone()) {
            // Another process changed the key meanwhile: the value is returned, not kept.
            tracing::trace!(
                parent: &call.trace.span(),
                "another process changed the key meanwhile: the value is returned, not kept"
            );
        } else {
            if replaces {
                // This thread's slot is voided too: its next call reads the new value from L1.
                self.front_epochs.bump(call.probe.hash);
            } else {
                self.fill_front(call, &entry);
            }
            tracing::trace!(parent: &call.trace.span(), "stored the value in L1");
        }
        remote?;
        let codec = self.remote.as_ref()?;
        let header = Header {
            expires_at_ms: times
                .fresh_for
                .map(|fresh| clock::unix_millis() + fresh.as_millis() as u64),
            compute_time,
        };
        match (codec.encode)(&**value, header, codec.fingerprint) {
            Ok(bytes) => Some(Write {
                bytes,
                ttl: lifetime.remote_ttl(times.fresh_for),
            }),
            Err(error) => {
                tracing::warn!(name = %self.settings.name, %error, "value could not be encoded for the shared store");
                None
            }
        }
    }

    /// Puts `entry` in L1, unless a message of another process about its key arrived since
    /// its value was asked for (the value may predate the change). Checked again after the
    /// insertion, which a message may have overtaken: then the entry is taken out again and
    /// the front slots a reader may have filled from it are voided.
    fn keep(&'static self, call: &Call<'_>, entry: Entry<AnyValue>) -> bool {
        if !self.registered.load(Ordering::Relaxed) && !self.registered.swap(true, Ordering::AcqRel)
        {
            coherence::register(self);
        }
        let (hash, born) = (call.probe.hash, entry.born);
        if self.stamps.last(hash) >= born {
            return false;
        }
        self.l1.insert(call.args, entry);
        self.writes.inserted(hash);
        let last = self.stamps.last(hash);
        if last >= born {
            self.l1.remove_born_by(call.args, last);
            self.front_epochs.bump(hash);
            return false;
        }
        true
    }

    /// Removes `args` from L1 and every front table, then from the shared store.
    async fn forget(&self, io: &impl Io, args: &str) {
        self.l1.remove(args);
        // After the removal, so that no front slot can be refilled under the new epoch with
        // the removed value (see `front`).
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.front_epochs.bump_all();
        if let Some(remote) = self.remote_of(args, false) {
            let op = Op::Delete(&remote.key);
            self.send_announced(io, &remote, op, Change::Key, args, &Budget::default())
                .await;
        }
    }

    /// Removes one entry from both layers.
    pub fn invalidate(&self, args: KeyBuf) {
        io::block_on(self.forget(&Blocking, args.as_str()));
    }

    /// Removes one entry from both layers, without blocking the runtime.
    pub async fn invalidate_async(&self, args: KeyBuf) {
        self.forget(&NonBlocking, args.as_str()).await;
    }

    /// Empties this function's L1 and front tables (Redis is left alone): the next calls
    /// read from Redis. Useful in tests and benchmarks.
    pub fn clear_local(&self) {
        self.l1.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.front_epochs.bump_all();
    }
}

impl Layers {
    /// A function's layers; `remote` is `None` for `local` functions.
    fn new(settings: Settings, remote: Option<Codec>) -> Self {
        Layers {
            l1: LocalStore::new(
                Bound::Entries(settings.capacity),
                settings.idle,
                settings.policy,
            ),
            core: FnCore::new(settings, remote.is_some()),
            remote,
            epoch: AtomicU64::new(0),
            front_epochs: Epochs::new(),
            stamps: Stamps::new(),
            registered: AtomicBool::new(false),
            flights: Flights::new(),
            listed: AtomicBool::new(false),
            value_ttl: None,
            alias: std::sync::OnceLock::new(),
            doorkeeper: Doorkeeper::new(),
            writes: Writes::new(),
            front: std::sync::OnceLock::new(),
        }
    }

    /// Where a call that missed `front` lives; `picked_for_refresh`: the deadline of the
    /// front-table copy early refresh picked this caller to refresh.
    fn call_site<'a>(
        &self,
        front: &'static dyn ThreadFront,
        args: &'a str,
        probe: Probe,
        picked_for_refresh: Option<u64>,
    ) -> Call<'a> {
        Call {
            front: Some(front),
            args,
            probe,
            epoch: self.epoch.load(Ordering::Acquire),
            front_epoch: self.front_epochs.of(probe.hash),
            picked_for_refresh,
            budget: Budget::default(),
            force_refresh: false,
            born: AtomicU64::new(0),
            trace: Trace::default(),
        }
    }

    /// The identity of this function's cache: its address (see [`CachedFn::run_refreshing`]).
    fn address(&self) -> usize {
        self as *const Self as usize
    }

    /// Makes preload scopes know this cache by `id` (set once; see `block`).
    pub(crate) fn set_alias(&self, id: usize) {
        let _ = self.alias.set(id);
    }

    /// The key of the call whose arguments encoded to `args`.
    pub fn key(&'static self, args: KeyBuf) -> Key {
        Key::new(self, args)
    }

    /// Counters since the process started.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// A call of a companion (no front table), for the key with these encoded arguments.
    fn companion_call<'a>(&self, args: &'a KeyBuf) -> Call<'a> {
        let probe = Probe::of(args);
        Call {
            front: None,
            args: args.as_str(),
            front_epoch: self.front_epochs.of(probe.hash),
            probe,
            epoch: self.epoch.load(Ordering::Acquire),
            picked_for_refresh: None,
            budget: Budget::default(),
            force_refresh: false,
            born: AtomicU64::new(clock::now()),
            trace: Trace::default(),
        }
    }

    /// What the layers hold for these arguments, fresh or servable while refreshing, without
    /// running the body: L1, then the shared store (a value found there is backfilled).
    fn peek_value(&'static self, args: &KeyBuf) -> Option<Value> {
        io::block_on(self.peek_with(&Blocking, args))
    }

    /// [`peek_value`](Self::peek_value) without blocking the runtime.
    async fn peek_value_async(&'static self, args: &KeyBuf) -> Option<Value> {
        self.peek_with(&NonBlocking, args).await
    }

    async fn peek_with<I: Io>(&'static self, io: &I, args: &KeyBuf) -> Option<Value> {
        let call = self.companion_call(args);
        if let Some(entry) = self.l1.get(call.args) {
            if entry.verdict() != Verdict::Gone {
                return Some(entry.into_value());
            }
        }
        let remote = self.remote_for(&call, true)?;
        let Reply::Value(bytes) = self
            .send(io, &remote, Op::Get(&remote.key), &call.budget)
            .await?
        else {
            return None;
        };
        match self.decode_into_l1(&call, &bytes?, call.born()) {
            Backfill::Fresh(value) | Backfill::Servable(value) => Some(value),
            Backfill::Expired | Backfill::Undecodable => None,
        }
    }

    /// Stores `value` for these arguments as if the body had returned it: in L1 (replacing
    /// what every thread holds) and in the shared store, with a new lifetime.
    fn put_value(&'static self, args: &KeyBuf, value: Value) {
        io::block_on(self.put_with(&Blocking, args, value));
    }

    /// [`put_value`](Self::put_value) without blocking the runtime.
    async fn put_value_async(&'static self, args: &KeyBuf, value: Value) {
        self.put_with(&NonBlocking, args, value).await;
    }

    async fn put_with<I: Io>(&'static self, io: &I, args: &KeyBuf, value: Value) {
        let call = self.companion_call(args);
        let remote = self.remote_for(&call, false);
        let write = self.store_value(&call, remote.as_ref(), &value, Duration::ZERO, false);
        // Front tables probe integer keys by their bits, a stripe this call cannot name:
        // every slot of the function is voided (a put is rare).
        self.front_epochs.bump_all();
        self.send_write(io, remote.as_ref(), write, call.args, &call.budget)
            .await;
    }

    /// Removes every entry of this function (this `version`) from the shared store, in
    /// batches that never hold it long, and from L1 and the front tables.
    pub fn clear(&self) {
        io::block_on(self.clear_with(&Blocking));
    }

    /// [`clear`](Self::clear) without blocking the runtime.
    pub async fn clear_async(&self) {
        self.clear_with(&NonBlocking).await;
    }

    async fn clear_with<I: Io>(&self, io: &I) {
        self.clear_local();
        // The key of empty arguments is the prefix every key of the function starts with.
        if let Some(remote) = self.remote_of("", false) {
            let op = Op::DeletePrefix(&remote.key);
            let budget = Budget::default();
            if let Some(Reply::Count(removed)) = self
                .send_announced(io, &remote, op, Change::All, "", &budget)
                .await
            {
                tracing::debug!(name = %self.settings.name, removed, "cleared from the shared store");
            }
        }
    }
}

/// What the listener of other processes' messages does to this function (see `coherence`).
impl Coherent for Layers {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn version(&self) -> u32 {
        self.settings.version
    }

    fn store_name(&self) -> Option<&'static str> {
        self.settings.store
    }

    fn forget_remote(&self, args: &str) {
        let now = clock::now();
        let hashes = front::probe_hashes(args);
        // First the stamps, so that a value being read or computed now is not kept; then L1;
        // then the front slots, which may hold copies of what L1 held.
        for hash in hashes.into_iter().flatten() {
            self.stamps.seen(hash, now);
        }
        self.l1.remove_born_by(args, now);
        for hash in hashes.into_iter().flatten() {
            self.front_epochs.bump(hash);
        }
    }

    fn forget_all_remote(&self, lost: bool) {
        self.stamps.seen_all(clock::now());
        self.clear_local();
        if lost {
            Counters::add(&self.counters.coherence_flushes);
        }
    }
}

impl Layers {
    /// Puts this function in the process's list on its first call past the front table.
    pub(crate) fn list(&'static self) {
        if !self.listed.load(Ordering::Relaxed) && !self.listed.swap(true, Ordering::AcqRel) {
            crate::registry::list(self);
        }
    }
}

impl crate::registry::Listed for Layers {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn stats(&self) -> Stats {
        Layers::stats(self)
    }

    fn entries(&self) -> u64 {
        self.l1.entry_count()
    }

    fn l1_bytes(&self) -> u64 {
        self.l1.weighted_size()
    }

    fn clear_local(&self) {
        Layers::clear_local(self)
    }

    fn reset_stats(&self) {
        self.counters.reset()
    }
}

impl KeyOwner for Layers {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn version(&self) -> u32 {
        self.settings.version
    }

    fn is_local(&self) -> bool {
        self.remote.is_none()
    }

    fn store_name(&self) -> Option<&'static str> {
        self.settings.store
    }

    fn held(&self, args: &str, read: bool) -> Option<Held> {
        let kept_stale = self.settings.lifetime.keeps_past_deadline();
        let entry = self.l1.fresh(args, kept_stale, read)?;
        Some(Held {
            deadline: entry.deadline,
            delta_beta: entry.delta_beta,
            value: entry.into_value(),
        })
    }

    fn fresh_in_front(&self, probe: crate::key::CallProbe, args: &KeyBuf) -> bool {
        self.front_holds(probe, args)
    }

    fn front_value(&self, probe: crate::key::CallProbe, args: &KeyBuf) -> Option<Held> {
        Layers::front_value(self, probe, args)
    }

    fn marks(&self, probe: crate::key::CallProbe, args: &KeyBuf) -> Option<Marks> {
        crate::front::Probe::of_call(probe, args, |probe, _| Marks {
            front_epoch: self.front_epochs.of(probe.hash),
            l1_writes: self.writes.noted(probe.hash),
        })
    }

    fn count_l2_error(&self) {
        Counters::add(&self.counters.l2_errors);
    }

    fn id(&self) -> usize {
        match self.alias.get() {
            Some(&alias) => alias,
            None => self.address(),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// The steps of a miss that may wait, for each kind of [`Io`], as functions that are not
/// generic and whose futures are polled here: their code is compiled once, in this crate.
/// (A crate that awaited the future of an `async fn` of this crate would generate its state
/// machine, and every generic step it awaits, again: only functions that are not generic are
/// shared between crates, and a future's `poll` is not one.) A sync call runs its steps to
/// their end right away; an async call's steps are boxed, behind a `dyn Future`.
impl Layers {
    /// A sync call past its front table, to its end: `Some` value to answer with, or `None`
    /// when the answer is what `body` returned. `body` runs the function's body (if this
    /// caller leads) and gives the part of its result to cache.
    fn miss_blocking(
        &'static self,
        call: Call<'_>,
        body: &mut dyn FnMut() -> Option<Value>,
    ) -> Option<Value> {
        let answer = 'answer: {
            let ahead = match self.prepare_start(&call) {
                Start::Answered(value) => break 'answer Some(value),
                Start::Ahead(ahead) => ahead,
            };
            let work = match self.rest_blocking(&call, ahead) {
                Step::Answer(value) => break 'answer Some(value),
                Step::Compute(work) => work,
            };
            let started = self.began(&call);
            let value = body();
            self.computed_blocking(&call, work, value, started)
        };
        call.trace.finish(call.budget.on_store());
        answer
    }

    fn rest_blocking(&'static self, call: &Call<'_>, ahead: Ahead) -> Step {
        io::block_on(self.prepare_rest(&Blocking, call, ahead))
    }

    fn rest_async<'a>(&'static self, call: &'a Call<'a>, ahead: Ahead) -> Boxed<'a, Step> {
        Box::pin(self.prepare_rest(&NonBlocking, call, ahead))
    }

    fn computed_blocking(
        &'static self,
        call: &Call<'_>,
        work: Box<Work>,
        value: Option<Value>,
        started: Instant,
    ) -> Option<Value> {
        io::block_on(self.computed(&Blocking, call, work, value, started))
    }

    fn computed_async<'a>(
        &'static self,
        call: &'a Call<'a>,
        work: Box<Work>,
        value: Option<Value>,
        started: Instant,
    ) -> Boxed<'a, Option<Value>> {
        Box::pin(self.computed(&NonBlocking, call, work, value, started))
    }

    /// [`prepare`](Self::prepare) of an async call.
    fn prepare_async<'a>(&'static self, call: &'a Call<'a>) -> Boxed<'a, Step> {
        Box::pin(self.prepare(&NonBlocking, call))
    }
}

/// The future of a step of the layers, as an async call awaits it (see above).
type Boxed<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;
