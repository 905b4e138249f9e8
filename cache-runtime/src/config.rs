//! Process-wide set-up: the shared stores, how keys are prefixed, timeouts.

use std::fmt;
#[cfg(feature = "disk")]
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::coherence;
#[cfg(feature = "redis")]
use crate::error::redacted;
pub use crate::error::Error;
#[cfg(feature = "cluster")]
use crate::store::cluster::ClusterStore;
#[cfg(feature = "disk")]
use crate::store::disk::DiskStore;
#[cfg(feature = "redis")]
use crate::store::redis::RedisStore;
use crate::store::{SharedStore, Subscription, TlsFiles};

/// Settings for the shared layer. Build one, then [`install`](Config::install) it.
///
/// ```no_run
/// cache_runtime::Config::new()
///     .redis("redis://127.0.0.1:6379/")
///     .prefix("myapp")
///     .install()?;
/// # Ok::<(), cache_runtime::Error>(())
/// ```
///
/// Without an installed config (or without a [`store`](Config::store)), every `#[cached]`
/// function uses its in-process layer only.
#[derive(Clone)]
pub struct Config {
    store: Option<Store>,
    named: Vec<(String, Store)>,
    prefix: String,
    timeout: Duration,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    tls: TlsFiles,
    coherent: bool,
    /// [`Config::metrics_every`] (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    metrics_every: Option<Duration>,
}

/// A shared store for [`Config::store`] and [`Config::named`]: Redis (`Store::redis`,
/// feature `redis`, on by default), a Redis Cluster (`Store::redis_cluster`, feature
/// `cluster`, on by default) or a SQLite file on this machine (`Store::disk`, feature `disk`).
#[derive(Clone)]
pub struct Store {
    kind: StoreKind,
}

#[derive(Clone)]
enum StoreKind {
    #[cfg(feature = "redis")]
    Redis { url: String },
    #[cfg(feature = "cluster")]
    Cluster { urls: Vec<String> },
    #[cfg(feature = "disk")]
    Disk { dir: PathBuf, max_bytes: u64 },
}

impl Store {
    /// The Redis server at `url` (`redis://host:port/db`, `rediss://` with the `tls`
    /// feature).
    #[cfg(feature = "redis")]
    pub fn redis(url: impl Into<String>) -> Self {
        Store {
            kind: StoreKind::Redis { url: url.into() },
        }
    }

    /// The Redis Cluster that these nodes belong to (`redis://host:port/` each; one that
    /// answers is enough, the others are found through it). Values go to the master of their
    /// key's slot; a preload sends one `MGET` per slot, to every master at once, so a page
    /// whose keys share a hash tag (`{page42}` in the key) costs one `MGET` on one node. See
    /// the README's "Redis Cluster" section.
    ///
    /// ```no_run
    /// use cache_runtime::{Config, Store};
    /// Config::new()
    ///     .store(Store::redis_cluster(["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"]))
    ///     .install()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    #[cfg(feature = "cluster")]
    pub fn redis_cluster<I>(urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Store {
            kind: StoreKind::Cluster {
                urls: urls.into_iter().map(Into::into).collect(),
            },
        }
    }

    /// A SQLite file (`cache.sqlite3`) in `dir`, created when missing, shared by every
    /// process of the machine that uses the same directory. Kept under 1 GiB by default
    /// ([`max_bytes`](Store::max_bytes)).
    #[cfg(feature = "disk")]
    pub fn disk(dir: impl Into<PathBuf>) -> Self {
        Store {
            kind: StoreKind::Disk {
                dir: dir.into(),
                max_bytes: crate::store::disk::DEFAULT_MAX_BYTES,
            },
        }
    }

    /// For a disk store: the most bytes of keys and values it keeps; past it, the least
    /// recently used entries go. No effect on other stores.
    pub fn max_bytes(self, bytes: u64) -> Self {
        let _ = bytes;
        match self.kind {
            #[cfg(feature = "disk")]
            StoreKind::Disk { dir, .. } => Store {
                kind: StoreKind::Disk {
                    dir,
                    max_bytes: bytes,
                },
            },
            #[allow(unreachable_patterns)]
            kind => Store { kind },
        }
    }

