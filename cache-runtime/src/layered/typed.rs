//! The typed shell of a `#[cached]` function: what depends on its value type `V`, and so is
//! generated again for each value type in the crates that use `#[cached]`. That is the front
//! table (a hit hands out a clone of a `V` it holds), the routing of a call, and the step
//! from the layers' [`Value`] (an `Arc<dyn Any>`) back to a `V`. Everything past the front
//! table is [`Layers`], compiled once in this crate; [`CachedFn`] reaches it through `Deref`.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::Duration;

use super::route::Route;
use super::{Call, Codec, Ending, Layers, Settings, Step, Trace, Value, Work};
use crate::codec::{DecodeError, Header};
use crate::front::{self, Front, Lookup, Probe};
use crate::key::{Held, KeyBuf};
use crate::mode::{self, Mode};
use crate::outcome::Outcome;
use crate::stats::Counters;
use crate::store::local::{AnyValue, Bound, LocalStore, SizeFn};
use crate::store::Budget;
use crate::sync::background;

/// How a function's values go to and from bytes (absent for `local` functions, which need no
/// serde bounds).
pub struct RemoteCodec<V> {
    encode: EncodeFn<V>,
    decode: DecodeFn<V>,
    /// The fingerprint of `V` that `encode` writes and `decode` expects, computed once
    /// ([`crate::codec::fingerprint`]).
    fingerprint: u64,
    /// The length `encode` writes, which an L1 bounded by `max_bytes` weighs values by.
    size: fn(&V) -> usize,
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
        use crate::codec::{self, DefaultCodec};
        RemoteCodec {
            encode: codec::encode_fingerprinted::<V, DefaultCodec>,
            decode: codec::decode_fingerprinted::<V, DefaultCodec>,
            fingerprint: codec::fingerprint::<V>(),
            size: codec::encoded_len::<V, DefaultCodec>,
        }
    }
}

impl<V: Send + Sync + 'static> RemoteCodec<V> {
    /// The same functions over [`Value`]s, as the layers call them.
    fn erased(self) -> Codec {
        let RemoteCodec {
            encode,
            decode,
            fingerprint,
            size,
        } = self;
        Codec {
            encode: Box::new(
                move |value, header, fingerprint| match value.downcast_ref::<V>() {
                    Some(value) => encode(value, header, fingerprint),
                    None => Err(NOT_ITS_TYPE.to_owned()),
                },
            ),
            decode: Box::new(move |bytes, fingerprint| {
                let (value, header) = decode(bytes, fingerprint)?;
                Ok((Arc::new(value) as Value, header))
            }),
            fingerprint,
            size: Arc::new(move |value| value.downcast_ref::<V>().map_or(0, size)),
        }
    }
}

/// Never seen: each function's layers hold values of its own type only.
const NOT_ITS_TYPE: &str = "a value of another type than the function's";

/// A lifetime decided by the value itself; `None` keeps the function's `ttl`.
pub type ValueTtl<V> = fn(&V) -> Option<Duration>;

/// The thread-local front table type generated code declares.
pub type FrontKey<V> = LocalKey<Front<V>>;

/// A function's front table (this thread's), as the layers see it: its value type erased.
/// An L1 hit shares the entry's value with it, and a preload scope asks it what it holds
/// (see `warm`).
pub(crate) trait ThreadFront: Sync {
    fn fill(
        &'static self,
        probe: &Probe,
        args: &str,
        fill: front::Fill<AnyValue>,
        counters: &'static Counters,
        capacity: u64,
    );

    /// Whether this thread's table holds a fresh value for the key (`Some`, see
    /// [`Front::fresh`]); with `share`, that value, shared.
    fn fresh(
        &'static self,
        probe: &Probe,
        args: &str,
        epoch: u64,
        share: bool,
    ) -> Option<Option<Held>>;
}

