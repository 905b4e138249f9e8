//! A call past its front table, in two parts: [`CachedFn::route`] decides, without the body,
//! whether the call is answered, runs its body alone (a bypass), or goes down the layers;
//! then one function generic over the body runs it ([`CachedFn::routed`] for an async call;
//! a sync call goes through [`Layers::miss_blocking`](super::Layers) with its body as a
//! `dyn FnMut`, and builds no future).
//!
//! The split is for compile time: what is generic over the body is generated again for every
//! `#[cached]` function. Each async function gets one state machine for its miss, and what
//! it awaits of the layers (`prepare_rest`, `computed`) is compiled once, in this crate (see
//! `rest_async` and `computed_async` in `layered`).

use std::future::Future;
use std::time::Instant;

use super::typed::{cacheable, typed};
use super::{CachedFn, Call, FrontKey, Layers, Pending, Probed, Start, Step};
use crate::front::{Lookup, Probe};
use crate::key::KeyBuf;
use crate::mode::{self, Mode};
use crate::outcome::Outcome;

/// What a call does after its front table did not answer it.
// Made once per call and moved into its future at once: boxing the `Call` would cost an
// allocation per miss to save a copy.
#[allow(clippy::large_enum_variant)]
pub(super) enum Route<'a, V: 'static> {
    /// Answered from this thread's front table (a call whose key was encoded first).
    Answer(V),
    /// Bypassed or uncached: the body alone, nothing read or stored.
    Body,
    /// Down the layers.
    Miss(Call<'a>),
}

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// A sync call: answers from the layers or runs `body` once per key.
    #[inline]
    pub fn call<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: impl FnOnce() -> O,
    ) -> O {
        match self.look(front, Probe::of(args), args.as_str()) {
            Probed::Hit(value) => O::from_cached(value),
            Probed::Miss(pending) => self.call_pending(front, args, pending, body),
        }
    }

    /// A sync call after [`probe_key`](Self::probe_key) missed; `args` is the encoded key.
    ///
    /// Generated for each function (its body is a type of its own), so it only hands the body
    /// on as a `dyn FnMut` to `call_pending_shared`, generated
    /// once per value and return type.
    #[inline]
    pub fn call_pending<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: impl FnOnce() -> O,
    ) -> O {
        let mut body = Some(body);
        let mut run = move || (body.take().expect("a body runs once per call"))();
        self.call_pending_shared(front, args, pending, &mut run)
    }

    #[inline(never)]
    fn call_pending_shared<O: Outcome<V>>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: &mut dyn FnMut() -> O,
    ) -> O {
        match self.route(front, args, pending) {
            Route::Answer(value) => O::from_cached(value),
            Route::Body => body(),
            Route::Miss(call) => self.blocking_miss_shared(call, body),
        }
    }

    /// An async call: answers from the layers or awaits `body` once per key.
    pub fn call_async<'a, O, F>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &'a KeyBuf,
        body: F,
    ) -> impl Future<Output = O> + use<'a, V, O, F>
    where
        O: Outcome<V>,
        F: Future<Output = O>,
    {
        self.call_async_pending(front, args, Pending::ENCODE_FIRST, body)
    }

    /// An async call after [`probe_key`](Self::probe_key) missed. The route is taken when the
    /// future is made (generated code awaits it at once), so that the future is one state
    /// machine.
    pub fn call_async_pending<'a, O, F>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &'a KeyBuf,
        pending: Pending,
        body: F,
    ) -> impl Future<Output = O> + use<'a, V, O, F>
    where
        O: Outcome<V>,
        F: Future<Output = O>,
    {
        self.routed::<O, F>(self.route(front, args, pending), body)
    }

    /// Mode and front table, for a call whose probe is known: a hit, or what the rest of the
    /// call needs to know.
    #[inline(always)]
    pub(super) fn look(
        &'static self,
        front: &'static FrontKey<V>,
        probe: Probe,
        text: &str,
    ) -> Probed<V> {
        let mode = mode::for_call(self.address());
        if mode != Mode::Normal {
            return Probed::Miss(Pending {
                probe: Some(probe),
                mode,
                picked_for_refresh: None,
            });
        }
        let picked_for_refresh = match self.front_hit(front, &probe, text) {
            Lookup::Hit(value) => return Probed::Hit(value),
            Lookup::PickedForRefresh(deadline) => Some(deadline),
            Lookup::Miss => None,
        };
        Probed::Miss(Pending {
            probe: Some(probe),
            mode,
            picked_for_refresh,
        })
    }

    /// Where a call goes after its front-table look (`pending`); a call that has not looked
    /// yet (its key had no shortcut) looks now.
    #[inline(never)]
    pub(super) fn route<'a>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &'a KeyBuf,
        pending: Pending,
    ) -> Route<'a, V> {
        let (probe, mode, lookup) = match pending.probe {
            Some(probe) => (probe, pending.mode, pending.lookup()),
            None => {
                let probe = Probe::of(args);
                match self.look(front, probe, args.as_str()) {
                    Probed::Hit(value) => return Route::Answer(value),
                    Probed::Miss(pending) => (probe, pending.mode, pending.lookup()),
                }
            }
        };
        match mode {
            Mode::Normal => Route::Miss(self.call_site(front, args.as_str(), probe, lookup)),
            Mode::Refresh(_) => Route::Miss(self.forced_refresh(front, args.as_str(), probe)),
            Mode::Bypass | Mode::Uncached(_) => Route::Body,
        }
    }

    /// Runs a routed call: its answer, its body alone, or everything after a front-table
    /// miss (the body runs only if this caller leads the computation).
    ///
    /// This is the one state machine generated for each async function. It is an `async`
    /// block, not an `async fn`, so that it holds its arguments once (an `async fn` copies
    /// them into locals of its own). The steps of the layers it awaits are not generated
    /// here but awaited boxed, through functions of `Layers` that are not generic
    /// ([`rest_async`](Layers::rest_async), [`computed_async`](Layers::computed_async)), so what its
    /// future holds is its route, its body and a pointer, and only a call that gets past L1
    /// and the scope pays for the allocation.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold the route twice
    pub(super) fn routed<'a, O, F>(
        &'static self,
        route: Route<'a, V>,
        body: F,
    ) -> impl Future<Output = O> + use<'a, V, O, F>
    where
        O: Outcome<V>,
        F: Future<Output = O>,
    {
        async move {
            // The call is used where it lies, in the future's captures.
            let call = match route {
                Route::Answer(value) => return O::from_cached(value),
                Route::Body => return body.await,
                Route::Miss(ref call) => call,
            };
            let out = 'out: {
                let ahead = match self.prepare_start(call) {
                    Start::Answered(value) => break 'out O::from_cached(typed(value)),
                    Start::Ahead(ahead) => ahead,
                };
                let work = match self.rest_async(call, ahead).await {
                    Step::Answer(value) => break 'out O::from_cached(typed(value)),
                    Step::Compute(work) => work,
                };
                let started = self.began(call);
                let out = body.await;
                match self
                    .computed_async(call, work, cacheable(&out), started)
                    .await
                {
                    Some(stand_in) => O::from_cached(typed(stand_in)),
                    None => out,
                }
            };
            call.trace.finish(call.budget.on_store());
            out
        }
    }
}

impl Layers {
    /// The start of a computation: traced from here (a detached refresh's too).
    pub(super) fn began(&self, call: &Call<'_>) -> Instant {
        call.trace.begin(&self.settings.name);
        Instant::now()
    }
}
