//! L2 over a Redis Cluster, behind the same timeouts, per-call [`Budget`] and circuit breaker
//! as the single-Redis store (one breaker for the whole cluster).
//!
//! # Two ways to the nodes
//!
//! - **Sync callers** ([`direct`]) use the single-Redis store's blocking connections, whose
//!   every step ends by the operation's deadline, one small pool per node, and a slot map of
//!   their own (`CLUSTER SLOTS`, read again after a `MOVED` or a failure). No thread is
//!   crossed; a frozen node holds a request for one [`Config::timeout`] at most, a call for
//!   two, exactly as a single Redis does.
//! - **Async callers** use redis-rs' cluster client (slot routing, `MOVED` / `ASK`,
//!   reconnections, topology refreshes), each request cut at its deadline by
//!   `tokio::time::timeout_at`. Its one connection is created on a small runtime the store owns
//!   (one worker thread, `cache-cluster`): the connection's driver task and its per-node
//!   connections live there, not on a caller's runtime that may be gone by the next call (each
//!   `#[tokio::test]` has its own). redis-rs' own response timeout (two timeouts) is only a
//!   backstop for requests nobody waits for any more.
//!
//! # Where keys go
//!
//! - `GET`, `SET`, `DEL` go to the master of the key's slot.
//! - [`Op::GetMany`] (preload) groups the keys by slot (`MGET`s of at most [`MGET_BATCH`]
//!   keys, as `MGET` cannot span slots) and the slots by master, and sends each master one
//!   pipeline, every master at once; the answers come back in the keys' order. Async
//!   preloads group by the sync side's slot map when it is fresh, and otherwise (or when a
//!   slot moved) let redis-rs split the `MGET`s and follow redirections. Keys that share a
//!   hash tag (`{page42}`) share a slot: a page whose keys all carry its tag costs one `MGET`
//!   on one node.
//! - The lock of a key lives on **the key's slot** (see [`lock_key`]), so a lock and the value
//!   it guards are on the same master and fail over together.
//! - [`Op::DeletePrefix`] (`clear`) runs `SCAN` on every master, and `UNLINK`s what each round
//!   found, split per slot (on the store's runtime, each round with a deadline of its own).
//!
//! [`Config::timeout`]: crate::Config::timeout

mod direct;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Value};
use tokio::runtime::{Handle, Runtime};

use crate::breaker::Breaker;
use crate::error::{redacted, Error};
use crate::key::RemoteName;
use crate::store::redis::{Request, Tls, MGET_BATCH};
use crate::store::TlsFiles;
use crate::store::{Budget, Failure, Op, Pending, Reply, SharedStore, StoreError};
use crate::sync::lock;

/// The name of this store in logs and errors.
const KIND: &str = "redis-cluster";

/// Keys one `SCAN` round asks a master for when clearing a prefix.
const SCAN_COUNT: usize = 500;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

pub(crate) struct ClusterStore {
    inner: Arc<Inner>,
    /// The runtime the connection lives on; shut down (without waiting) when the store goes.
    runtime: Option<Runtime>,
}

/// What the store's runtime and its callers share.
struct Inner {
    client: ClusterClient,
    handle: Handle,
    timeout: Duration,
    conn: Mutex<Option<ClusterConnection>>,
    breaker: Breaker,
    /// The sync callers' way to the nodes; its slot map also groups async preloads.
    direct: direct::Direct,
    /// A `CLUSTER SLOTS` for async preloads is under way.
    reading_slots: std::sync::atomic::AtomicBool,
}

