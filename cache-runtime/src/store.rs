//! The layers values are kept in: [`local`] (L1, in-process) and the shared stores behind one
//! trait, [`SharedStore`]: [`redis`] (feature `redis`), [`cluster`] (feature `cluster`) and
//! [`disk`] (feature `disk`).
//!
//! The read path (`layered`, `scope`, `lock`) speaks only [`Op`]s and [`Reply`]s; each store
//! turns them into its own requests (Redis commands, SQL statements). A store knows nothing
//! of the read path above it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::key::RemoteName;

pub(crate) mod local;

#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(feature = "cluster")]
pub(crate) mod cluster;

#[cfg(feature = "disk")]
pub(crate) mod disk;

/// One request to a shared store.
#[derive(Clone, Copy)]
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
pub(crate) enum Op<'a> {
    /// The bytes under a key: [`Reply::Value`].
    Get(&'a str),
    /// The bytes under each key, in order, in one round-trip: [`Reply::Values`].
    GetMany(&'a [RemoteName<'a>]),
    /// Stores bytes under a key, for `ttl` (`None`: until evicted): [`Reply::Done`].
    Set {
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    },
    /// Stores several values in one round-trip (a Redis pipeline, one SQLite transaction):
    /// [`Reply::Done`]. Batch functions write the elements their body computed with it.
    SetMany(&'a [SetEntry<'a>]),
    /// Removes a key: [`Reply::Done`].
    Delete(&'a str),
    /// Removes every key that begins with the prefix, in batches that do not hold the store
    /// for long: [`Reply::Count`].
    DeletePrefix(&'a str),
    /// Takes the lock `key` with `token` for `lease`, unless it is held: [`Reply::Locked`].
    Lock {
        key: &'a str,
        token: &'a str,
        lease: Duration,
    },
    /// Releases the lock `key` if `token` still holds it: [`Reply::Done`].
    Unlock { key: &'a str, token: &'a str },
    /// `op`, then `message` published on `channel` for the other processes (see
    /// [`crate::coherence`]), in the same round-trip where the store can: `op`'s reply. A
    /// store without a channel runs `op` alone.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Announced {
        op: &'a Op<'a>,
        channel: &'a str,
        message: &'a [u8],
    },
}

impl Op<'_> {
    /// The operation's name, for logs and metric labels.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn name(&self) -> &'static str {
        OP_NAMES[self.index()]
    }

    /// The operation's place in [`OP_NAMES`] (an announced one's is its operation's).
    pub(crate) fn index(&self) -> usize {
        match self {
            Op::Get(_) => 0,
            Op::GetMany(_) => 1,
            Op::Set { .. } => 2,
            Op::SetMany(_) => 3,
            Op::Delete(_) => 4,
            Op::DeletePrefix(_) => 5,
            Op::Lock { .. } => 6,
            Op::Unlock { .. } => 7,
            Op::Announced { op, .. } => op.index(),
        }
    }
}

/// The names of the kinds of [`Op`], by [`Op::index`].
pub(crate) const OP_NAMES: [&str; 8] = [
    "get",
    "get_many",
    "set",
    "set_many",
    "delete",
    "delete_prefix",
    "lock",
    "unlock",
];

/// One value of an [`Op::SetMany`]: what [`Op::Set`] carries.
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
pub(crate) struct SetEntry<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a [u8],
    /// `None`: until evicted.
    pub(crate) ttl: Option<Duration>,
}

/// A store's answer to an [`Op`].
#[derive(Debug)]
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
pub(crate) enum Reply {
    Value(Option<Vec<u8>>),
    Values(Vec<Option<Vec<u8>>>),
    Done,
    Count(u64),
    Locked(bool),
}

/// A future a store's async operation returns.
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = Result<Reply, Failure>> + Send + 'a>>;

/// A store shared by processes: Redis, Redis Cluster, a SQLite file on disk.
pub(crate) trait SharedStore: Send + Sync {
    /// `"redis"`, `"disk"`: for logs.
    fn kind(&self) -> &'static str;

    /// Whether requests may be sent now (`false` while a circuit breaker is open).
    fn available(&self) -> bool {
        true
    }

    /// Runs `op`, blocking the thread, within the call's `budget`.
    fn run(&self, op: Op<'_>, budget: &Budget) -> Result<Reply, Failure>;

    /// Runs `op` without blocking an async runtime's thread.
    fn run_async<'a>(&'a self, op: Op<'a>, budget: &'a Budget) -> Pending<'a>;

    /// Whether the store answered when it was opened (a server that did not is not waited
    /// for again at install).
    fn answered_at_open(&self) -> bool {
        true
    }