impl<V: Clone + Send + Sync + 'static> ThreadFront for FrontKey<V> {
    fn fill(
        &'static self,
        probe: &Probe,
        args: &str,
        fill: front::Fill<AnyValue>,
        counters: &'static Counters,
        capacity: u64,
    ) {
        let Ok(value) = fill.value.downcast::<V>() else {
            return;
        };
        let fill = front::Fill {
            value,
            deadline: fill.deadline,
            delta_beta: fill.delta_beta,
            epoch: fill.epoch,
        };
        let _ = self.try_with(|table| table.put(probe, args, fill, counters, capacity));
    }

    fn fresh(
        &'static self,
        probe: &Probe,
        args: &str,
        epoch: u64,
        share: bool,
    ) -> Option<Option<Held>> {
        let Ok(Some(found)) = self.try_with(|table| table.fresh(probe, args, epoch, share)) else {
            return None;
        };
        let Some((value, deadline, delta_beta)) = found else {
            return Some(None);
        };
        Some(Some(Held {
            value,
            deadline,
            delta_beta,
        }))
    }
}

/// A value of the layers, for a caller: moved out if nothing else holds it, else copied.
#[inline]
pub(super) fn typed<V: Clone + Send + Sync + 'static>(value: Value) -> V {
    match value.downcast::<V>() {
        Ok(value) => Arc::unwrap_or_clone(value),
        Err(_) => unreachable!("{NOT_ITS_TYPE}"),
    }
}

/// A value returned by a body, as the layers keep it (its one copy).
#[inline]
pub(super) fn shared<V: Clone + Send + Sync + 'static>(value: &V) -> Value {
    Arc::new(value.clone())
}

/// The part of a body's result to cache, as the layers keep it.
#[inline]
pub(super) fn cacheable<V: Clone + Send + Sync + 'static, O: Outcome<V>>(out: &O) -> Option<Value> {
    out.cacheable().map(shared)
}

/// One `#[cached]` function's cache: its typed shell over its [`Layers`].
pub struct CachedFn<V> {
    layers: Layers,
    value: PhantomData<fn() -> V>,
}

impl<V> std::ops::Deref for CachedFn<V> {
    type Target = Layers;

    fn deref(&self) -> &Layers {
        &self.layers
    }
}