impl ClusterStore {
    pub(crate) fn open(
        urls: &[String],
        tls: &TlsFiles,
        timeout: Duration,
        failures: u32,
        cooldown: Duration,
    ) -> Result<Self, Error> {
        let shown = urls
            .iter()
            .map(|u| redacted(u))
            .collect::<Vec<_>>()
            .join(", ");
        let invalid = |reason: String| Error::InvalidRedisUrl {
            url: shown.clone(),
            reason,
        };
        if urls.is_empty() {
            return Err(invalid(
                "a Redis Cluster needs at least one node URL".into(),
            ));
        }
        let mut infos = Vec::with_capacity(urls.len());
        for url in urls {
            infos.push(
                redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| invalid(e.to_string()))?,
            );
        }
        let (tls, certificates) = Tls::load(&infos[0], tls).map_err(&invalid)?;
        let builder = ClusterClientBuilder::new(infos.clone());
        #[cfg(feature = "tls")]
        let builder = match certificates {
            Some(certificates) => builder.certs(certificates),
            None => builder,
        };
        #[cfg(not(feature = "tls"))]
        let _ = certificates;
        let client = builder
            .connection_timeout(timeout)
            // A backstop for requests whose caller has stopped waiting (they stay queued in
            // redis-rs until answered or timed out). What bounds a call is the operation's
            // deadline, which cuts first; redirections and reconnections are retried quickly
            // within it.
            .response_timeout(timeout * 2)
            .min_retry_wait(1)
            .max_retry_wait(timeout.as_millis().clamp(1, 50) as u64)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cache-cluster")
            .enable_all()
            .build()
            .map_err(|e| invalid(format!("cannot start the cluster client's runtime: {e}")))?;
        let store = ClusterStore {
            inner: Arc::new(Inner {
                client,
                handle: runtime.handle().clone(),
                timeout,
                conn: Mutex::new(None),
                breaker: Breaker::new(failures, cooldown),
                direct: direct::Direct::new(&infos, tls),
                reading_slots: std::sync::atomic::AtomicBool::new(false),
            }),
            runtime: Some(runtime),
        };
        store.probe(&shown)?;
        Ok(store)
    }

    /// Connects to the cluster and PINGs a node, within the timeout: credentials the nodes
    /// refuse are an error; a cluster that cannot be reached is logged (once, here) and tried
    /// again by later calls.
    fn probe(&self, shown: &str) -> Result<(), Error> {
        let inner = self.inner.clone();
        let deadline = Instant::now() + self.inner.timeout;
        let result = self.wait(deadline, async move {
            let mut conn = inner.connection().await?;
            conn.route_command(
                redis::cmd("PING"),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
        });
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) => {
                Err(Error::RedisRefused {
                    url: shown.to_owned(),
                    reason: e.to_string(),
                })
            }
            Err(e) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                Err(Error::RedisRefused {
                    url: shown.to_owned(),
                    reason: e.to_string(),
                })
            }
            Err(error) => {
                tracing::warn!(
                    urls = shown,
                    %error,
                    "the redis cluster is not reachable; calls compute without it until it answers"
                );
                Ok(())
            }
        }
    }

    /// Runs `work` on the store's runtime and waits for it, blocking this thread until
    /// `deadline` at most.
    fn wait<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
    ) -> redis::RedisResult<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let result = match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(result) => result,
                Err(_) => Err(out_of_time()),
            };
            let _ = tx.send(result);
        });
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left).unwrap_or_else(|_| Err(out_of_time()))
    }
}

