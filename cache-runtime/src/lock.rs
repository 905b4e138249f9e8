//! The fleet-wide compute lock (`#[cached(lock)]`): on a miss everywhere, one caller in the
//! fleet computes.
//!
//! The lock is the key `{key}:lock` taken in the shared store with a random token and a lease
//! ([`Op::Lock`]: `SET .. NX PX` in Redis, a row in the disk store); only its owner releases
//! it ([`Op::Unlock`]: a compare-and-delete), so an owner that overran its lease cannot
//! release a lock another caller has taken since. Other callers poll the value with growing
//! pauses (2 ms doubling to 50 ms) and try to take the lock at each step: if the owner dies, its
//! lease runs out and one waiter takes over. After two leases without a value, a waiter computes
//! anyway; if Redis fails, callers compute (fail-open).

use std::time::Duration;

use crate::clock;
use crate::random;
use crate::store::Op;

/// What trying to lock ended with.
pub(crate) enum Lock<V> {
    /// This caller owns the lock and computes.
    Owner(Owned),
    /// The value appeared in Redis while waiting.
    Found(V),
    /// Another caller holds the lock and this one has a (stale) value to serve meanwhile.
    Busy,
    /// Redis failed or the owner took too long: compute without the lock.
    Unavailable,
}

/// A lock this caller holds.
pub(crate) struct Owned {
    key: String,
    token: String,
}

impl Owned {
    /// Releases the lock if this caller still owns it.
    pub(crate) fn release(&self) -> Op<'_> {
        Op::Unlock {
            key: &self.key,
            token: &self.token,
        }
    }
}

/// One caller's attempt at the lock of one key.
pub(crate) struct Waiting {
    key: String,
    token: String,
    lease: Duration,
    pause: Duration,
    give_up_at: u64,
}

impl Waiting {
    pub(crate) fn new(value_key: &str, lease: Duration) -> Self {
        Waiting {
            key: format!("{value_key}:lock"),
            token: random::token(),
            lease,
            pause: Duration::from_millis(2),
            give_up_at: clock::deadline_after(Some(lease * 2)),
        }
    }

    /// Takes the lock unless someone holds it.
    pub(crate) fn acquire(&self) -> Op<'_> {
        Op::Lock {
            key: &self.key,
            token: &self.token,
            lease: self.lease,
        }
    }

    /// The lock, once acquired.
    pub(crate) fn owned(&self) -> Owned {
        Owned {
            key: self.key.clone(),
            token: self.token.clone(),
        }
    }

    /// How long to wait before looking again; `None` once waiting has lasted two leases.
    pub(crate) fn next_pause(&mut self) -> Option<Duration> {
        if clock::expired(self.give_up_at) {
            return None;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        Some(pause)
    }
}