    fn open(&self, config: &Config) -> Result<Arc<dyn SharedStore>, Error> {
        let _ = config;
        match &self.kind {
            #[cfg(feature = "redis")]
            StoreKind::Redis { url } => Ok(Arc::new(RedisStore::open(
                url,
                &config.tls,
                config.timeout,
                config.breaker_failures,
                config.breaker_cooldown,
            )?)),
            #[cfg(feature = "cluster")]
            StoreKind::Cluster { urls } => Ok(Arc::new(ClusterStore::open(
                urls,
                &config.tls,
                config.timeout,
                config.breaker_failures,
                config.breaker_cooldown,
            )?)),
            #[cfg(feature = "disk")]
            StoreKind::Disk { dir, max_bytes } => {
                let store = DiskStore::new(dir, *max_bytes, config.timeout.max(DISK_BUSY_WAIT));
                if let Err(error) = store.check() {
                    tracing::warn!(
                        %error,
                        "the disk store cannot be used; calls compute without it until it can"
                    );
                }
                Ok(Arc::new(store))
            }
            #[cfg(not(any(feature = "redis", feature = "disk")))]
            _ => unreachable!("no Store can be built without a store feature"),
        }
    }
}

/// The least a disk store's writers wait for each other (SQLite's busy timeout): contention
/// between a machine's processes, not a dead server.
#[cfg(feature = "disk")]
const DISK_BUSY_WAIT: Duration = Duration::from_secs(1);

/// Shows a Redis URL with its password masked (`redis://user:***@host/`).
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = &f;
        match &self.kind {
            #[cfg(feature = "redis")]
            StoreKind::Redis { url } => write!(f, "Store::redis({:?})", redacted(url)),
            #[cfg(feature = "cluster")]
            StoreKind::Cluster { urls } => {
                let urls: Vec<String> = urls.iter().map(|url| redacted(url)).collect();
                write!(f, "Store::redis_cluster({urls:?})")
            }
            #[cfg(feature = "disk")]
            StoreKind::Disk { dir, max_bytes } => f
                .debug_struct("Store::disk")
                .field("dir", dir)
                .field("max_bytes", max_bytes)
                .finish(),
            #[cfg(not(any(feature = "redis", feature = "disk")))]
            _ => unreachable!("no Store can be built without a store feature"),
        }
    }
}