impl Drop for ClusterStore {
    fn drop(&mut self) {
        // May run inside a caller's runtime (a config replaced in an async test), where a
        // runtime cannot be dropped the blocking way.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Inner {
    /// The shared cluster connection, opened (on the store's runtime) when there is none.
    async fn connection(self: &Arc<Self>) -> redis::RedisResult<ClusterConnection> {
        if let Some(conn) = lock(&self.conn).clone() {
            return Ok(conn);
        }
        let this = self.clone();
        let opened = self
            .handle
            .spawn(async move { this.client.get_async_connection().await })
            .await
            .map_err(|e| {
                redis::RedisError::from(std::io::Error::other(format!(
                    "the cluster client's runtime is gone: {e}"
                )))
            })??;
        let mut slot = lock(&self.conn);
        Ok(slot.get_or_insert(opened).clone())
    }

    /// Whether a request may be sent, and by when it must end.
    fn admit(&self, budget: &Budget) -> Result<(Instant, Instant), Failure> {
        if !self.breaker.allows() {
            return Err(Failure::Skipped);
        }
        let started = Instant::now();
        let deadline = budget
            .deadline(self.timeout, started)
            .ok_or(Failure::OutOfTime)?;
        Ok((started, deadline))
    }

    /// Runs one operation (all but [`Op::DeletePrefix`]) by `deadline`.
    async fn perform(
        self: &Arc<Self>,
        op: Owned,
        plan: Option<direct::Plan>,
        deadline: Instant,
    ) -> redis::RedisResult<Reply> {
        let work = async {
            let mut conn = self.connection().await?;
            match op {
                Owned::Get(key) => {
                    let value: Value = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                    Ok(Reply::Value(bulk(value)?))
                }
                Owned::GetMany(keys) => self.get_many(conn, keys, plan).await.map(Reply::Values),
                Owned::Set { key, value, ttl } => {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&key).arg(&value);
                    if let Some(ttl) = ttl {
                        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
                    }
                    let _: Value = cmd.query_async(&mut conn).await?;
                    Ok(Reply::Done)
                }
                Owned::SetMany(entries) => {
                    for (key, value, ttl) in entries {
                        let mut cmd = redis::cmd("SET");
                        cmd.arg(&key).arg(&value);
                        if let Some(ttl) = ttl {
                            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
                        }
                        let _: Value = cmd.query_async(&mut conn).await?;
                    }
                    Ok(Reply::Done)
                }
                Owned::Delete(key) => {
                    let _: Value = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
                    Ok(Reply::Done)
                }
                Owned::Lock { key, token, lease } => {
                    let taken: Value = crate::store::redis::take_lock(&key, &token, lease)
                        .query_async(&mut conn)
                        .await?;
                    Ok(Reply::Locked(!matches!(taken, Value::Nil)))
                }
                Owned::Unlock { key, token } => {
                    let _: Value = crate::store::redis::release_lock(&key, &token)
                        .query_async(&mut conn)
                        .await?;
                    Ok(Reply::Done)
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(out_of_time()),
        }
    }

    /// With a `plan` (the sync side's slot map is fresh): one pipeline of per-slot `MGET`s
    /// to each master, all masters at once. Without one, or when a master answers anything
    /// but values (a slot moved), [`get_many_split`](Self::get_many_split).
    async fn get_many(
        self: &Arc<Self>,
        conn: ClusterConnection,
        keys: Vec<String>,
        plan: Option<direct::Plan>,
    ) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        let Some(plan) = plan else {
            self.read_slots_soon(conn.clone());
            return self.get_many_split(conn, keys).await;
        };
        let keys = Arc::new(keys);
        let batches = Arc::new(plan.batches);
        let mut sent = Vec::with_capacity(plan.by_node.len());
        for ((host, port), list) in plan.by_node {
            let mut pipe = redis::pipe();
            for &b in &list {
                let mut cmd = redis::cmd("MGET");
                for &i in &batches[b].1 {
                    cmd.arg(keys[i].as_str());
                }
                pipe.add_command(cmd);
            }
            let mut conn = conn.clone();
            let count = list.len();
            let task = self.handle.spawn(async move {
                conn.route_pipeline(
                    pipe,
                    0,
                    count,
                    SingleNodeRoutingInfo::ByAddress { host, port },
                )
                .await
            });
            sent.push((list, task));
        }
        let mut values: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let mut complete = true;
        for (list, task) in sent {
            let replies = task.await.ok().and_then(Result::ok);
            let Some(replies) = replies.filter(|r| r.len() == list.len()) else {
                complete = false;
                continue;
            };
            for (&b, reply) in list.iter().zip(replies) {
                let indices = &batches[b].1;
                match reply {
                    Value::Array(items) if items.len() == indices.len() => {
                        for (&i, item) in indices.iter().zip(items) {
                            values[i] = bulk(item)?;
                        }
                    }
                    _ => complete = false,
                }
            }
        }
        if complete {
            return Ok(values);
        }
        // A slot moved, a master failed: the sync side reads the map again, and this preload
        // is asked the way that follows redirections.
        self.direct.mark_stale();
        let keys = Arc::try_unwrap(keys).unwrap_or_else(|keys| (*keys).clone());
        self.get_many_split(conn, keys).await
    }

    /// Reads the slot map in the background (one `CLUSTER SLOTS`, unless one is under way),
    /// for the next async preloads.
    fn read_slots_soon(self: &Arc<Self>, mut conn: ClusterConnection) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.reading_slots.swap(true, Relaxed) {
            return;
        }
        let this = self.clone();
        self.handle.spawn(async move {
            let ask = redis::cmd("CLUSTER").arg("SLOTS").to_owned();
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
            let deadline = tokio::time::Instant::now() + this.timeout;
            if let Ok(Ok(slots)) =
                tokio::time::timeout_at(deadline, conn.route_command(ask, routing)).await
            {
                this.direct.install(slots);
            }
            this.reading_slots.store(false, Relaxed);
        });
    }

