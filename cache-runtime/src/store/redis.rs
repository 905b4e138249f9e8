//! L2: Redis, reached with short timeouts through a circuit breaker.
//!
//! Sync callers use a small pool of blocking connections (no async runtime needed, see
//! [`blocking`]); async callers share one multiplexed connection and never block their runtime
//! thread. A connection that failed (I/O error, timeout, a reply out of step) is dropped and a
//! new one is opened on a later call, so a restarted server is used again without restarting
//! the process; an error reply of the server (OOM, WRONGTYPE, NOPERM) keeps its connection.
//!
//! Every operation ends by a deadline: one timeout after it starts, or earlier when the call
//! it is part of has spent its [`Budget`] (two timeouts) on Redis already.

mod blocking;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    ParsingError, Pipeline, Value,
};

use crate::breaker::Breaker;
use crate::config::{redacted, Error};
use crate::flight::lock;
use crate::key::RemoteName;

use blocking::{Answer, Connection, OpenError};

/// Most keys asked in one MGET. One command over thousands of keys would hold Redis' single
/// thread (and every other client) for milliseconds and build one huge reply; batches of this
/// size stay in the tens of microseconds each and are still sent in a single round-trip
/// (pipelined).
pub(crate) const MGET_BATCH: usize = 256;

/// Idle blocking connections kept for reuse.
const IDLE_CONNECTIONS: usize = 16;

/// How many timeouts one call may spend on Redis in all, over its requests.
const CALL_BUDGET_TIMEOUTS: u32 = 2;

/// Why a Redis operation did not give an answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The circuit breaker is open: the request was not sent.
    Skipped,
    /// The call already spent its time budget on Redis: the request was not sent.
    OutOfTime,
    /// No tokio runtime to drive an async request on.
    NoRuntime,
    /// The request failed or timed out.
    Redis(redis::RedisError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Skipped => f.write_str("skipped: circuit breaker open"),
            Failure::OutOfTime => f.write_str("skipped: the call spent its time on redis"),
            Failure::NoRuntime => f.write_str("no tokio runtime to run an async redis request on"),
            Failure::Redis(e) => write!(f, "redis: {e}"),
        }
    }
}

impl Failure {
    /// The server's error code (`NOPERM`, `OOM`, `WRONGTYPE`, ...) when this is an error
    /// reply.
    pub(crate) fn reply_code(&self) -> Option<&str> {
        match self {
            Failure::Redis(e) if is_reply(e) => e.code(),
            _ => None,
        }
    }
}

/// What one call may still spend waiting on Redis: [`CALL_BUDGET_TIMEOUTS`] timeouts over
/// all its requests, each of which also ends one timeout after it starts.
#[derive(Default)]
pub(crate) struct Budget {
    spent_nanos: AtomicU64,
}

impl Budget {
    fn deadline(&self, timeout: Duration, now: Instant) -> Option<Instant> {
        let spent = Duration::from_nanos(self.spent_nanos.load(Relaxed));
        let left = (timeout * CALL_BUDGET_TIMEOUTS).saturating_sub(spent);
        (!left.is_zero()).then(|| now + left.min(timeout))
    }

