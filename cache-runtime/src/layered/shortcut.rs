//! Calls of functions keyed by one integer, two or three integers, or one text: the front
//! table is probed with the values themselves
//! ([`KeyPart::shortcut`](crate::KeyPart::shortcut)), and the key is encoded only after a
//! miss.
//!
//! The generated code looks first ([`CachedFn::probe_key`]) and encodes the key only when it
//! gets [`Probed::Miss`], then goes on with the `*_pending` call. The two steps are separate
//! statements so that the key's borrow of the parameters ends before the body takes them.

use std::future::Future;

use super::{CachedFn, FrontKey};
use crate::front::{Lookup, Probe};
use crate::key::{KeyBuf, Shortcut};
use crate::mode::Mode;
use crate::outcome::Outcome;

/// What a look at this thread's front table found, before any key was encoded.
pub enum Probed<V> {
    /// A fresh value.
    Hit(V),
    /// Anything else: the call goes on with its encoded key.
    Miss(Pending),
}

/// A call past its front table: what the look found out (see [`Probed`]).
pub struct Pending {
    /// `None` when the key has no shortcut: the encoded key is probed as usual.
    pub(super) probe: Option<Probe>,
    pub(super) mode: Mode,
    pub(super) picked_for_refresh: Option<u64>,
}

impl Pending {
    pub(super) const ENCODE_FIRST: Pending = Pending {
        probe: None,
        mode: Mode::Normal,
        picked_for_refresh: None,
    };

    pub(super) fn lookup<V>(&self) -> Lookup<V> {
        self.picked_for_refresh
            .map_or(Lookup::Miss, Lookup::PickedForRefresh)
    }
}

impl<V: Clone + Send + Sync + 'static> CachedFn<V> {
    /// Looks the whole key of a call up in this thread's front table by its shortcut, when
    /// it has one and `plain` (no type arguments are part of the function's keys).
    ///
    /// Inlined into the call site, where the kind of shortcut is known: what goes on to the
    /// lookup of that kind are the key's words or text in registers, so no probe is written
    /// to memory in one width and read back in another.
    #[inline(always)]
    pub fn probe_key(
        &'static self,
        front: &'static FrontKey<V>,
        key: Shortcut<'_>,
        plain: bool,
    ) -> Probed<V> {
        if !plain {
            return Probed::Miss(Pending::ENCODE_FIRST);
        }
        match key {
            Shortcut::Int(bits) => self.probe_int(front, bits),
            Shortcut::Ints([a, b, c], count) => self.probe_ints(front, a, b, c, count),
            Shortcut::Text(text) => self.probe_text(front, text),
            Shortcut::Encoded => Probed::Miss(Pending::ENCODE_FIRST),
        }
    }

    #[inline(never)]
    fn probe_int(&'static self, front: &'static FrontKey<V>, bits: u64) -> Probed<V> {
        self.look(front, Probe::of_int(bits), "")
    }

    #[inline(never)]
    fn probe_ints(
        &'static self,
        front: &'static FrontKey<V>,
        a: u64,
        b: u64,
        c: u64,
        count: usize,
    ) -> Probed<V> {
        self.look(front, Probe::of_ints([a, b, c], count), "")
    }

    #[inline(never)]
    fn probe_text(&'static self, front: &'static FrontKey<V>, text: &str) -> Probed<V> {
        self.look(front, Probe::of_raw(text), text)
    }

    /// [`call_async_detached`](Self::call_async_detached) after
    /// [`probe_key`](Self::probe_key) missed.
    pub async fn call_async_detached_pending<O, F>(
        &'static self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static,
    {
        let Some(probe) = pending.probe else {
            return self.call_async_detached(front, args, body).await;
        };
        if pending.mode != Mode::Normal {
            return self
                .unusual_async(pending.mode, front, args, probe, body)
                .await;
        }
        self.detached_miss(front, args, probe, pending.lookup(), body)
            .await
    }
}