    /// `MGET`s of at most [`MGET_BATCH`] keys, all sent at once; redis-rs splits each per
    /// slot, sends the parts to their masters in parallel and answers in the keys' order.
    async fn get_many_split(
        self: &Arc<Self>,
        conn: ClusterConnection,
        keys: Vec<String>,
    ) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        let mut sent = Vec::with_capacity(keys.len().div_ceil(MGET_BATCH));
        for batch in keys.chunks(MGET_BATCH) {
            let mut cmd = Cmd::with_capacity(batch.len() + 1, batch.iter().map(String::len).sum());
            cmd.arg("MGET");
            for key in batch {
                cmd.arg(key);
            }
            let mut conn = conn.clone();
            sent.push(
                self.handle
                    .spawn(async move { cmd.query_async::<Value>(&mut conn).await }),
            );
        }
        let mut values = Vec::with_capacity(keys.len());
        for answer in sent {
            let answer = answer.await.map_err(|e| {
                redis::RedisError::from(std::io::Error::other(format!("MGET task: {e}")))
            })??;
            let Value::Array(items) = answer else {
                return Err(unexpected_reply(format!("MGET answered {answer:?}")));
            };
            for item in items {
                values.push(bulk(item)?);
            }
        }
        if values.len() != keys.len() {
            return Err(unexpected_reply(format!(
                "MGET of {} keys answered {} values",
                keys.len(),
                values.len()
            )));
        }
        Ok(values)
    }

    /// `SCAN` on every master (one round each at a time, each round with its own deadline),
    /// `UNLINK` of what each round found (split per slot by redis-rs). Keys written while it
    /// runs, or moved by a resharding under way, may survive it.
    async fn clear(self: &Arc<Self>, prefix: String) -> Result<u64, Failure> {
        let pattern = scan_pattern(&prefix);
        let masters = self
            .timed(|mut conn| async move {
                let slots: Value = conn
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS").to_owned(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                masters_of(slots)
            })
            .await?;
        let mut removed = 0;
        for first_slot in masters {
            let mut cursor = "0".to_owned();
            loop {
                let scan = redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .to_owned();
                let (next, keys) = self
                    .timed(|mut conn| async move {
                        let answer = conn
                            .route_command(
                                scan,
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                                    Route::new(first_slot, SlotAddr::Master),
                                )),
                            )
                            .await?;
                        scan_reply(answer)
                    })
                    .await?;
                if !keys.is_empty() {
                    let mut unlink = redis::cmd("UNLINK");
                    for key in &keys {
                        unlink.arg(key);
                    }
                    let count = self
                        .timed(
                            |mut conn| async move { unlink.query_async::<Value>(&mut conn).await },
                        )
                        .await?;
                    if let Value::Int(n) = count {
                        removed += n.max(0) as u64;
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    /// One request of a `clear`, with a budget of its own.
    async fn timed<T, F>(
        self: &Arc<Self>,
        request: impl FnOnce(ClusterConnection) -> F,
    ) -> Result<T, Failure>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let (_, deadline) = self.admit(&Budget::default())?;
        let work = async {
            let conn = self.connection().await?;
            request(conn).await
        };
        let result = match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(out_of_time()),
        };
        self.judge(result)
    }

    fn judge<T>(&self, result: redis::RedisResult<T>) -> Result<T, Failure> {
        match result {
            Ok(value) => {
                self.breaker.succeeded();
                Ok(value)
            }
            Err(e) if is_reply(&e) => {
                tracing::debug!(error = %e, "the redis cluster answered with an error");
                self.breaker.succeeded();
                Err(failure(e))
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis cluster request failed");
                if e.to_string().contains("redis_cluster: Unable to") {
                    // The connection's driver is gone: open a new one next time.
                    *lock(&self.conn) = None;
                }
                self.breaker.failed();
                Err(failure(e))
            }
        }
    }
}