    fn spend(&self, since: Instant) {
        let nanos = since.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.spent_nanos.fetch_add(nanos, Relaxed);
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

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
use tls::Tls;

/// Without the `tls` feature: no TLS settings (redis-rs refuses `rediss://` URLs).
#[cfg(not(feature = "tls"))]
pub(crate) struct Tls;

#[cfg(not(feature = "tls"))]
impl Tls {
    fn load(
        _: &ConnectionInfo,
        _: &TlsFiles,
    ) -> Result<(Tls, Option<std::convert::Infallible>), String> {
        Ok((Tls, None))
    }
}

pub(crate) struct RedisStore {
    client: Client,
    info: ConnectionInfo,
    tls: Tls,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    shared: Mutex<Option<MultiplexedConnection>>,
    breaker: Breaker,
}

/// One request: a single command or a pipeline.
pub(crate) enum Request {
    One(Cmd),
    Many(Pipeline),
}

impl RedisStore {
    pub(crate) fn open(
        url: &str,
        tls: &TlsFiles,
        timeout: Duration,
        failures: u32,
        cooldown: Duration,
    ) -> Result<Self, Error> {
        let invalid = |e: redis::RedisError| Error::InvalidRedisUrl {
            url: redacted(url),
            reason: e.to_string(),
        };
        let info = url.into_connection_info().map_err(invalid)?;
        let (tls, certificates) = Tls::load(&info, tls).map_err(|reason| tls_error(url, reason))?;
        let client = match certificates {
            #[cfg(feature = "tls")]
            Some(certificates) => Client::build_with_tls(info.clone(), certificates)
                .map_err(|e| tls_error(url, e.to_string()))?,
            _ => Client::open(info.clone()).map_err(invalid)?,
        };
        let store = RedisStore {
            client,
            info,
            tls,
            timeout,
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
            breaker: Breaker::new(failures, cooldown),
        };
        store.probe(url)?;
        Ok(store)
    }

    /// Opens one connection and PINGs, within the timeout: a server that answers and refuses
    /// the credentials or the db index is an error; one that cannot be reached is logged
    /// (once, here) and tried again by later calls.
    fn probe(&self, url: &str) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeout;
        let refused = |reason: String| Error::RedisRefused {
            url: redacted(url),
            reason,
        };
        let error = match Connection::open(&self.info, &self.tls, deadline) {
            Err(OpenError::Refused(reason)) => return Err(refused(reason)),
            Err(OpenError::Unreachable(error)) => error,
            Ok(mut conn) => {
                let ping = Request::One(redis::cmd("PING"));
                match conn.request::<Value>(&ping, deadline) {
                    Ok(Answer::Refused(e)) if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) => {
                        return Err(refused(e.to_string()))
                    }
                    Ok(_) => {
                        self.park(conn);
                        return Ok(());
                    }
                    Err(error) => error,
                }
            }
        };
        tracing::warn!(
            url = %redacted(url),
            %error,
            "redis is not reachable; calls compute without it until it answers"
        );
        Ok(())
    }

    /// Whether requests may be sent now (the circuit breaker is closed or probing).
    pub(crate) fn available(&self) -> bool {
        self.breaker.allows()
    }

    /// Sends `request` on a blocking connection, within the call's `budget`.
    pub(crate) fn run<T: FromRedisValue>(
        &self,
        request: &Request,
        budget: &Budget,
    ) -> Result<T, Failure> {
        if !self.breaker.allows() {
            return Err(Failure::Skipped);
        }
        let started = Instant::now();
        let Some(deadline) = budget.deadline(self.timeout, started) else {
            return Err(Failure::OutOfTime);
        };
        let result = self.run_blocking(request, deadline);
        budget.spend(started);
        self.judge(result)
    }

    fn run_blocking<T: FromRedisValue>(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> redis::RedisResult<T> {
        let pooled = lock(&self.idle).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => Connection::open(&self.info, &self.tls, deadline)?,
        };
        match conn.request(request, deadline) {
            Ok(answer) => {
                // An error reply (OOM, WRONGTYPE, NOPERM...) was read whole: the connection is
                // as good as after any other answer.
                self.park(conn);
                match answer {
                    Answer::Value(value) => Ok(value),
                    Answer::Refused(e) => Err(e),
                }
            }
            Err(e) => {
                if e.is_io_error() {
                    // The server may have gone away (restarted): the other pooled connections
                    // are as dead as this one, and finding that out one request (and one
                    // breaker cool-down) each would keep a restarted server unused for many
                    // cool-downs.
                    lock(&self.idle).clear();
                }
                // Anything else (a reply that did not parse): the connection may be out of
                // step with the server; it is dropped.
                Err(e)
            }
        }
    }

    /// Sends `request` on the shared multiplexed connection, within the call's `budget`.
    pub(crate) async fn run_async<T: FromRedisValue>(
        &self,
        request: &Request,
        budget: &Budget,
    ) -> Result<T, Failure> {
        if !self.breaker.allows() {
            return Err(Failure::Skipped);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Failure::NoRuntime);
        }
        let started = Instant::now();
        let Some(deadline) = budget.deadline(self.timeout, started) else {
            return Err(Failure::OutOfTime);
        };
        let exchange = async {
            let mut conn = self.multiplexed().await?;
            match request {
                Request::One(cmd) => cmd.query_async(&mut conn).await,
                Request::Many(pipe) => pipe.query_async(&mut conn).await,
            }
        };
        let result = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis operation ran out of time",
            )
            .into()),
        };
        budget.spend(started);
        if result.as_ref().is_err_and(|e| !is_reply(e)) {
            // The connection may be dead (server restarted, its runtime gone) or out of time:
            // open a fresh one next time. An error reply says nothing against it.
            *lock(&self.shared) = None;
        }
        self.judge(result)
    }

    fn judge<T>(&self, result: redis::RedisResult<T>) -> Result<T, Failure> {
        match result {
            Ok(value) => {
                self.breaker.succeeded();
                Ok(value)
            }
            Err(e) if is_reply(&e) => {
                // The server is alive and answering: nothing for the breaker to spare calls.
                tracing::debug!(error = %e, "redis answered with an error");
                self.breaker.succeeded();
                Err(Failure::Redis(e))
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis request failed");
                self.breaker.failed();
                Err(Failure::Redis(e))
            }
        }
    }

    fn park(&self, conn: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    async fn multiplexed(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = lock(&self.shared).clone() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *lock(&self.shared) = Some(conn.clone());
        Ok(conn)
    }
}

