//! A channel listener: one dedicated connection in a background thread, `SUBSCRIBE`d to one
//! channel, that hands each published message to its owner and comes back after a lost
//! connection (saying so, since messages may have been missed meanwhile).
//!
//! The thread wakes every [`POLL`] to see whether its [`Subscription`] was dropped; an idle
//! connection is `PING`ed after [`HEARTBEAT`], and one that does not answer within the next
//! heartbeat is taken for dead (a silent network failure sends no FIN).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ConnectionInfo, Value};

use super::blocking::{Answer, Connection};
use super::{Request, Tls};
use crate::store::{Event, Subscription};

/// How often the listener looks whether it should stop.
const POLL: Duration = Duration::from_millis(250);
/// Silence after which the connection is `PING`ed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts to connect.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the listener needs to open its connections.
pub(crate) struct Target {
    pub(crate) info: ConnectionInfo,
    pub(crate) tls: Tls,
    pub(crate) timeout: Duration,
}

/// Starts the listener thread.
pub(crate) fn start(
    target: Target,
    channel: String,
    mut events: Box<dyn FnMut(Event<'_>) + Send>,
) -> Option<Subscription> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let spawned = std::thread::Builder::new()
        .name("cache-coherence".into())
        .spawn(move || listen(&target, &channel, &stopped, &mut *events));
    match spawned {
        Ok(_) => Some(Subscription::new(stop)),
        Err(error) => {
            tracing::warn!(%error, "could not start the invalidation listener; L1 is not coherent");
            None
        }
    }
}

fn listen(target: &Target, channel: &str, stop: &AtomicBool, events: &mut dyn FnMut(Event<'_>)) {
    let mut after_loss = false;
    let mut backoff = Duration::from_millis(50);
    while !stop.load(Relaxed) {
        match subscribed(target, channel) {
            Ok(conn) => {
                backoff = Duration::from_millis(50);
                events(Event::Subscribed { after_loss });
                let why = relay(conn, stop, events);
                if stop.load(Relaxed) {
                    return;
                }
                tracing::warn!(%channel, why, "the invalidation connection was lost; reconnecting");
            }
            Err(error) => {
                tracing::debug!(%channel, %error, "could not subscribe for invalidations");
            }
        }
        after_loss = true;
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Relaxed) {
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A connection named after this process, subscribed to `channel`.
fn subscribed(target: &Target, channel: &str) -> Result<Connection, String> {
    let deadline = Instant::now() + target.timeout;
    let mut conn =
        Connection::open(&target.info, &target.tls, deadline).map_err(|e| e.to_string())?;
    let name = format!("cache-coherence-{}", std::process::id());
    let setname = Request::One(redis::cmd("CLIENT").arg("SETNAME").arg(name).to_owned());
    // A server that refuses the name (an ACL without CLIENT) is still listened to.
    if let Ok(Answer::Refused(e)) = conn.request::<Value>(&setname, deadline) {
        tracing::debug!(error = %e, "CLIENT SETNAME refused on the invalidation connection");
    }
    let subscribe = Request::One(redis::cmd("SUBSCRIBE").arg(channel).to_owned());
    conn.send(&subscribe, deadline).map_err(|e| e.to_string())?;
    match conn.receive_one(deadline).map_err(|e| e.to_string())? {
        Value::Array(parts) if is_kind(&parts, b"subscribe") => Ok(conn),
        other => Err(format!("SUBSCRIBE answered {other:?}")),
    }
}

fn is_kind(parts: &[Value], kind: &[u8]) -> bool {
    matches!(parts.first(), Some(Value::BulkString(k)) if k.eq_ignore_ascii_case(kind))
}

/// Hands the connection's messages to `events` until it fails or `stop` is set; says why it
/// ended.
fn relay(mut conn: Connection, stop: &AtomicBool, events: &mut dyn FnMut(Event<'_>)) -> String {
    let mut heard = Instant::now();
    let mut pinged = false;
    while !stop.load(Relaxed) {
        match conn.receive_one(Instant::now() + POLL) {
            Ok(Value::Array(parts)) if is_kind(&parts, b"message") => {
                heard = Instant::now();
                if let Some(Value::BulkString(message)) = parts.get(2) {
                    events(Event::Message(message));
                }
            }
            Ok(_) => {
                // A PONG, or a (un)subscribe confirmation.
                heard = Instant::now();
                pinged = false;
            }
            Err(e) if e.is_timeout() => {
                let silent = heard.elapsed();
                if pinged && silent >= HEARTBEAT * 2 {
                    return "no answer to PING".into();
                }
                if !pinged && silent >= HEARTBEAT {
                    let ping = Request::One(redis::cmd("PING"));
                    if let Err(e) = conn.send(&ping, Instant::now() + POLL) {
                        return e.to_string();
                    }
                    pinged = true;
                }
            }
            Err(e) => return e.to_string(),
        }
    }
    String::new()
}
