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

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::{Duration, Instant};

use crate::clock;
use crate::codec::{self, DecodeError, DefaultCodec, Header};
use crate::coherence::{self, Change, Coherent, Stamps};
use crate::doorkeeper::Doorkeeper;
use crate::flight::{Flights, Joined, Leader};
use crate::freshness::{Lifetime, Verdict};
use crate::front::{self, Epochs, Front, Lookup, Probe};
use crate::io::{self, Blocking, Io, NonBlocking};
use crate::key::{Key, KeyBuf, KeyOwner};
use crate::lock::{self, Lock};
use crate::mode::{self, Mode};
use crate::outcome::Outcome;
use crate::scope::{self, Preloaded};
use crate::stats::{Counters, Stats};
use crate::store::local::{Bound, Entry, LocalStore, Policy, SizeFn};
use crate::store::{Budget, Op, Reply, SharedStore};
use crate::sync::background;

mod batch;
mod fn_core;
mod route;
mod shortcut;
mod trace;
mod warm;
pub use batch::BatchOutcome;
use fn_core::FnCore;
use route::Route;
pub use shortcut::{Pending, Probed};
use trace::{Asked, Ending, Trace};

/// How a function's values go to and from bytes (absent for `local` functions, which need no
/// serde bounds).
pub struct RemoteCodec<V> {
    encode: EncodeFn<V>,
    decode: DecodeFn<V>,
    /// The fingerprint of `V` that `encode` writes and `decode` expects, computed once
    /// ([`codec::fingerprint`]).
    fingerprint: u64,
    /// The length `encode` writes, which an L1 bounded by `max_bytes` weighs values by.
    size: SizeFn<V>,
}

/// A value and its header to bytes for Redis, under the value type's fingerprint.
type EncodeFn<V> = fn(&V, Header, u64) -> Result<Vec<u8>, String>;

/// Bytes from Redis to a value and its header, checked against the value type's fingerprint.
type DecodeFn<V> = fn(&[u8], u64) -> Result<(V, Header), DecodeError>;

impl<V> RemoteCodec<V>
where
    V: serde::Serialize + serde::de::DeserializeOwned,
{
    /// The default codec for `V`.
    pub fn serde() -> Self {
        RemoteCodec {
            encode: codec::encode_fingerprinted::<V, DefaultCodec>,
            decode: codec::decode_fingerprinted::<V, DefaultCodec>,
            fingerprint: codec::fingerprint::<V>(),
            size: codec::encoded_len::<V, DefaultCodec>,
        }
    }
}

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

/// Everything one `#[cached]` function keeps: its L1, flights, counters and settings.
pub struct CachedFn<V> {
    /// What does not depend on the value type (see `fn_core`); its fields and methods are
    /// reached through `Deref`.
    core: FnCore,
    remote: Option<RemoteCodec<V>>,
    l1: LocalStore<V>,
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
    value_ttl: Option<ValueTtl<V>>,
    /// The identity preload scopes know this cache by, when it is not its address: a
    /// `cached_block!` is known by its name's owner (see `block`).
    alias: std::sync::OnceLock<usize>,
    /// Which keys a full L1 admits from preload scopes (see `doorkeeper`).
    doorkeeper: Doorkeeper,
    /// This function's front thread-local (a `FrontKey<V>`), once a call filled a slot
    /// (see `warm`).
    front: std::sync::OnceLock<&'static (dyn std::any::Any + Send + Sync)>,
}

/// A lifetime decided by the value itself; `None` keeps the function's `ttl`.
pub type ValueTtl<V> = fn(&V) -> Option<Duration>;

impl<V> std::ops::Deref for CachedFn<V> {
    type Target = FnCore;

    fn deref(&self) -> &FnCore {
        &self.core
    }
}