impl ClusterStore {
    /// A sync request, on this thread, by `deadline` (see [`direct`]).
    fn run_direct(&self, op: Op<'_>, deadline: Instant) -> redis::RedisResult<Reply> {
        let direct = &self.inner.direct;
        match op {
            Op::Get(key) => {
                let value = direct.request(key, &crate::store::redis::get(key), deadline)?;
                Ok(Reply::Value(bulk(value)?))
            }
            Op::GetMany(names) => {
                let keys: Vec<String> = names.iter().map(name_of).collect();
                direct.get_many(&keys, deadline).map(Reply::Values)
            }
            Op::Set { key, value, ttl } => {
                direct.request(key, &crate::store::redis::set(key, value, ttl), deadline)?;
                Ok(Reply::Done)
            }
            Op::SetMany(entries) => {
                // One request per key, each to its slot's master (not pipelined yet).
                for entry in entries {
                    let set = crate::store::redis::set(entry.key, entry.value, entry.ttl);
                    direct.request(entry.key, &set, deadline)?;
                }
                Ok(Reply::Done)
            }
            Op::Delete(key) => {
                direct.request(key, &crate::store::redis::del(key), deadline)?;
                Ok(Reply::Done)
            }
            Op::Lock { key, token, lease } => {
                let key = lock_key(key);
                let taken = direct.request(
                    &key,
                    &Request::One(crate::store::redis::take_lock(&key, token, lease)),
                    deadline,
                )?;
                Ok(Reply::Locked(!matches!(taken, Value::Nil)))
            }
            Op::Unlock { key, token } => {
                let key = lock_key(key);
                direct.request(
                    &key,
                    &Request::One(crate::store::redis::release_lock(&key, token)),
                    deadline,
                )?;
                Ok(Reply::Done)
            }
            // Announcements reach the processes of a single Redis only (coherence is not
            // offered over a cluster yet): the operation runs alone.
            Op::Announced { op, .. } => self.run_direct(*op, deadline),
            Op::DeletePrefix(_) => unreachable!("clearing a prefix is not one request"),
        }
    }
}

/// The slot Redis puts `key` in: CRC16 (XMODEM) of its hash tag, or of the whole key, modulo
/// 16384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let hashed = std::str::from_utf8(key)
        .ok()
        .and_then(hash_tag)
        .map_or(key, str::as_bytes);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

impl SharedStore for ClusterStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn available(&self) -> bool {
        self.inner.breaker.allows()
    }

    fn run(&self, op: Op<'_>, budget: &Budget) -> Result<Reply, Failure> {
        if let Op::DeletePrefix(prefix) = op {
            // Each round is bounded by its own deadline inside; the whole may take many.
            let inner = self.inner.clone();
            let prefix = prefix.to_owned();
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.inner.handle.spawn(async move {
                let _ = tx.send(inner.clear(prefix).await);
            });
            return rx
                .recv()
                .unwrap_or_else(|_| Err(failure(out_of_time())))
                .map(Reply::Count);
        }
        let (started, deadline) = self.inner.admit(budget)?;
        let result = self.run_direct(op, deadline);
        budget.spend(started);
        self.inner.judge(result)
    }

    fn run_async<'a>(&'a self, op: Op<'a>, budget: &'a Budget) -> Pending<'a> {
        Box::pin(async move {
            if let Op::DeletePrefix(prefix) = op {
                return self.inner.clear(prefix.to_owned()).await.map(Reply::Count);
            }
            if Handle::try_current().is_err() {
                return Err(Failure::NoRuntime);
            }
            let (started, deadline) = self.inner.admit(budget)?;
            let op = Owned::from(op);
            let plan = match &op {
                Owned::GetMany(keys) => self.inner.direct.plan_now(keys),
                _ => None,
            };
            let result = self.inner.perform(op, plan, deadline).await;
            budget.spend(started);
            self.inner.judge(result)
        })
    }
}