    /// Listens to `channel` on a connection of its own, in a background thread, and hands
    /// `events` what arrives, until the [`Subscription`] is dropped. `None` when the store has
    /// no channels (the disk store).
    fn subscribe(
        &self,
        channel: &str,
        events: Box<dyn FnMut(Event<'_>) + Send>,
    ) -> Option<Subscription> {
        let _ = (channel, events);
        None
    }
}

/// What a [`SharedStore::subscribe`] listener hears.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Event<'a> {
    /// Listening (again): `after_loss` when an earlier connection was lost or could not be
    /// made, so that messages may have been missed.
    Subscribed { after_loss: bool },
    /// A message published on the channel.
    Message(&'a [u8]),
}

/// A background listener of a store's channel; dropping it stops the listener.
pub(crate) struct Subscription {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Subscription {
    /// A subscription whose listener watches `stop`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Subscription { stop }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Why a shared store gave no answer.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Failure {
    /// The circuit breaker is open: the request was not sent.
    Skipped,
    /// The call already spent its time budget on the store: the request was not sent.
    OutOfTime,
    /// No tokio runtime to drive an async request on.
    NoRuntime,
    /// The store failed or refused the request.
    Store(StoreError),
}

/// What a store said went wrong.
#[derive(Debug)]
pub(crate) struct StoreError {
    /// Which kind of store ([`SharedStore::kind`]).
    pub(crate) store: &'static str,
    /// When the store answered and refused (an error reply such as `NOPERM` or `OOM`, a
    /// read-only or full disk): a short code, the same on every repetition, for warnings
    /// rate-limited per code. `None` for failures to reach it (I/O, timeouts).
    pub(crate) refusal: Option<String>,
    /// What happened, without secrets.
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Skipped => f.write_str("skipped: circuit breaker open"),
            Failure::OutOfTime => f.write_str("skipped: the call spent its time on the store"),
            Failure::NoRuntime => f.write_str("no tokio runtime to run an async request on"),
            Failure::Store(e) => write!(f, "{}: {}", e.store, e.message),
        }
    }
}

impl Failure {
    /// The store's refusal code (`NOPERM`, `OOM`, `read-only`...) when it answered and
    /// refused.
    pub(crate) fn reply_code(&self) -> Option<&str> {
        match self {
            Failure::Store(e) => e.refusal.as_deref(),
            _ => None,
        }
    }

    /// A reply of the wrong shape for `op` (a bug or a foreign server).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn unexpected(
        store: &'static str,
        op: &Op<'_>,
        reply: impl std::fmt::Debug,
    ) -> Self {
        Failure::Store(StoreError {
            store,
            refusal: None,
            message: format!("unexpected answer to {}: {reply:?}", op.name()),
        })
    }
}

/// The PEM files given for `rediss://` connections (`Config::tls_ca_file`,
/// `Config::tls_client_cert`); empty without the `tls` feature.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct TlsFiles {
    /// Certificates to trust instead of the system's roots.
    pub(crate) ca: Option<std::path::PathBuf>,
    /// A client certificate (chain) and its private key.
    pub(crate) client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// How many timeouts one call may spend on its store in all, over its requests.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
const CALL_BUDGET_TIMEOUTS: u32 = 2;

/// What one call may still spend waiting on its shared store: [`CALL_BUDGET_TIMEOUTS`]
/// timeouts over all its requests, each of which also ends one timeout after it starts.
#[derive(Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Budget {
    spent_nanos: AtomicU64,
    /// Time the call's requests took, whatever the store (for its trace).
    on_store_nanos: AtomicU64,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Budget {
    /// When an operation starting `now` must end, or `None` when the budget is spent.
    pub(crate) fn deadline(&self, timeout: Duration, now: Instant) -> Option<Instant> {
        let spent = Duration::from_nanos(self.spent_nanos.load(Relaxed));
        let left = (timeout * CALL_BUDGET_TIMEOUTS).saturating_sub(spent);
        (!left.is_zero()).then(|| now + left.min(timeout))
    }

    /// Counts the time since `since` against the budget.
    pub(crate) fn spend(&self, since: Instant) {
        let nanos = since.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.spent_nanos.fetch_add(nanos, Relaxed);
    }

    /// Counts `elapsed`, the time one request of the call took, into
    /// [`on_store`](Budget::on_store) (not against the budget).
    pub(crate) fn took(&self, elapsed: Duration) {
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        self.on_store_nanos.fetch_add(nanos, Relaxed);
    }

    /// The time the call's requests took, added up.
    pub(crate) fn on_store(&self) -> Duration {
        Duration::from_nanos(self.on_store_nanos.load(Relaxed))
    }
}