impl<V> CachedFn<V> {
    fn address(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Runs `call` (a call of this function) so that it runs the body now and stores the
    /// result, whatever the layers hold (`f::refresh`); other callers keep the current value
    /// until then, and the calls the body makes run as usual.
    pub fn run_refreshing<R>(&self, call: impl FnOnce() -> R) -> R {
        mode::with(Mode::Refresh(self.address()), call)
    }

    /// [`run_refreshing`](Self::run_refreshing) for an async call.
    pub async fn run_refreshing_async<F: Future>(&self, call: F) -> F::Output {
        mode::InMode::new(Mode::Refresh(self.address()), call).await
    }

    /// Runs `call` (a call of this function) so that it runs the body and reads and stores
    /// nothing (`f::uncached`); the calls the body makes run as usual.
    pub fn run_uncached<R>(&self, call: impl FnOnce() -> R) -> R {
        mode::with(Mode::Uncached(self.address()), call)
    }

    /// [`run_uncached`](Self::run_uncached) for an async call.
    pub async fn run_uncached_async<F: Future>(&self, call: F) -> F::Output {
        mode::InMode::new(Mode::Uncached(self.address()), call).await
    }

    /// Bounds L1 by the encoded size of its values and keys (`max_bytes`) instead of by
    /// `capacity`. `size` weighs a value; `None` weighs it with the function's codec (a
    /// function without one, `local`, must give it).
    pub fn with_max_bytes(mut self, max_bytes: u64, size: Option<fn(&V) -> usize>) -> Self
    where
        V: Clone + Send + Sync + 'static,
    {
        let size = size
            .or(self.remote.as_ref().map(|codec| codec.size))
            .unwrap_or(|_| 0);
        let bound = Bound::Bytes(max_bytes, size);
        self.l1 = LocalStore::new(bound, self.settings.idle, self.settings.policy);
        self
    }

    /// Lets each value decide its own lifetime (see [`ValueTtl`]).
    pub fn with_value_ttl(mut self, value_ttl: ValueTtl<V>) -> Self {
        self.value_ttl = Some(value_ttl);
        self
    }
}

/// The thread-local front table type generated code declares.
pub type FrontKey<V> = LocalKey<Front<V>>;

/// Where one call's key lives, computed once per call.
struct Call<'a, V: 'static> {
    /// This thread's front table (`None` for companions, which have none to fill).
    front: Option<&'static FrontKey<V>>,
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

impl<V> Call<'_, V> {
    fn born(&self) -> u64 {
        self.born.load(Ordering::Relaxed)
    }
}

/// What became of stored bytes read from Redis or a preload scope.
enum Backfill<V> {
    /// A fresh value, now in L1.
    Fresh(V),
    /// Servable while one caller refreshes it (stale, or picked for early refresh); in L1.
    Servable(V),
    /// Past even its stale window; dropped.
    Expired,
    /// Not a value of this function (counted in `decode_errors`).
    Undecodable,
}

/// Where [`CachedFn::prepare`] ended.
enum Step<V: 'static> {
    /// A value to return.
    Answer(V),
    /// This caller leads: compute.
    Compute(Work<V>),
}

/// Where [`CachedFn::prepare_start`] left a call.
enum Start<V: 'static> {
    /// L1 or a preload scope answered.
    Answered(V),
    /// On to the single flight, the shared store and the lock.
    Ahead(Ahead<V>),
}