/// Shows Redis URLs with their password masked (`redis://user:***@host/`).
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("store", &self.store)
            .field("named", &self.named)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("tls_ca_file", &self.tls.ca)
            .field("tls_client_cert", &self.tls.client)
            .field("coherent", &self.coherent)
            .field("metrics_every", &self.metrics_every)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// Defaults: no shared store, no prefix, 200 ms timeout per operation, a circuit
    /// breaker that opens after 3 consecutive failures for 1 s, and a
    /// [coherent](Config::coherent) L1.
    pub fn new() -> Self {
        Config {
            store: None,
            named: Vec::new(),
            prefix: String::new(),
            timeout: Duration::from_millis(200),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
            tls: TlsFiles::default(),
            coherent: true,
            metrics_every: None,
        }
    }

    /// Whether every process forgets its in-process copy of a value when another process
    /// changes it (on by default; it takes effect with a Redis store).
    ///
    /// With it, `f::invalidate(..)`, `f::clear()`, `f::put(..)` and every value a process
    /// writes to Redis (a computed value, a refresh) are announced on a Redis pub/sub channel
    /// of the [prefix](Config::prefix), `cache-runtime:coherence:{prefix}`, in the same
    /// round-trip as the write; each process listens on one connection of its own per Redis
    /// store (a background thread, named `cache-coherence-{pid}` in `CLIENT LIST`) and removes
    /// the key from that function's L1 and front tables within milliseconds. A process
    /// ignores its own messages, and keeps a copy it read or computed after a message
    /// arrived. When the listening connection is lost, messages may be lost with it: on
    /// reconnecting, L1 and the front tables of the store's functions are emptied and
    /// [`Stats::coherence_flushes`](crate::Stats::coherence_flushes) counts it.
    ///
    /// Off, a process keeps serving its copy until its TTL runs out after another process
    /// changed it (the behaviour before 0.2); nothing is published or subscribed.
    ///
    /// ```no_run
    /// cache_runtime::Config::new()
    ///     .redis("redis://127.0.0.1:6379/")
    ///     .coherent(false)
    ///     .install()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    ///
    /// # Concurrency
    ///
    /// The hit path reads nothing of it; a miss reads one more atomic counter of its own
    /// function. Each write to Redis carries one `PUBLISH`, which Redis copies to every
    /// listening process.
    pub fn coherent(mut self, coherent: bool) -> Self {
        self.coherent = coherent;
        self
    }

    /// Publish every function's counters into the installed `metrics` recorder every `every`
    /// (feature `metrics`), from a background thread named `cache-metrics`, as
    /// [`publish_metrics`](crate::publish_metrics) does. The thread starts with
    /// [`install`](Config::install); installing another config or
    /// [`uninstall`](Config::uninstall) stops it (after a last round). Off by default, and
    /// with a zero duration.
    ///
    /// ```
    /// # use std::time::Duration;
    /// cache_runtime::Config::new()
    ///     .metrics_every(Duration::from_secs(10))
    ///     .install()?;
    /// # cache_runtime::Config::uninstall();
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    ///
    /// # Concurrency
    ///
    /// The hit path does not change: each round reads the functions' counters as
    /// [`functions`](crate::functions) does.
    #[cfg(feature = "metrics")]
    pub fn metrics_every(mut self, every: Duration) -> Self {
        self.metrics_every = Some(every);
        self
    }

    /// The shared store of every function that names none (`#[cached(store = ..)]`).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// A store that functions reach by name: `#[cached(store = "pages")]`. A function naming
    /// a store that is not configured uses its in-process layer only (and warns once).
    pub fn named(mut self, name: impl Into<String>, store: Store) -> Self {
        let name = name.into();
        self.named.retain(|(known, _)| *known != name);
        self.named.push((name, store));
        self
    }

    /// Use the Redis server at `url` (`redis://host:port/db`) as the shared layer: short for
    /// `.store(Store::redis(url))`.
    #[cfg(feature = "redis")]
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.store(Store::redis(url))
    }

    /// Use the Redis Cluster these nodes belong to as the shared layer: short for
    /// `.store(Store::redis_cluster(urls))` (see [`Store::redis_cluster`]).
    ///
    /// ```no_run
    /// cache_runtime::Config::new()
    ///     .redis_cluster(["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"])
    ///     .install()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    #[cfg(feature = "cluster")]
    pub fn redis_cluster<I>(self, urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.store(Store::redis_cluster(urls))
    }

    /// Keep shared values in a SQLite file in `dir`, shared by the processes of this machine:
    /// short for `.store(Store::disk(dir))`.
    #[cfg(feature = "disk")]
    pub fn disk(self, dir: impl Into<PathBuf>) -> Self {
        self.store(Store::disk(dir))
    }

    /// [`disk`](Config::disk) in the platform's cache directory for `app`
    /// (`$XDG_CACHE_HOME/app` or `~/.cache/app` on Linux, `~/Library/Caches/app` on macOS,
    /// `%LOCALAPPDATA%\\app` on Windows; see [`default_cache_dir`](crate::default_cache_dir)).
    /// Where the platform has none, no store is set and a warning says so.
    #[cfg(feature = "disk")]
    pub fn disk_default(self, app: &str) -> Self {
        match crate::store::disk::default_cache_dir(app) {
            Some(dir) => self.disk(dir),
            None => {
                tracing::warn!(
                    app,
                    "no cache directory on this platform; the disk store is off"
                );
                self
            }
        }
    }

    /// Begin every remote key with `prefix` and a `:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any single Redis operation may take (connecting, the TLS handshake,
    /// `AUTH` / `SELECT`, sending the request and reading the whole reply, together) before
    /// the call gives up on Redis and computes instead. One call spends at most twice this
    /// on Redis over all its requests. Default: 200 ms. It applies to the disk store too,
    /// as the longest wait for another process's write (never less than SQLite's busy wait).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_runtime::Config;
    ///
    /// // Redis across a region: allow 50 ms per operation before computing instead.
    /// Config::new()
    ///     .redis("redis://cache.internal:6379/")
    ///     .timeout(Duration::from_millis(50))
    ///     .install()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// For `rediss://` URLs: trust the certificates of this PEM file (a private CA) instead
    /// of the system's roots. Read by [`install`](Config::install).
    #[cfg(feature = "tls")]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca = Some(path.into());
        self
    }

    /// For `rediss://` URLs: present this client certificate (PEM, chain first) with its
    /// private key (PEM) to servers that ask for one (`tls-auth-clients`). Read by
    /// [`install`](Config::install).
    #[cfg(feature = "tls")]
    pub fn tls_client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.client = Some((cert.into(), key.into()));
        self
    }

    /// After `failures` consecutive failures of a Redis store, skip it for `cooldown`, then
    /// try again. Meanwhile calls compute without waiting on Redis (each skip counts in
    /// [`Stats::l2_errors`](crate::Stats::l2_errors)). Default: 3 failures, 1 s.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_runtime::Config;
    ///
    /// // Give up on Redis after 3 failures in a row, for 10 s at a time.
    /// Config::new()
    ///     .redis("redis://cache.internal:6379/")
    ///     .circuit_breaker(3, Duration::from_secs(10))
    ///     .install()?;
    /// # Ok::<(), cache_runtime::Error>(())
    /// ```
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cooldown = cooldown;
        self
    }

    /// Makes this the process-wide configuration, replacing any earlier one.
    ///
    /// One connection is tried (with a `PING`), within the [`timeout`](Config::timeout): an
    /// unreachable server is not an error here (it is logged once at `warn`, and calls fall
    /// back to computing until it answers), but a server that answers and refuses the
    /// credentials is.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRedisUrl`] when the URL cannot be parsed (a `rediss://` URL needs the
    /// `tls` feature); `Error::InvalidTls` (feature `tls`) when the TLS files cannot be used;
    /// [`Error::RedisRefused`] when the server rejects the user name, the password or the db
    /// index of the URL.
    pub fn install(self) -> Result<(), Error> {
        let default = self.store.as_ref().map(|s| s.open(&self)).transpose()?;
        let mut named = Vec::with_capacity(self.named.len());
        for (name, store) in &self.named {
            named.push((name.clone(), store.open(&self)?));
        }
        crate::key::set_prefix(&self.prefix);
        let mut listening = Vec::new();
        if self.coherent {
            let stores = default.iter().map(|s| (None, s));
            let stores = stores.chain(named.iter().map(|(n, s)| (Some(n.clone()), s)));
            for (name, store) in stores {
                let channel = coherence::channel(&self.prefix);
                if let Some(listener) =
                    coherence::listen(store, name.clone(), &channel, self.timeout)
                {
                    listening.push((name, Arc::from(channel), listener));
                }
            }
        }
        let installed = Arc::new(Installed {
            prefix: self.prefix,
            default,
            named,
            listening,
        });
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(installed);
        #[cfg(feature = "metrics")]
        crate::publish::every(self.metrics_every);
        Ok(())
    }

    /// Removes the installed configuration: every function goes back to L1 only (and the
    /// `metrics_every` thread, feature `metrics`, stops).
    pub fn uninstall() {
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = None;
        crate::key::set_prefix("");
        #[cfg(feature = "metrics")]
        crate::publish::every(None);
    }
}