/// An [`Op`] with its keys and bytes owned, to travel to the store's runtime.
enum Owned {
    Get(String),
    GetMany(Vec<String>),
    Set {
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    SetMany(Vec<(String, Vec<u8>, Option<Duration>)>),
    Delete(String),
    Lock {
        key: String,
        token: String,
        lease: Duration,
    },
    Unlock {
        key: String,
        token: String,
    },
}

impl From<Op<'_>> for Owned {
    fn from(op: Op<'_>) -> Self {
        match op {
            Op::Get(key) => Owned::Get(key.to_owned()),
            Op::GetMany(names) => Owned::GetMany(names.iter().map(name_of).collect()),
            Op::Set { key, value, ttl } => Owned::Set {
                key: key.to_owned(),
                value: value.to_vec(),
                ttl,
            },
            Op::SetMany(entries) => Owned::SetMany(
                entries
                    .iter()
                    .map(|e| (e.key.to_owned(), e.value.to_vec(), e.ttl))
                    .collect(),
            ),
            Op::Delete(key) => Owned::Delete(key.to_owned()),
            Op::Lock { key, token, lease } => Owned::Lock {
                key: lock_key(key).into_owned(),
                token: token.to_owned(),
                lease,
            },
            Op::Unlock { key, token } => Owned::Unlock {
                key: lock_key(key).into_owned(),
                token: token.to_owned(),
            },
            Op::Announced { op, .. } => Owned::from(*op),
            Op::DeletePrefix(_) => unreachable!("clearing a prefix is not one request"),
        }
    }
}

fn name_of(name: &RemoteName<'_>) -> String {
    let mut out = String::new();
    name.write_to(|piece| out.push_str(piece));
    out
}

/// The part of `key` Redis hashes to find its slot: the text between the first `{` and the
/// first `}` after it when that is not empty (a *hash tag*), else the whole key.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

/// The name a lock is taken under in a cluster, on the slot of the value it guards.
///
/// The read path names the lock of the value key `K` `K:lock` (see `lock.rs`). Redis hashes
/// `K:lock` and `K` alike only when `K` has a hash tag; otherwise the lock would land on
/// another slot, most often on another master (and fail over apart from its value). So:
/// - `K` has a hash tag (`app:f:v0:{page42}\:7`): `K:lock` as is, the tag decides both;
/// - `K` has no `}`: `{K}:lock`, whose tag is the whole of `K`;
/// - otherwise (a `}` without a tag before it): `{t}K:lock`, with `t` a short text found to
///   hash to `K`'s slot.
///
/// Any other key (not ending in `:lock`) is left alone.
pub(crate) fn lock_key(key: &str) -> Cow<'_, str> {
    let Some(value_key) = key.strip_suffix(":lock") else {
        return Cow::Borrowed(key);
    };
    if hash_tag(value_key).is_some() {
        return Cow::Borrowed(key);
    }
    if !value_key.contains('}') {
        return Cow::Owned(format!("{{{value_key}}}:lock"));
    }
    let slot = Slot::for_key(value_key);
    let tag = (0u32..)
        .map(|n| n.to_string())
        .find(|tag| Slot::for_key(tag) == slot)
        .unwrap_or_default();
    Cow::Owned(format!("{{{tag}}}{key}"))
}

