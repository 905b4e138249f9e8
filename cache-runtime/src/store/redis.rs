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

pub(crate) mod blocking;
mod subscriber;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    ParsingError, Pipeline, Value,
};

use crate::breaker::Breaker;
use crate::error::{redacted, Error};
use crate::key::RemoteName;
use crate::store::{
    Budget, Event, Failure, Op, Pending, Reply, SharedStore, StoreError, Subscription, TlsFiles,
};
use crate::sync::lock;

use blocking::{Answer, Connection, OpenError};

/// Most keys asked in one MGET. One command over thousands of keys would hold Redis' single
/// thread (and every other client) for milliseconds and build one huge reply; batches of this
/// size stay in the tens of microseconds each and are still sent in a single round-trip
/// (pipelined).
pub(crate) const MGET_BATCH: usize = 256;

/// Idle blocking connections kept for reuse.
const IDLE_CONNECTIONS: usize = 16;

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub(crate) use tls::Tls;

/// Without the `tls` feature: no TLS settings (redis-rs refuses `rediss://` URLs).
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(crate) struct Tls;

#[cfg(not(feature = "tls"))]
impl Tls {
    pub(crate) fn load(
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
    /// Whether the server answered the `PING` of [`RedisStore::probe`].
    answered: std::sync::atomic::AtomicBool,
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
            answered: std::sync::atomic::AtomicBool::new(false),
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
                        self.answered
                            .store(true, std::sync::atomic::Ordering::Relaxed);
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

    /// Sends `request` on a blocking connection, within the call's `budget`.
    fn request<T: FromRedisValue>(&self, request: &Request, budget: &Budget) -> Result<T, Failure> {
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
    async fn request_async<T: FromRedisValue>(
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
                Err(failure(e))
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis request failed");
                self.breaker.failed();
                Err(failure(e))
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

/// Keys one `SCAN` round asks for when clearing a prefix (and at most as many per `UNLINK`).
const SCAN_COUNT: usize = 500;

impl SharedStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn available(&self) -> bool {
        self.breaker.allows()
    }

    fn run(&self, op: Op<'_>, budget: &Budget) -> Result<Reply, Failure> {
        if let Op::DeletePrefix(prefix) = op {
            let mut clear = Clear::new(prefix);
            while let Some(request) = clear.next_request() {
                // Each round has a budget of its own: a large prefix takes many.
                let answer = self.request::<Value>(&request, &Budget::default())?;
                clear.answer(answer)?;
            }
            return Ok(Reply::Count(clear.removed));
        }
        if let Op::Announced {
            op: op @ Op::DeletePrefix(_),
            channel,
            message,
        } = op
        {
            let reply = self.run(*op, budget)?;
            self.request::<Value>(&publish(channel, message), &Budget::default())?;
            return Ok(reply);
        }
        let request = request_for(&op);
        let answer = self.request::<Value>(&request, budget)?;
        reply_for(&op, answer)
    }

    fn answered_at_open(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn subscribe(
        &self,
        channel: &str,
        events: Box<dyn FnMut(Event<'_>) + Send>,
    ) -> Option<Subscription> {
        let target = subscriber::Target {
            info: self.info.clone(),
            tls: self.tls.clone(),
            timeout: self.timeout,
        };
        subscriber::start(target, channel.to_owned(), events)
    }

    fn run_async<'a>(&'a self, op: Op<'a>, budget: &'a Budget) -> Pending<'a> {
        Box::pin(async move {
            if let Op::DeletePrefix(prefix) = op {
                let mut clear = Clear::new(prefix);
                while let Some(request) = clear.next_request() {
                    let answer = self
                        .request_async::<Value>(&request, &Budget::default())
                        .await?;
                    clear.answer(answer)?;
                }
                return Ok(Reply::Count(clear.removed));
            }
            if let Op::Announced {
                op: op @ Op::DeletePrefix(_),
                channel,
                message,
            } = op
            {
                let reply = self.run_async(*op, budget).await?;
                let publish = publish(channel, message);
                self.request_async::<Value>(&publish, &Budget::default())
                    .await?;
                return Ok(reply);
            }
            let request = request_for(&op);
            let answer = self.request_async::<Value>(&request, budget).await?;
            reply_for(&op, answer)
        })
    }
}

/// The command(s) for one operation (all but [`Op::DeletePrefix`], see [`Clear`]).
fn request_for(op: &Op<'_>) -> Request {
    match *op {
        Op::Get(key) => get(key),
        Op::GetMany(names) => {
            let mut mget = Mget::with_capacity(names.len());
            for name in names {
                mget.key(name);
            }
            mget.request()
        }
        Op::Set { key, value, ttl } => set(key, value, ttl),
        Op::SetMany(entries) => {
            // One SET per entry, pipelined: one round-trip, and each keeps its own expiry.
            let mut pipe = redis::pipe();
            for entry in entries {
                if let Request::One(cmd) = set(entry.key, entry.value, entry.ttl) {
                    pipe.add_command(cmd);
                }
            }
            Request::Many(pipe)
        }
        Op::Delete(key) => del(key),
        Op::Lock { key, token, lease } => Request::One(take_lock(key, token, lease)),
        Op::Unlock { key, token } => Request::One(release_lock(key, token)),
        Op::Announced {
            op,
            channel,
            message,
        } => {
            // The operation and its announcement in one round-trip; the announcement is
            // sent only once the operation's command is (Redis runs them in order).
            let mut pipe = redis::pipe();
            // An error reply to the operation comes back as a value (see `reply_for`): the
            // connection stays in use, as after any error reply.
            pipe.ignore_errors();
            match request_for(op) {
                Request::One(cmd) => pipe.add_command(cmd),
                Request::Many(inner) => {
                    for cmd in inner.cmd_iter() {
                        pipe.add_command(cmd.clone());
                    }
                    &mut pipe
                }
            };
            if let Request::One(cmd) = publish(channel, message) {
                pipe.add_command(cmd);
            }
            Request::Many(pipe)
        }
        Op::DeletePrefix(_) => unreachable!("clearing a prefix takes several requests"),
    }
}

/// `PUBLISH channel message`.
fn publish(channel: &str, message: &[u8]) -> Request {
    Request::One(redis::cmd("PUBLISH").arg(channel).arg(message).to_owned())
}

/// Reads Redis' answer to `op`.
fn reply_for(op: &Op<'_>, answer: Value) -> Result<Reply, Failure> {
    let unexpected = |answer: &Value| Failure::unexpected("redis", op, answer);
    match (op, answer) {
        (Op::Get(_), Value::Nil) => Ok(Reply::Value(None)),
        (Op::Get(_), Value::BulkString(bytes)) => Ok(Reply::Value(Some(bytes))),
        (Op::GetMany(names), answer) => {
            let mut values = Vec::with_capacity(names.len());
            if flatten(answer, &mut values, true).is_err() || values.len() != names.len() {
                return Err(Failure::unexpected(
                    "redis",
                    op,
                    format!("{} values", values.len()),
                ));
            }
            Ok(Reply::Values(values))
        }
        (Op::Set { .. }, Value::Okay | Value::SimpleString(_)) => Ok(Reply::Done),
        (Op::SetMany(entries), Value::Array(answers))
            if answers.len() == entries.len()
                && answers
                    .iter()
                    .all(|a| matches!(a, Value::Okay | Value::SimpleString(_))) =>
        {
            Ok(Reply::Done)
        }
        (Op::Delete(_) | Op::Unlock { .. }, Value::Int(_)) => Ok(Reply::Done),
        (Op::Lock { .. }, Value::Okay | Value::SimpleString(_)) => Ok(Reply::Locked(true)),
        (Op::Lock { .. }, Value::Nil) => Ok(Reply::Locked(false)),
        // The operation's reply, then PUBLISH's count of receivers.
        (Op::Announced { op, .. }, Value::Array(mut replies)) if replies.len() == 2 => {
            replies.pop();
            match replies.pop().unwrap_or(Value::Nil) {
                Value::ServerError(error) => Err(failure(error.into())),
                reply => reply_for(op, reply),
            }
        }
        (_, answer) => Err(unexpected(&answer)),
    }
}

/// Removing every key under a prefix: `SCAN` rounds with a `MATCH` pattern, each followed by
/// an `UNLINK` of what it found (freed in the background, so Redis is never held long).
struct Clear {
    pattern: String,
    cursor: Option<String>,
    to_unlink: Vec<Vec<u8>>,
    removed: u64,
}

impl Clear {
    fn new(prefix: &str) -> Self {
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        Clear {
            pattern,
            cursor: Some("0".into()),
            to_unlink: Vec::new(),
            removed: 0,
        }
    }

    /// The next request, or `None` when the scan is over and everything found is unlinked.
    fn next_request(&mut self) -> Option<Request> {
        if !self.to_unlink.is_empty() {
            let mut cmd = redis::cmd("UNLINK");
            for key in self.to_unlink.drain(..) {
                cmd.arg(key);
            }
            return Some(Request::One(cmd));
        }
        let cursor = self.cursor.as_ref()?;
        Some(Request::One(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned(),
        ))
    }

    fn answer(&mut self, answer: Value) -> Result<(), Failure> {
        match answer {
            Value::Int(n) => {
                self.removed += n.max(0) as u64;
                Ok(())
            }
            Value::Array(mut parts) if parts.len() == 2 => {
                let keys = parts.pop();
                let cursor = parts.pop();
                let (Some(Value::BulkString(cursor)), Some(Value::Array(keys))) = (cursor, keys)
                else {
                    return Err(self.odd("a SCAN reply of another shape"));
                };
                let cursor = String::from_utf8_lossy(&cursor).into_owned();
                self.cursor = (cursor != "0").then_some(cursor);
                for key in keys {
                    if let Value::BulkString(key) = key {
                        self.to_unlink.push(key);
                    }
                }
                Ok(())
            }
            other => Err(self.odd(&format!("{other:?}"))),
        }
    }

    fn odd(&self, what: &str) -> Failure {
        Failure::Store(StoreError {
            store: "redis",
            refusal: None,
            message: format!("clearing `{}`: unexpected answer {what}", self.pattern),
        })
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

/// A redis-rs error as the read path sees it: an error reply keeps its code (NOPERM, OOM...).
fn failure(e: redis::RedisError) -> Failure {
    Failure::Store(StoreError {
        store: "redis",
        refusal: is_reply(&e).then(|| e.code().unwrap_or("ERR").to_owned()),
        message: e.to_string(),
    })
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

/// `SET key token NX PX lease`: takes a lock unless someone holds it.
pub(crate) fn take_lock(key: &str, token: &str, lease: Duration) -> Cmd {
    redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(lease.as_millis().max(1) as u64)
        .to_owned()
}

/// Deletes a lock only if `token` still holds it: an owner that overran its lease must not
/// release the lock another caller has taken since.
pub(crate) fn release_lock(key: &str, token: &str) -> Cmd {
    const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
         return redis.call('DEL', KEYS[1]) else return 0 end";
    redis::cmd("EVAL")
        .arg(SCRIPT)
        .arg(1)
        .arg(key)
        .arg(token)
        .to_owned()
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
