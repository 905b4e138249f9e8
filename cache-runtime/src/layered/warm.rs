//! What a preload scope asks this thread's front table before L1: a scope over a page whose
//! fragments the thread already holds sends nothing, and should cost about what the calls
//! themselves cost (a front-table probe each), not a moka lookup per key.
//!
//! The front table is a `thread_local!` declared in each function's generated body; the
//! function remembers it the first time a call fills one of its slots (a thread that never
//! filled one holds nothing to find). A key knows how a call probes for it
//! ([`CallProbe`], set by the `f::key` companions), and the answer follows the rules of a
//! front hit exactly ([`Front::fresh`](crate::front::Front::fresh)): the key's
//! epoch stripe as it is now, the deadline, early refresh's draw, and the full key compare.
//! An `invalidate`, `clear_local`, `put` or another process's change bumps the epochs
//! before the scope asks, so none of them can leave a value looking held.
//!
//! Asking costs a key that is not held about 150 instructions more than L1 alone would: so
//! after every slot was voided (`invalidate`, `clear_local`, ..) and until a call fills one
//! again, the scope does not ask ([`Epochs::may_hold`](crate::front::Epochs::may_hold)).
//! Not asking is always safe: L1 answers, as it did before front tables were asked.
//!
//! The table asked is the planning thread's: a `preload_async` task that waits for the
//! store may resume on another worker, whose table does not hold what this one does, and
//! under load L1 may have let the value go meanwhile. So when a `preload_async` scope will
//! wait for the store, it keeps a reference to each value this table holds for it
//! ([`Layers::front_value`]), and the call finds it in the scope. A scope that sends nothing
//! does not wait, and a sync one stays on its thread: they keep nothing.

use super::{Layers, ThreadFront};
use crate::front::Probe;
use crate::key::{CallProbe, Held, Key, KeyBuf, Shortcut};

impl Layers {
    /// The key of the call whose arguments encoded to `args`, probed by the call site with
    /// `shortcut` and `plain` (what it passes to `CachedFn::probe_key`; a call site with no
    /// whole key passes [`Shortcut::Encoded`]).
    pub fn key_probed(&'static self, args: KeyBuf, shortcut: Shortcut<'_>, plain: bool) -> Key {
        Key::probed(self, args, CallProbe::of(shortcut, plain))
    }

    /// Remembers this function's front thread-local (there is one per function), and that
    /// one of its slots is being filled.
    #[inline]
    pub(super) fn remember_front(&self, front: &'static dyn ThreadFront) {
        self.front_epochs.filling();
        if self.front.get().is_none() {
            let _ = self.front.set(front);
        }
    }

    /// Whether this thread's front table holds a fresh value for the key with the encoded
    /// arguments `args`, probed as a call probes it (`probe`).
    pub(super) fn front_holds(&self, probe: CallProbe, args: &KeyBuf) -> bool {
        self.ask_front(probe, args, false).is_some()
    }

    /// The value [`front_holds`](Self::front_holds) finds, shared, for a scope to keep.
    pub(super) fn front_value(&self, probe: CallProbe, args: &KeyBuf) -> Option<Held> {
        self.ask_front(probe, args, true).flatten()
    }

    fn ask_front(&self, probe: CallProbe, args: &KeyBuf, share: bool) -> Option<Option<Held>> {
        // Nothing filled since every slot was voided (`invalidate`, `clear_local`, ..).
        if !self.front_epochs.may_hold() {
            return None;
        }
        let &front = self.front.get()?;
        Probe::of_call(probe, args, |probe, text| {
            front.fresh(&probe, text, self.front_epochs.of(probe.hash), share)
        })?
    }
}