#[cfg(feature = "tls")]
fn tls_error(url: &str, reason: String) -> Error {
    Error::InvalidTls {
        url: redacted(url),
        reason,
    }
}

#[cfg(not(feature = "tls"))]
fn tls_error(url: &str, reason: String) -> Error {
    Error::InvalidRedisUrl {
        url: redacted(url),
        reason,
    }
}

/// Whether `e` is an error reply of the server (OOM, WRONGTYPE, NOPERM, ...), read whole:
/// the connection it came on is still in step, and the server alive.
fn is_reply(e: &redis::RedisError) -> bool {
    !e.is_io_error() && e.code().is_some()
}

/// `GET key`.
pub(crate) fn get(key: &str) -> Request {
    Request::One(redis::cmd("GET").arg(key).to_owned())
}

/// `SET key value [PX ttl]`.
pub(crate) fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Request {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if let Some(ttl) = ttl {
        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
    }
    Request::One(cmd)
}

/// `DEL key`.
pub(crate) fn del(key: &str) -> Request {
    Request::One(redis::cmd("DEL").arg(key).to_owned())
}

/// MGETs over many keys in batches of [`MGET_BATCH`], sent in one round-trip (pipelined when
/// there is more than one batch). Keys are written straight into the commands.
pub(crate) struct Mget {
    batches: Vec<Cmd>,
    in_last: usize,
    /// Keys announced but not yet added, to size the commands' buffers.
    to_come: usize,
    /// The key being added, built here in one piece (reused).
    name: Vec<u8>,
}

impl Mget {
    /// An MGET expecting about `keys` keys.
    pub(crate) fn with_capacity(keys: usize) -> Self {
        Mget {
            batches: Vec::new(),
            in_last: 0,
            to_come: keys,
            name: Vec::new(),
        }
    }

    /// Adds a key; the answers come back in the order the keys were added.
    pub(crate) fn key(&mut self, key: &RemoteName<'_>) {
        self.name.clear();
        key.write_to(|piece| self.name.extend_from_slice(piece.as_bytes()));
        if self.batches.is_empty() || self.in_last == MGET_BATCH {
            // Room for this batch's keys if they are about as long as this one.
            let keys = self.to_come.clamp(1, MGET_BATCH);
            let mut cmd = Cmd::with_capacity(keys + 1, 4 + keys * self.name.len());
            cmd.arg("MGET");
            self.batches.push(cmd);
            self.in_last = 0;
        }
        self.in_last += 1;
        self.to_come = self.to_come.saturating_sub(1);
        let cmd = self.batches.last_mut().expect("a batch was just ensured");
        cmd.arg(self.name.as_slice());
    }

    /// The request to send; its answer reads as [`Values`].
    pub(crate) fn request(mut self) -> Request {
        if self.batches.len() == 1 {
            return Request::One(self.batches.pop().expect("one batch"));
        }
        let mut pipe = redis::pipe();
        for cmd in self.batches {
            pipe.add_command(cmd);
        }
        Request::Many(pipe)
    }
}

/// The answer to an [`Mget`]: one optional value per key, in key order, whether it came as
/// one MGET reply or as a pipeline of them.
pub(crate) struct Values(pub(crate) Vec<Option<Vec<u8>>>);

impl FromRedisValue for Values {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut values = Vec::new();
        flatten(value, &mut values, true)?;
        Ok(Values(values))
    }
}

/// Appends the values of an MGET reply (`nested`: or of a pipeline of MGET replies).
fn flatten(value: Value, out: &mut Vec<Option<Vec<u8>>>, nested: bool) -> Result<(), ParsingError> {
    let Value::Array(items) = value else {
        return Err(ParsingError::from(format!("MGET answered {value:?}")));
    };
    out.reserve(items.len());
    for item in items {
        match item {
            Value::Nil => out.push(None),
            Value::BulkString(bytes) => out.push(Some(bytes)),
            batch @ Value::Array(_) if nested => flatten(batch, out, false)?,
            other => return Err(ParsingError::from(format!("MGET answered {other:?}"))),
        }
    }
    Ok(())
}
