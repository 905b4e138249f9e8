//! Cross-process coherence of L1: what one process writes or removes, the others forget.
//!
//! ```text
//! process B: f::invalidate(1)   DEL key + PUBLISH channel "… f v0 1"   (one round-trip)
//! process A: listener thread    message -> registry["f", v0] -> forget "1" in L1 + front slots
//! ```
//!
//! - **Channel**: one per prefix, `cache-runtime:coherence:{prefix}`, on each Redis store a
//!   function may use ([`channel`]). Every write of a value to the store (a computed value, a
//!   refresh, `put`), every `invalidate` and every `clear` publishes a [`message`] naming the
//!   function, its version and the key's arguments, pipelined with the write itself.
//! - **Listener**: each process subscribes once per store, on a connection of its own in a
//!   background thread (`SharedStore::subscribe`); a
//!   message is looked up in a registry of the process' functions by name and version
//!   ([`register`], filled when a function first keeps a value in L1) and handed to
//!   [`Coherent::forget_remote`].
//! - **Own messages** carry this process' [`origin`] and are ignored: its own layers were
//!   updated by the call that sent them.
//! - **Ordering**: a message removes an L1 entry only if the entry's value was asked for
//!   (its call began) no later than the message arrived; an entry read or computed after is
//!   newer and stays. A value that was being read or computed when the message arrived is
//!   not kept in L1 ([`Stamps`]): it may predate the change.
//! - **Lost connection**: messages sent meanwhile are lost, so on reconnecting the listener
//!   flushes L1 and the front tables of every function of that store, and counts it in
//!   [`Stats::coherence_flushes`](crate::Stats::coherence_flushes) (the rule of Redis'
//!   client-side caching).
//!
//! Nothing here is on the hit path: a front-table or L1 hit reads none of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::front::STRIPES;
use crate::store::{Event, SharedStore, Subscription};
use crate::sync::lock;

/// What the listener needs of a function (implemented by `CachedFn`).
pub(crate) trait Coherent: Send + Sync {
    /// The cache name.
    fn name(&self) -> &str;
    /// The `version` argument.
    fn version(&self) -> u32;
    /// The named store of the function (`None`: the default one).
    fn store_name(&self) -> Option<&'static str>;
    /// Another process changed or removed the value of `args`: forget older copies.
    fn forget_remote(&self, args: &str);
    /// Another process cleared the function (`lost`: or messages may have been missed):
    /// forget everything.
    fn forget_all_remote(&self, lost: bool);
}

/// The functions of this process that keep values, by cache name.
static REGISTRY: RwLock<Option<HashMap<String, Vec<&'static dyn Coherent>>>> = RwLock::new(None);

/// Makes `function` reachable by the listener. Called once per function, when it first keeps
/// a value in L1.
pub(crate) fn register(function: &'static dyn Coherent) {
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    registry
        .get_or_insert_with(HashMap::new)
        .entry(function.name().to_owned())
        .or_default()
        .push(function);
}

/// Runs `each` on the registered functions named `name` (any version when `None`).
fn each_named(name: Option<&str>, mut each: impl FnMut(&'static dyn Coherent)) {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let Some(registry) = registry.as_ref() else {
        return;
    };
    match name {
        Some(name) => registry
            .get(name)
            .into_iter()
            .flatten()
            .for_each(|f| each(*f)),
        None => registry.values().flatten().for_each(|f| each(*f)),
    }
}

/// This process' identity in messages: random, fixed for the life of the process.
pub(crate) fn origin() -> u64 {
    static ORIGIN: OnceLock<u64> = OnceLock::new();
    *ORIGIN.get_or_init(|| crate::random::next_u64() | 1)
}

/// The channel of every function under `prefix`.
pub(crate) fn channel(prefix: &str) -> String {
    format!("cache-runtime:coherence:{prefix}")
}

/// What a message says changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The value of one key was written or removed.
    Key,
    /// Every key of the function was removed.
    All,
}

/// The bytes of a message: `c1 {origin:016x} {k|a} {version} {name length} {name}{args}`.
/// The name's length lets it hold any character; the arguments are the rest.
pub(crate) fn message(change: Change, name: &str, version: u32, args: &str) -> Vec<u8> {
    let kind = match change {
        Change::Key => 'k',
        Change::All => 'a',
    };
    format!(
        "c1 {:016x} {kind} {version} {} {name}{args}",
        origin(),
        name.len()
    )
    .into_bytes()
}

/// A message read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) origin: u64,
    pub(crate) change: Change,
    pub(crate) version: u32,
    pub(crate) name: &'a str,
    pub(crate) args: &'a str,
}

