//! The read and write path across the layers, for one `#[cached]` function.
//!
//! ```text
//! call(args)
//!   front table of this thread (exact TTL + epoch)   hit -> return
//!   L1 (moka)                                        hit -> fill front, return
//!   preload scope of this thread/task                hit -> decode, backfill L1, return
//!   single flight on the key; the leader then:
//!     L2 GET -> decode -> backfill L1 with the entry's remaining TTL -> return
//!     body -> L1 insert -> release waiters -> L2 SET with TTL (fail-open) -> return
//! ```
//!
//! The sync and async paths share every step but the waiting and the Redis requests.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::{Duration, Instant};

use crate::clock;
use crate::codec::{self, DecodeError, DefaultCodec, Header};
use crate::config::{self, Installed};
use crate::flight::{Flights, Joined};
use crate::front::{self, Front};
use crate::key::{self, Key, KeyBuf};
use crate::outcome::Outcome;
use crate::scope::{self, Preloaded};
use crate::stats::{Counters, Stats};
use crate::store::local::{Entry, LocalStore};
use crate::store::redis::{self as l2, Failure, Request};

/// What a [`Key`] needs from the function it belongs to.
pub trait KeyOwner: Send + Sync {
    /// The cache name.
    fn name(&self) -> &str;
    /// The `version` argument.
    fn version(&self) -> u32;
    /// `true` for `local` functions, which never use Redis.
    fn is_local(&self) -> bool;
    /// Whether L1 holds a live entry for these arguments.
    fn holds(&self, args: &str) -> bool;
    /// Counts a Redis failure against this function.
    fn count_l2_error(&self);
    /// An identity for maps keyed by function.
    fn id(&self) -> usize;
}

/// How a function's values go to and from bytes (absent for `local` functions, which need no
/// serde bounds).
pub struct RemoteCodec<V> {
    encode: fn(&V, Header) -> Result<Vec<u8>, String>,
    decode: DecodeFn<V>,
}

/// Bytes from Redis to a value and its header.
type DecodeFn<V> = fn(&[u8]) -> Result<(V, Header), DecodeError>;

impl<V> RemoteCodec<V>
where
    V: serde::Serialize + serde::de::DeserializeOwned,
{
    /// The default codec for `V`.
    pub fn serde() -> Self {
        RemoteCodec {
            encode: codec::encode::<V, DefaultCodec>,
            decode: codec::decode::<V, DefaultCodec>,
        }
    }
}

/// The fixed settings of one function, from its `#[cached(..)]` arguments.
pub struct Settings {
    /// Cache name (default: module path and function name).
    pub name: String,
    /// Part of every key; bump it to orphan old entries.
    pub version: u32,
    /// Lifetime of an entry; `None` = until evicted.
    pub ttl: Option<Duration>,
    /// Most entries kept in L1.
    pub capacity: u64,
}

/// Everything one `#[cached]` function keeps: its L1, flights, counters and settings.
pub struct CachedFn<V> {
    settings: Settings,
    remote: Option<RemoteCodec<V>>,
    l1: LocalStore<V>,
    epoch: AtomicU64,
    flights: Flights,
    counters: Counters,
}

/// The thread-local front table type generated code declares.
pub type FrontKey<V> = LocalKey<Front<V>>;