/// The configuration in force.
pub(crate) struct Installed {
    pub(crate) prefix: String,
    default: Option<Arc<dyn SharedStore>>,
    named: Vec<(String, Arc<dyn SharedStore>)>,
    /// The stores whose channel this process listens to (by name, `None` for the default
    /// store), the channel, and the listener.
    listening: Vec<(Option<String>, Arc<str>, Subscription)>,
}

impl Installed {
    /// The store of a function: the named one, or the default when `name` is `None`.
    pub(crate) fn store(&self, name: Option<&str>) -> Option<&Arc<dyn SharedStore>> {
        match name {
            None => self.default.as_ref(),
            Some(name) => self
                .named
                .iter()
                .find_map(|(known, store)| (known == name).then_some(store)),
        }
    }

    /// The channel a function of the store `name` announces its changes on, when this
    /// process listens to that store.
    pub(crate) fn channel(&self, name: Option<&str>) -> Option<&Arc<str>> {
        self.listening
            .iter()
            .find_map(|(known, channel, _)| (known.as_deref() == name).then_some(channel))
    }
}

static INSTALLED: RwLock<Option<Arc<Installed>>> = RwLock::new(None);

/// The configuration in force, if one is installed.
pub(crate) fn current() -> Option<Arc<Installed>> {
    INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone()
}