/// A `SCAN ... MATCH` pattern for keys beginning with `prefix`.
fn scan_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// One slot of each master, from a `CLUSTER SLOTS` answer (a SCAN is routed by it).
fn masters_of(slots: Value) -> redis::RedisResult<Vec<u16>> {
    let Value::Array(ranges) = slots else {
        return Err(unexpected_reply(format!(
            "CLUSTER SLOTS answered {slots:?}"
        )));
    };
    let mut masters: Vec<(Vec<u8>, u16)> = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Array(master))) = (parts.first(), parts.get(2))
        else {
            continue;
        };
        let id = match master.get(2) {
            Some(Value::BulkString(id)) => id.clone(),
            _ => format!("{master:?}").into_bytes(),
        };
        if (0..SLOTS as i64).contains(start) && !masters.iter().any(|(known, _)| *known == id) {
            masters.push((id, *start as u16));
        }
    }
    Ok(masters.into_iter().map(|(_, slot)| slot).collect())
}

fn scan_reply(answer: Value) -> redis::RedisResult<(String, Vec<Vec<u8>>)> {
    let Value::Array(mut parts) = answer else {
        return Err(unexpected_reply(format!("SCAN answered {answer:?}")));
    };
    let (Some(Value::Array(keys)), Some(Value::BulkString(cursor))) = (parts.pop(), parts.pop())
    else {
        return Err(unexpected_reply("a SCAN reply of another shape".into()));
    };
    let keys = keys
        .into_iter()
        .filter_map(|key| match key {
            Value::BulkString(key) => Some(key),
            _ => None,
        })
        .collect();
    Ok((String::from_utf8_lossy(&cursor).into_owned(), keys))
}

/// The bytes of a `GET` / `MGET` item.
fn bulk(value: Value) -> redis::RedisResult<Option<Vec<u8>>> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        other => Err(unexpected_reply(format!("expected bytes, got {other:?}"))),
    }
}

fn unexpected_reply(what: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected answer",
        what,
    ))
}

fn out_of_time() -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis cluster operation ran out of time",
    )
    .into()
}

/// A redis-rs error as the read path sees it: an error reply keeps its code.
fn failure(e: redis::RedisError) -> Failure {
    Failure::Store(StoreError {
        store: KIND,
        refusal: is_reply(&e).then(|| e.code().unwrap_or("ERR").to_owned()),
        message: e.to_string(),
    })
}

/// Whether `e` is an error reply of a node (OOM, NOPERM...): the node is alive. Redirections
/// and `CLUSTERDOWN` are not: redis-rs follows the former itself, and the latter means the
/// slot has no master right now.
fn is_reply(e: &redis::RedisError) -> bool {
    !e.is_io_error()
        && !e.is_timeout()
        && !matches!(
            e.code(),
            Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN")
        )
        && e.code().is_some()
}

#[cfg(test)]
mod tests {
    use super::{hash_tag, lock_key, Slot};

    fn slot(key: &str) -> Slot {
        Slot::for_key(key)
    }

    #[test]
    fn a_lock_lives_on_its_values_slot() {
        for key in [
            "app:f:v0:7",
            "f:v0:[1,2,]",
            "app:f:v0:{page42}\\:7",
            "app:f:v0:a}b",
            "app:f:v0:{}x}",
            "{}:v0:}}",
        ] {
            let lock = lock_key(&format!("{key}:lock")).into_owned();
            assert_eq!(slot(&lock), slot(key), "{key} -> {lock}");
            assert!(lock.ends_with(":lock"), "{lock}");
        }
        // Without the hash tag the two would (almost always) differ.
        assert_ne!(slot("app:f:v0:7:lock"), slot("app:f:v0:7"));
        assert_eq!(lock_key("app:f:v0:7:lock"), "{app:f:v0:7}:lock");
        assert_eq!(lock_key("plain"), "plain");
    }

    #[test]
    fn slots_as_redis_computes_them() {
        for key in [
            "foo",
            "123456789",
            "app:f:v0:7",
            "{page42}x",
            "a{}b",
            "",
            "{user1000}.following",
        ] {
            assert_eq!(
                Slot::new(super::slot_of(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
        assert_eq!(super::slot_of(b"foo"), 12182);
    }

    #[test]
    fn hash_tags_as_redis_reads_them() {
        assert_eq!(hash_tag("a{b}c"), Some("b"));
        assert_eq!(hash_tag("a{}c{d}"), None);
        assert_eq!(hash_tag("a{b"), None);
        assert_eq!(hash_tag("{a}{b}"), Some("a"));
    }
}