/// Reads a message; `None` for anything else (another version of the format, foreign text).
pub(crate) fn parse(bytes: &[u8]) -> Option<Message<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let rest = text.strip_prefix("c1 ")?;
    let (origin, rest) = rest.split_once(' ')?;
    let (kind, rest) = rest.split_once(' ')?;
    let (version, rest) = rest.split_once(' ')?;
    let (len, rest) = rest.split_once(' ')?;
    let len: usize = len.parse().ok()?;
    let change = match kind {
        "k" => Change::Key,
        "a" => Change::All,
        _ => return None,
    };
    Some(Message {
        origin: u64::from_str_radix(origin, 16).ok()?,
        change,
        version: version.parse().ok()?,
        name: rest.get(..len)?,
        args: rest.get(len..)?,
    })
}

/// Starts listening to `channel` on `store` (named `name`, `None` for the default one), and
/// waits up to `timeout` for the subscription to be in place, so that the changes other
/// processes make once `install` has returned are heard (not when the store did not answer
/// when opened: `install` has spent its timeout on it already). `None` when the store has no
/// channels.
pub(crate) fn listen(
    store: &Arc<dyn SharedStore>,
    name: Option<String>,
    channel: &str,
    timeout: Duration,
) -> Option<Subscription> {
    let ready = Arc::new((Mutex::new(false), Condvar::new()));
    let signal = Arc::clone(&ready);
    let events = Box::new(move |event: Event<'_>| {
        if let Event::Subscribed { .. } = event {
            *lock(&signal.0) = true;
            signal.1.notify_all();
        }
        on_event(name.as_deref(), event);
    });
    let subscription = store.subscribe(channel, events)?;
    let timeout = if store.answered_at_open() {
        timeout
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + timeout;
    let mut subscribed = lock(&ready.0);
    while !*subscribed {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::debug!(%channel, "not subscribed yet; changes of other processes are heard once it is");
            break;
        }
        subscribed = ready
            .1
            .wait_timeout(subscribed, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(subscribed);
    Some(subscription)
}

/// What the listener of the store named `store` (`None`: the default store) does with an
/// event.
pub(crate) fn on_event(store: Option<&str>, event: Event<'_>) {
    match event {
        Event::Subscribed { after_loss: false } => {}
        Event::Subscribed { after_loss: true } => each_named(None, |f| {
            if f.store_name() == store {
                f.forget_all_remote(true);
            }
        }),
        Event::Message(bytes) => {
            let Some(message) = parse(bytes) else {
                tracing::debug!("ignoring a foreign message on the invalidation channel");
                return;
            };
            if message.origin == origin() {
                return;
            }
            each_named(Some(message.name), |f| {
                if f.version() != message.version {
                    return;
                }
                match message.change {
                    Change::Key => f.forget_remote(message.args),
                    Change::All => f.forget_all_remote(false),
                }
            });
        }
    }
}

/// When (on [`clock::now`](crate::clock::now)) a message last arrived for keys of each stripe of
/// one function: a value whose call began no later may predate the change it announced.
pub(crate) struct Stamps([AtomicU64; STRIPES]);

impl Stamps {
    pub(crate) const fn new() -> Self {
        Stamps([const { AtomicU64::new(0) }; STRIPES])
    }

    /// A message for keys with this probe hash arrived at `now`.
    pub(crate) fn seen(&self, hash: u64, now: u64) {
        self.0[hash as usize % STRIPES].fetch_max(now, Ordering::AcqRel);
    }

    /// A message for every key arrived at `now`.
    pub(crate) fn seen_all(&self, now: u64) {
        for stamp in &self.0 {
            stamp.fetch_max(now, Ordering::AcqRel);
        }
    }

    /// The latest arrival for keys with this probe hash.
    pub(crate) fn last(&self, hash: u64) -> u64 {
        self.0[hash as usize % STRIPES].load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_any_name_and_arguments() {
        for (change, name, version, args) in [
            (Change::Key, "app::f", 0, "1"),
            (Change::Key, "a b:c 3 ", 7, "x y:z\\:"),
            (Change::All, "f", u32::MAX, ""),
            (Change::Key, "é", 1, ""),
        ] {
            let bytes = message(change, name, version, args);
            let read = parse(&bytes).expect("a message");
            assert_eq!(
                read,
                Message {
                    origin: origin(),
                    change,
                    version,
                    name,
                    args
                }
            );
        }
    }

    #[test]
    fn foreign_bytes_are_no_message() {
        for bytes in [
            &b""[..],
            b"hello",
            b"c1 zz k 0 1 f1",
            b"c1 01 k 0 9 f",
            b"c2 01 k 0 1 f1",
            b"\xff\xfe",
        ] {
            assert_eq!(parse(bytes), None, "{bytes:?}");
        }
    }
}