/// What the leader of a flight does after L1 and the scope missed.
enum Plan {
    /// Ask Redis under this remote key, then compute on a miss.
    AskRemote(Arc<Installed>, String),
    /// Compute, then write to Redis under this key (the scope already knows it is absent).
    ComputeAndWrite(Arc<Installed>, String),
    /// L1 only.
    Compute,
}

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// A function's cache; `remote` is `None` for `local` functions.
    pub fn new(settings: Settings, remote: Option<RemoteCodec<V>>) -> Self {
        CachedFn {
            l1: LocalStore::new(settings.capacity),
            settings,
            remote,
            epoch: AtomicU64::new(0),
            flights: Flights::new(),
            counters: Counters::default(),
        }
    }

    /// The key of the call whose arguments encoded to `args`.
    pub fn key(&'static self, args: KeyBuf) -> Key {
        Key::new(self, args.as_str())
    }

    /// Counters since the process started.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// A sync call: answers from the layers or runs `body` once per key.
    #[inline]
    pub fn call<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: KeyBuf,
        body: impl FnOnce() -> O,
    ) -> O {
        let hash = front::hash(args.as_str());
        match self.front_hit(front, args.as_str(), hash) {
            Some(value) => O::from_cached(value),
            None => self.miss(front, args.as_str(), hash, body),
        }
    }

    /// An async call: answers from the layers or awaits `body` once per key.
    pub async fn call_async<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: KeyBuf,
        body: impl Future<Output = O>,
    ) -> O {
        let hash = front::hash(args.as_str());
        match self.front_hit(front, args.as_str(), hash) {
            Some(value) => O::from_cached(value),
            None => self.miss_async(front, args.as_str(), hash, body).await,
        }
    }

    #[inline]
    fn front_hit(&self, front: &'static FrontKey<V>, args: &str, hash: u64) -> Option<V> {
        let epoch = self.epoch.load(Ordering::Acquire);
        front
            .try_with(|table| table.get(args, hash, epoch))
            .ok()
            .flatten()
    }

    #[inline(never)]
    fn miss<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        body: impl FnOnce() -> O,
    ) -> O {
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(value) = self.l1_hit(front, args, hash, epoch) {
            return O::from_cached(value);
        }
        let plan = match self.plan(front, args, hash, epoch) {
            Ok(plan) => plan,
            Err(value) => return O::from_cached(value),
        };
        loop {
            let leader = match self.flights.join(args, hash) {
                Joined::Waiter(waiter) => {
                    waiter.wait();
                    match self.l1_hit(front, args, hash, epoch) {
                        Some(value) => return O::from_cached(value),
                        None => continue,
                    }
                }
                Joined::Leader(leader) => leader,
            };
            if let Some(value) = self.l1_hit(front, args, hash, epoch) {
                return O::from_cached(value);
            }
            if let Plan::AskRemote(installed, remote_key) = &plan {
                let answer = self.remote_run::<Option<Vec<u8>>>(installed, &l2::get(remote_key));
                if let Some(value) = self.accept_remote(front, args, hash, epoch, answer) {
                    return O::from_cached(value);
                }
            }
            let started = Instant::now();
            let out = body();
            let write = self.store_computed(front, args, hash, epoch, &plan, &out, started);
            drop(leader);
            if let Some((installed, request)) = write {
                self.remote_run::<()>(&installed, &request);
            }
            return out;
        }
    }

    async fn miss_async<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        body: impl Future<Output = O>,
    ) -> O {
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(value) = self.l1_hit(front, args, hash, epoch) {
            return O::from_cached(value);
        }
        let plan = match self.plan(front, args, hash, epoch) {
            Ok(plan) => plan,
            Err(value) => return O::from_cached(value),
        };
        loop {
            let leader = match self.flights.join(args, hash) {
                Joined::Waiter(waiter) => {
                    waiter.wait_async().await;
                    match self.l1_hit(front, args, hash, epoch) {
                        Some(value) => return O::from_cached(value),
                        None => continue,
                    }
                }
                Joined::Leader(leader) => leader,
            };
            if let Some(value) = self.l1_hit(front, args, hash, epoch) {
                return O::from_cached(value);
            }
            if let Plan::AskRemote(installed, remote_key) = &plan {
                let answer = self
                    .remote_run_async::<Option<Vec<u8>>>(installed, &l2::get(remote_key))
                    .await;
                if let Some(value) = self.accept_remote(front, args, hash, epoch, answer) {
                    return O::from_cached(value);
                }
            }
            let started = Instant::now();
            let out = body.await;
            let write = self.store_computed(front, args, hash, epoch, &plan, &out, started);
            drop(leader);
            if let Some((installed, request)) = write {
                self.remote_run_async::<()>(&installed, &request).await;
            }
            return out;
        }
    }

    /// A live L1 entry, copied into this thread's front table.
    fn l1_hit(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        epoch: u64,
    ) -> Option<V> {
        let entry = self.l1.get(args)?;
        Counters::add(&self.counters.l1_hits);
        self.fill_front(front, args, hash, epoch, &entry);
        Some(entry.value)
    }

    fn fill_front(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        epoch: u64,
        entry: &Entry<V>,
    ) {
        let fill = front::Fill {
            value: entry.value.clone(),
            deadline: entry.deadline,
            epoch,
        };
        let _ = front
            .try_with(|table| table.put(args, hash, fill, &self.counters, self.settings.capacity));
    }

    /// Decides what the leader will do; answers at once (as `Err`) from a preload scope.
    fn plan(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        epoch: u64,
    ) -> Result<Plan, V> {
        if self.remote.is_none() {
            return Ok(Plan::Compute);
        }
        let Some(installed) = config::current().filter(|c| c.remote.is_some()) else {
            return Ok(Plan::Compute);
        };
        match scope::find(self.id(), args) {
            Some(Preloaded::Present(bytes)) => {
                if let Some(value) = self.decode_into_l1(front, args, hash, epoch, &bytes) {
                    Counters::add(&self.counters.scope_hits);
                    return Err(value);
                }
                let remote_key = self.remote_key(&installed, args);
                Ok(Plan::ComputeAndWrite(installed, remote_key))
            }
            Some(Preloaded::Absent) => {
                let remote_key = self.remote_key(&installed, args);
                Ok(Plan::ComputeAndWrite(installed, remote_key))
            }
            None => {
                let remote_key = self.remote_key(&installed, args);
                Ok(Plan::AskRemote(installed, remote_key))
            }
        }
    }

    fn remote_key(&self, installed: &Installed, args: &str) -> String {
        key::remote_key(
            &installed.prefix,
            &self.settings.name,
            self.settings.version,
            args,
        )
    }

    /// Uses an L2 answer: a decodable, unexpired value is backfilled and returned.
    fn accept_remote(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        epoch: u64,
        answer: Option<Option<Vec<u8>>>,
    ) -> Option<V> {
        let bytes = answer.flatten()?;
        let value = self.decode_into_l1(front, args, hash, epoch, &bytes)?;
        Counters::add(&self.counters.l2_hits);
        Some(value)
    }

    /// Decodes stored bytes and backfills L1 with the entry's remaining lifetime.
    fn decode_into_l1(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        epoch: u64,
        bytes: &[u8],
    ) -> Option<V> {
        let remote = self.remote.as_ref()?;
        let (value, header) = match (remote.decode)(bytes) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::debug!(name = %self.settings.name, %error, "treating an undecodable value as a miss");
                Counters::add(&self.counters.decode_errors);
                return None;
            }
        };
        let deadline = match header.expires_at_ms {
            None => u64::MAX,
            Some(at) => {
                let left = at.checked_sub(clock::unix_millis()).filter(|&ms| ms > 0)?;
                clock::deadline_after(Some(Duration::from_millis(left)))
            }
        };
        let entry = Entry { value, deadline };
        self.l1.insert(args, entry.clone());
        self.fill_front(front, args, hash, epoch, &entry);
        Some(entry.value)
    }

    /// After the body ran: counts it, stores a cacheable result in L1 and returns the L2 write
    /// to send. Nothing is stored if the function was invalidated meanwhile (the value may
    /// predate the invalidation).
    #[allow(clippy::too_many_arguments)]
    fn store_computed<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &str,
        hash: u64,
        epoch: u64,
        plan: &Plan,
        out: &O,
        started: Instant,
    ) -> Option<(Arc<Installed>, Request)> {
        Counters::add(&self.counters.misses);
        let value = out.cacheable()?;
        if self.epoch.load(Ordering::Acquire) != epoch {
            return None;
        }
        let entry = Entry {
            value: value.clone(),
            deadline: clock::deadline_after(self.settings.ttl),
        };
        self.l1.insert(args, entry.clone());
        self.fill_front(front, args, hash, epoch, &entry);
        let (installed, remote_key) = match plan {
            Plan::AskRemote(installed, key) | Plan::ComputeAndWrite(installed, key) => {
                (installed, key)
            }
            Plan::Compute => return None,
        };
        let remote = self.remote.as_ref()?;
        let header = Header {
            expires_at_ms: self
                .settings
                .ttl
                .map(|ttl| clock::unix_millis() + ttl.as_millis() as u64),
            compute_time: started.elapsed(),
        };
        match (remote.encode)(value, header) {
            Ok(bytes) => Some((
                installed.clone(),
                l2::set(remote_key, &bytes, self.settings.ttl),
            )),
            Err(error) => {
                tracing::warn!(name = %self.settings.name, %error, "value could not be encoded for redis");
                None
            }
        }
    }

    fn remote_run<T: redis::FromRedisValue>(
        &self,
        installed: &Installed,
        request: &Request,
    ) -> Option<T> {
        let store = installed.remote.as_ref()?;
        self.judge(store.run(request))
    }

    async fn remote_run_async<T: redis::FromRedisValue>(
        &self,
        installed: &Installed,
        request: &Request,
    ) -> Option<T> {
        let store = installed.remote.as_ref()?;
        self.judge(store.run_async(request).await)
    }

    fn judge<T>(&self, result: Result<T, Failure>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(failure) => {
                tracing::debug!(name = %self.settings.name, %failure, "falling back to computing");
                Counters::add(&self.counters.l2_errors);
                None
            }
        }
    }

    /// Removes the entry for `args` from L1 (and every thread's front) and returns the L2
    /// delete to send, if this function uses Redis.
    fn forget(&self, args: &str) -> Option<(Arc<Installed>, Request)> {
        self.l1.remove(args);
        // After the removal, so that no front slot can be refilled under the new epoch with
        // the removed value (see `front`).
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.remote.as_ref()?;
        let installed = config::current().filter(|c| c.remote.is_some())?;
        let request = l2::del(&self.remote_key(&installed, args));
        Some((installed, request))
    }

    /// Removes one entry from both layers.
    pub fn invalidate(&self, args: KeyBuf) {
        if let Some((installed, request)) = self.forget(args.as_str()) {
            self.remote_run::<()>(&installed, &request);
        }
    }

    /// Removes one entry from both layers, without blocking the runtime.
    pub async fn invalidate_async(&self, args: KeyBuf) {
        if let Some((installed, request)) = self.forget(args.as_str()) {
            self.remote_run_async::<()>(&installed, &request).await;
        }
    }

    /// Empties this function's L1 (Redis is left alone).
    pub fn clear_local(&self) {
        self.l1.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
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

    fn holds(&self, args: &str) -> bool {
        self.l1.contains(args)
    }

    fn count_l2_error(&self) {
        Counters::add(&self.counters.l2_errors);
    }

    fn id(&self) -> usize {
        self as *const Self as *const () as usize
    }
}