impl<V> CachedFn<V> {
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
}

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// A function's cache; `remote` is `None` for `local` functions.
    pub fn new(settings: Settings, remote: Option<RemoteCodec<V>>) -> Self {
        CachedFn {
            layers: Layers::new(settings, remote.map(RemoteCodec::erased)),
            value: PhantomData,
        }
    }

    /// Bounds L1 by the encoded size of its values and keys (`max_bytes`) instead of by
    /// `capacity`. `size` weighs a value; `None` weighs it with the function's codec (a
    /// function without one, `local`, must give it).
    pub fn with_max_bytes(mut self, max_bytes: u64, size: Option<fn(&V) -> usize>) -> Self {
        let size: SizeFn = match (size, &self.layers.remote) {
            (Some(size), _) => {
                Arc::new(move |value: &AnyValue| value.downcast_ref::<V>().map_or(0, size))
            }
            (None, Some(codec)) => Arc::clone(&codec.size),
            (None, None) => Arc::new(|_: &AnyValue| 0),
        };
        let settings = &self.layers.settings;
        let bound = Bound::Bytes(max_bytes, size);
        self.layers.l1 = LocalStore::new(bound, settings.idle, settings.policy);
        self
    }

    /// Lets each value decide its own lifetime (see [`ValueTtl`]).
    pub fn with_value_ttl(mut self, value_ttl: ValueTtl<V>) -> Self {
        self.layers.value_ttl = Some(Box::new(move |value: &AnyValue| {
            value.downcast_ref::<V>().and_then(value_ttl)
        }));
        self
    }

    /// What the layers hold for these arguments, fresh or servable while refreshing, without
    /// running the body: L1, then the shared store (a value found there is backfilled).
    pub fn peek(&'static self, args: KeyBuf) -> Option<V> {
        self.peek_value(&args).map(typed)
    }

    /// [`peek`](Self::peek) without blocking the runtime.
    pub async fn peek_async(&'static self, args: KeyBuf) -> Option<V> {
        self.peek_value_async(&args).await.map(typed)
    }

    /// Stores `value` for these arguments as if the body had returned it: in L1 (replacing
    /// what every thread holds) and in the shared store, with a new lifetime.
    pub fn put(&'static self, args: KeyBuf, value: V) {
        self.put_value(&args, Arc::new(value));
    }

    /// [`put`](Self::put) without blocking the runtime.
    pub async fn put_async(&'static self, args: KeyBuf, value: V) {
        self.put_value_async(&args, Arc::new(value)).await;
    }

    /// A detached async call under a [`Mode`]: bypassed (the body alone) or a forced refresh.
    pub(super) async fn unusual_async<O: Outcome<V>>(
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
                self.routed::<O, _>(Route::Miss(call), body).await
            }
            _ => body.await,
        }
    }

    /// The call site of `f::refresh(..)`: it computes now, whatever the layers hold.
    pub(super) fn forced_refresh<'a>(
        &self,
        front: &'static FrontKey<V>,
        args: &'a str,
        probe: Probe,
    ) -> Call<'a> {
        let mut call = self.call_site(front, args, probe, Lookup::Miss);
        call.force_refresh = true;
        call
    }

    #[inline]
    pub(super) fn front_hit(
        &self,
        front: &'static FrontKey<V>,
        probe: &Probe,
        args: &str,
    ) -> Lookup<V> {
        let epoch = self.front_epochs.of(probe.hash);
        front
            .try_with(|table| table.get(probe, args, epoch))
            .unwrap_or(Lookup::Miss)
    }

    /// A sync call's miss: the steps of [`routed`](Self::routed), run to their end on this
    /// thread, with no future ([`Layers::miss_blocking`]). The body comes as a `dyn FnMut`
    /// (see `CachedFn::call_pending`); this keeps its result here and hands the layers the
    /// part to cache, so that the miss path's code is compiled once, not for each function
    /// or value type; this part once per value and return type.
    #[inline(never)]
    pub(super) fn blocking_miss_shared<O: Outcome<V>>(
        &'static self,
        call: Call<'_>,
        body: &mut dyn FnMut() -> O,
    ) -> O {
        let mut out = None;
        let mut run = || {
            let ran = body();
            let value = cacheable(&ran);
            out = Some(ran);
            value
        };
        match self.layers.miss_blocking(call, &mut run) {
            Some(value) => O::from_cached(typed(value)),
            None => out.expect("the layers answer or run the body"),
        }
    }

    pub(super) fn call_site<'a>(
        &self,
        front: &'static FrontKey<V>,
        args: &'a str,
        probe: Probe,
        lookup: Lookup<V>,
    ) -> Call<'a> {
        let picked_for_refresh = match lookup {
            Lookup::PickedForRefresh(deadline) => Some(deadline),
            _ => None,
        };
        self.layers
            .call_site(front, args, probe, picked_for_refresh)
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
    pub(super) async fn detached_miss<O, F>(
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
        let mut work = match self.prepare_async(&call).await {
            Step::Answer(value) => {
                call.trace.finish(call.budget.on_store());
                return O::from_cached(typed(value));
            }
            Step::Compute(work) => work,
        };
        let (Some(value), Some(runtime)) = (work.servable.take(), background()) else {
            let out = self.compute::<O>(&call, work, body).await;
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
            let front: &'static dyn ThreadFront = front;
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
            self.compute::<O>(&call, work, body).await;
            call.trace.finish(call.budget.on_store());
        });
        call.trace.ended(Ending::Stale);
        call.trace.finish(call.budget.on_store());
        O::from_cached(typed(self.count_hit(value)))
    }

    /// Runs the body as the leader, stores the result, releases the waiters and the lock.
    pub(super) async fn compute<O: Outcome<V>>(
        &'static self,
        call: &Call<'_>,
        work: Box<Work>,
        body: impl Future<Output = O>,
    ) -> O {
        let started = self.began(call);
        let out = body.await;
        match self
            .computed_async(call, work, cacheable(&out), started)
            .await
        {
            Some(stand_in) => O::from_cached(typed(stand_in)),
            None => out,
        }
    }
}