/// What the first part of `prepare` found out, for the rest.
struct Ahead<V: 'static> {
    /// A value to hand out while another caller refreshes it.
    servable: Option<V>,
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
struct Work<V: 'static> {
    leader: Leader<'static>,
    remote: Option<Remote>,
    lock: Option<lock::Owned>,
    /// The stale (or about to expire) value, when this computation is a refresh.
    servable: Option<V>,
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

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// A function's cache; `remote` is `None` for `local` functions.
    pub fn new(settings: Settings, remote: Option<RemoteCodec<V>>) -> Self {
        CachedFn {
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
            front: std::sync::OnceLock::new(),
        }
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

    /// A detached async call under a [`Mode`]: bypassed (the body alone) or a forced refresh.
    async fn unusual_async<O: Outcome<V>>(
        &'static self,
        mode: Mode,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        probe: Probe,
        body: impl Future<Output = O>,
    ) -> O {
        match mode {
            Mode::Refresh(_) => {
                let call = self.forced_refresh(front, args.as_str(), probe);
                self.routed(&NonBlocking, Route::Miss(call), body).await
            }
            _ => body.await,
        }
    }

    /// The call site of `f::refresh(..)`: it computes now, whatever the layers hold.
    fn forced_refresh<'a>(
        &self,
        front: &'static FrontKey<V>,
        args: &'a str,
        probe: Probe,
    ) -> Call<'a, V> {
        let mut call = self.call_site(front, args, probe, Lookup::Miss);
        call.force_refresh = true;
        call
    }

    #[inline]
    fn front_hit(&self, front: &'static FrontKey<V>, probe: &Probe, args: &str) -> Lookup<V> {
        let epoch = self.front_epochs.of(probe.hash);
        front
            .try_with(|table| table.get(probe, args, epoch))
            .unwrap_or(Lookup::Miss)
    }

    /// A sync call's miss ([`routed`](Self::routed)), run to its end on this thread. The body is passed
    /// on as a `dyn FnMut`, so that the miss path's code is shared by every function with the
    /// same value and return types instead of being generated again for each body (most of
    /// what `#[cached]` costs at compile time).
    fn blocking_miss<O: Outcome<V>>(
        &'static self,
        call: Call<'_, V>,
        body: impl FnOnce() -> O,
    ) -> O {
        let mut body = Some(body);
        let mut run = move || (body.take().expect("a body runs once per call"))();
        self.blocking_miss_shared(call, &mut run)
    }

    #[inline(never)]
    fn blocking_miss_shared<O: Outcome<V>>(
        &'static self,
        call: Call<'_, V>,
        body: &mut dyn FnMut() -> O,
    ) -> O {
        io::block_on(self.routed(&Blocking, Route::Miss(call), async move { body() }))
    }

    fn call_site<'a>(
        &self,
        front: &'static FrontKey<V>,
        args: &'a str,
        probe: Probe,
        lookup: Lookup<V>,
    ) -> Call<'a, V> {
        Call {
            front: Some(front),
            args,
            probe,
            epoch: self.epoch.load(Ordering::Acquire),
            front_epoch: self.front_epochs.of(probe.hash),
            picked_for_refresh: match lookup {
                Lookup::PickedForRefresh(deadline) => Some(deadline),
                _ => None,
            },
            budget: Budget::default(),
            force_refresh: false,
            born: AtomicU64::new(0),
            trace: Trace::default(),
        }
    }

    /// An async call whose refreshes run in a spawned task: a caller that finds a stale value
    /// (or is picked for early refresh) returns it at once and the refresh goes on in the
    /// background. Generated for `stale` / `refresh = early` functions whose arguments are
    /// owned, so that the body can outlive the call.
    pub async fn call_async_detached<O, F>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static,
    {
        let probe = Probe::of(args);
        let mode = mode::for_call(self.address());
        if mode != Mode::Normal {
            return self.unusual_async(mode, front, args, probe, body).await;
        }
        let lookup = match self.front_hit(front, &probe, args.as_str()) {
            Lookup::Hit(value) => return O::from_cached(value),
            lookup => lookup,
        };
        self.detached_miss(front, args, probe, lookup, body).await
    }

    /// [`call_async_detached`](Self::call_async_detached) after a front-table miss.
    async fn detached_miss<O, F>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        probe: Probe,
        lookup: Lookup<V>,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static,
    {
        let call = self.call_site(front, args.as_str(), probe, lookup);
        let mut work = match self.prepare(&NonBlocking, &call).await {
            Step::Answer(value) => {
                call.trace.finish(call.budget.on_store());
                return O::from_cached(value);
            }
            Step::Compute(work) => work,
        };
        let (Some(value), Some(runtime)) = (work.servable.take(), background()) else {
            let out = self.compute(&NonBlocking, &call, work, body).await;
            call.trace.finish(call.budget.on_store());
            return out;
        };
        let (args, probe, epoch, front_epoch) = (
            call.args.to_owned(),
            call.probe,
            call.epoch,
            call.front_epoch,
        );
        let (picked_for_refresh, born) = (call.picked_for_refresh, call.born());
        runtime.spawn(async move {
            let call = Call {
                front: Some(front),
                args: &args,
                probe,
                epoch,
                front_epoch,
                picked_for_refresh,
                budget: Budget::default(),
                force_refresh: false,
                born: AtomicU64::new(born),
                trace: Trace::default(),
            };
            self.compute(&NonBlocking, &call, work, body).await;
            call.trace.finish(call.budget.on_store());
        });
        call.trace.ended(Ending::Stale);
        call.trace.finish(call.budget.on_store());
        O::from_cached(self.count_hit(value))
    }

    /// The lookups after a front-table miss: L1, the preload scope, the single flight, Redis,
    /// the lock. Ends with an answer, or with this caller leading a computation.
    ///
    /// L1 comes before the scope: a value another caller put there since the scope's MGET is
    /// newer than the scope's; the lookup is also the read moka's admission policy counts, so
    /// a backfill from a scope is admitted into a full L1 as readily as one from a GET.
    async fn prepare<I: Io>(&'static self, io: &I, call: &Call<'_, V>) -> Step<V> {
        match self.prepare_start(call) {
            Start::Answered(value) => Step::Answer(value),
            Start::Ahead(ahead) => self.prepare_rest(io, call, ahead).await,
        }
    }

    /// The part of [`prepare`](Self::prepare) that waits on nothing: L1 and the preload
    /// scope. Most calls past the front table end here, so [`routed`](Self::routed) awaits
    /// the rest, the part that may wait, only when needed, and in a box of its own: the
    /// future of every cached `async fn` stays small.
    fn prepare_start(&'static self, call: &Call<'_, V>) -> Start<V> {
        self.list();
        // A value to hand out while another caller refreshes it.
        let mut servable = None;
        let landed = self.flights.landed(call.probe.hash);
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
        // `f::refresh(..)`: neither the scope nor the shared store is asked.
        let preloaded = if call.force_refresh {
            Preloaded::Unknown
        } else {
            self.preloaded(call)
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
    async fn prepare_rest<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_, V>,
        ahead: Ahead<V>,
    ) -> Step<V> {
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
            return Step::Compute(Work {
                leader,
                remote,
                lock,
                replaces: servable.is_some() || call.force_refresh,
                servable,
            });
        }
    }

    /// Runs the body as the leader, stores the result, releases the waiters and the lock.
    async fn compute<I: Io, O: Outcome<V>>(
        &'static self,
        io: &I,
        call: &Call<'_, V>,
        work: Work<V>,
        body: impl Future<Output = O>,
    ) -> O {
        let started = self.began(call);
        let out = body.await;
        self.computed(io, call, work, out, started).await
    }

    /// [`compute`](Self::compute) once the body returned `out`. A function of its own, not
    /// generic over the body: every `#[cached]` function with the same value and return types
    /// shares its code (compile time).
    async fn computed<I: Io, O: Outcome<V>>(
        &'static self,
        io: &I,
        call: &Call<'_, V>,
        work: Work<V>,
        out: O,
        started: Instant,
    ) -> O {
        let Work {
            leader,
            remote,
            lock,
            replaces,
            ..
        } = work;
        call.trace.computed(&self.label, started.elapsed());
        call.trace.ended(match out.cacheable() {
            Some(_) => Ending::Computed,
            None => Ending::Uncacheable,
        });
        let write = self.store_computed(call, remote.as_ref(), &out, started, replaces);
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
        if out.cacheable().is_none() && self.settings.lifetime.stale_if_error.is_some() {
            if let Some(value) = self.fallback(io, call, remote.as_ref()).await {
                Counters::add(&self.counters.stale_served);
                call.trace.ended(Ending::StaleIfError);
                tracing::debug!(
                    name = %self.settings.name,
                    "the body failed; serving the last value within `stale_if_error`"
                );
                return O::from_cached(value);
            }
        }
        out
    }

    /// A value that expired at most `stale_if_error` ago, to return instead of a failed
    /// body's result: the one L1 keeps, or else the shared store's (which keeps entries that
    /// long past their expiry).
    async fn fallback<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_, V>,
        remote: Option<&Remote>,
    ) -> Option<V> {
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
    fn replaced_if(&self, refreshing: bool, call: &Call<'_, V>, value: V) -> V {
        if refreshing {
            self.front_epochs.bump(call.probe.hash);
        }
        value
    }

    /// Serves an L1 entry: counts the hit and shares its value with this thread's front table.
    fn l1_served(&'static self, call: &Call<'_, V>, entry: Entry<V>) -> V {
        self.fill_front(call, &entry);
        self.count_hit(entry.into_value())
    }

    fn count_hit(&self, value: V) -> V {
        Counters::add(&self.counters.l1_hits);
        value
    }

    /// A fresh L1 entry (one another caller may just have stored).
    fn fresh_in_l1(&'static self, call: &Call<'_, V>) -> Option<V> {
        let entry = self.l1.get(call.args)?;
        (!clock::expired(entry.deadline)).then(|| self.l1_served(call, entry))
    }

    /// An L1 value that may still be served while it is refreshed (stale, or picked for
    /// early refresh).
    fn servable_in_l1(&self, call: &Call<'_, V>) -> Option<V> {
        let entry = self.l1.get(call.args)?;
        (entry.verdict() != Verdict::Gone).then(|| entry.into_value())
    }

    fn fill_front(&'static self, call: &Call<'_, V>, entry: &Entry<V>) {
        let fill = front::Fill {
            value: entry.value.clone(),
            deadline: entry.deadline,
            delta_beta: entry.delta_beta,
            epoch: call.front_epoch,
        };
        let Some(front) = call.front else {
            return;
        };
        self.remember_front(front);
        let _ = front.try_with(|table| {
            table.put(
                &call.probe,
                call.args,
                fill,
                &self.counters,
                self.settings.capacity,
            )
        });
    }

    /// What a preload scope holds for this call; a value found there is backfilled into L1,
    /// and counted when served.
    fn preloaded(&'static self, call: &Call<'_, V>) -> Preloaded<Backfill<V>> {
        if self.remote.is_none() {
            return Preloaded::Unknown;
        }
        let found = scope::serve(self.id(), call.epoch, call.args, |bytes, asked_at| {
            // A full L1 takes a scope's value only on its key's second sighting (see
            // `doorkeeper`); the value is served either way.
            let keep = !self.l1.is_full() || self.doorkeeper.seen_before(call.probe.hash);
            self.decode(call, bytes, asked_at, keep)
        });
        if let Preloaded::Served(Backfill::Fresh(_)) = found {
            Counters::add(&self.counters.scope_hits);
        }
        found
    }

    /// The shared-store side of this call, if any. `ask_first`: read the key before
    /// computing.
    fn remote_for(&'static self, call: &Call<'_, V>, ask_first: bool) -> Option<Remote> {
        self.remote_of(call.args, ask_first)
    }

    /// GETs the key; a decodable, fresh value is backfilled and returned.
    async fn read_remote<I: Io>(
        &'static self,
        io: &I,
        call: &Call<'_, V>,
        remote: &Remote,
    ) -> Option<V> {
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
        call: &Call<'_, V>,
        remote: &Remote,
        lease: Duration,
        have_servable: bool,
    ) -> Lock<V> {
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
    fn decode_into_l1(
        &'static self,
        call: &Call<'_, V>,
        bytes: &[u8],
        asked_at: u64,
    ) -> Backfill<V> {
        self.decode(call, bytes, asked_at, true)
    }

    /// [`decode_into_l1`](Self::decode_into_l1), or with `keep` false the same answer with
    /// nothing kept in L1 (a value the doorkeeper turned away).
    fn decode(
        &'static self,
        call: &Call<'_, V>,
        bytes: &[u8],
        asked_at: u64,
        keep: bool,
    ) -> Backfill<V> {
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
    fn store_computed<O: Outcome<V>>(
        &'static self,
        call: &Call<'_, V>,
        remote: Option<&Remote>,
        out: &O,
        started: Instant,
        replaces: bool,
    ) -> Option<Write> {
        Counters::add(&self.counters.misses);
        let value = out.cacheable()?;
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
        call: &Call<'_, V>,
        remote: Option<&Remote>,
        value: &V,
        compute_time: Duration,
        replaces: bool,
    ) -> Option<Write> {
        let lifetime = &self.settings.lifetime;
        let ttl = self.value_ttl.and_then(|of| of(value)).or(lifetime.ttl);
        let times = lifetime.new_entry_for(ttl, compute_time);
        let entry = Entry::new(value.clone(), &times, call.born());
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
        match (codec.encode)(value, header, codec.fingerprint) {
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
    fn keep(&'static self, call: &Call<'_, V>, entry: Entry<V>) -> bool {
        if !self.registered.load(Ordering::Relaxed) && !self.registered.swap(true, Ordering::AcqRel)
        {
            coherence::register(self);
        }
        let (hash, born) = (call.probe.hash, entry.born);
        if self.stamps.last(hash) >= born {
            return false;
        }
        self.l1.insert(call.args, entry);
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

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// A call of a companion (no front table), for the key with these encoded arguments.
    fn companion_call<'a>(&self, args: &'a KeyBuf) -> Call<'a, V> {
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
    pub fn peek(&'static self, args: KeyBuf) -> Option<V> {
        io::block_on(self.peek_with(&Blocking, &args))
    }

    /// [`peek`](Self::peek) without blocking the runtime.
    pub async fn peek_async(&'static self, args: KeyBuf) -> Option<V> {
        self.peek_with(&NonBlocking, &args).await
    }

    async fn peek_with<I: Io>(&'static self, io: &I, args: &KeyBuf) -> Option<V> {
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
    pub fn put(&'static self, args: KeyBuf, value: V) {
        io::block_on(self.put_with(&Blocking, &args, value));
    }

    /// [`put`](Self::put) without blocking the runtime.
    pub async fn put_async(&'static self, args: KeyBuf, value: V) {
        self.put_with(&NonBlocking, &args, value).await;
    }

    async fn put_with<I: Io>(&'static self, io: &I, args: &KeyBuf, value: V) {
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
impl<V: Clone + Send + Sync + 'static> Coherent for CachedFn<V> {
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

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// Puts this function in the process's list on its first call past the front table.
    pub(crate) fn list(&'static self) {
        if !self.listed.load(Ordering::Relaxed) && !self.listed.swap(true, Ordering::AcqRel) {
            crate::registry::list(self);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> crate::registry::Listed for CachedFn<V> {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn stats(&self) -> Stats {
        CachedFn::stats(self)
    }

    fn entries(&self) -> u64 {
        self.l1.entry_count()
    }

    fn l1_bytes(&self) -> u64 {
        self.l1.weighted_size()
    }

    fn clear_local(&self) {
        CachedFn::clear_local(self)
    }

    fn reset_stats(&self) {
        self.counters.reset()
    }
}

impl<V: Clone + Send + Sync + 'static> KeyOwner for CachedFn<V> {
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

    fn holds(&self, args: &str) -> bool {
        let kept_stale = self.settings.lifetime.keeps_past_deadline();
        self.l1.holds_fresh(args, kept_stale)
    }

    fn fresh_in_front(&self, probe: crate::key::CallProbe, args: &KeyBuf) -> bool {
        self.front_holds(probe, args)
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
