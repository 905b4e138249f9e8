//! The sync side of the cluster store: the single-Redis store's deadline-bounded blocking
//! connections (`store::redis::blocking`), one small pool per node, and a slot map read with
//! `CLUSTER SLOTS`. No thread is crossed: a sync call costs what it costs on one Redis.
//!
//! - A request goes to the master of its key's slot. `MOVED` updates that slot and marks the
//!   map stale (the next request reads it again: after a failover many slots moved); `ASK`
//!   is followed once with `ASKING`. At most [`REDIRECTS`] hops, all within the deadline.
//! - An I/O error or a timeout drops the connection and that node's idle ones, and marks the
//!   map stale: the node may be gone and its replica promoted.
//! - [`Direct::get_many`] groups the keys by slot and the slots by master, writes one pipeline
//!   of per-slot `MGET`s to every master before reading any answer (so the masters work at
//!   once), then reads them in turn. A slot answered `MOVED` / `ASK` (a resharding) is asked
//!   again on its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, RedisError, RedisResult, Value};

use crate::store::redis::blocking::{Answer, Connection};
use crate::store::redis::{Request, Tls, MGET_BATCH};
use crate::sync::lock;

use super::{slot_of, SLOTS};

/// Most redirections one request follows.
const REDIRECTS: usize = 5;

/// Idle connections kept per node.
const IDLE_PER_NODE: usize = 8;

/// A node's address, as the cluster announces it.
pub(super) type Addr = (String, u16);

/// Where the `MGET`s of a preload go: the keys (their positions) of each per-slot batch, and
/// the batches (their positions) each master gets.
pub(super) struct Plan {
    pub(super) batches: Vec<(u16, Vec<usize>)>,
    pub(super) by_node: Vec<(Addr, Vec<usize>)>,
}

pub(super) struct Direct {
    /// A node URL as given: its settings (credentials, TLS) serve for every node.
    template: ConnectionInfo,
    seeds: Vec<Addr>,
    tls: Tls,
    map: RwLock<SlotMap>,
    stale: AtomicBool,
    refreshing: Mutex<()>,
    idle: Mutex<HashMap<Addr, Vec<Connection>>>,
    /// Rotates the node a refresh asks first.
    turn: AtomicUsize,
}

/// Which master serves each slot (`None`: unknown).
struct SlotMap {
    nodes: Vec<Addr>,
    owner: Vec<Option<u16>>,
}

impl SlotMap {
    fn empty() -> Self {
        SlotMap {
            nodes: Vec::new(),
            owner: vec![None; SLOTS as usize],
        }
    }

    fn node(&self, slot: u16) -> Option<&Addr> {
        let i = self.owner[slot as usize]?;
        self.nodes.get(i as usize)
    }

    fn set(&mut self, slot: u16, addr: Addr) {
        let i = match self.nodes.iter().position(|n| *n == addr) {
            Some(i) => i,
            None => {
                self.nodes.push(addr);
                self.nodes.len() - 1
            }
        };
        self.owner[slot as usize] = Some(i as u16);
    }
}

impl Direct {
    pub(super) fn new(infos: &[ConnectionInfo], tls: Tls) -> Self {
        let seeds = infos.iter().filter_map(addr_of).collect();
        Direct {
            template: infos[0].clone(),
            seeds,
            tls,
            map: RwLock::new(SlotMap::empty()),
            stale: AtomicBool::new(true),
            refreshing: Mutex::new(()),
            idle: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
        }
    }

    /// Sends a single-key `request` to the master of `key`'s slot, following redirections.
    pub(super) fn request(
        &self,
        key: &str,
        request: &Request,
        deadline: Instant,
    ) -> RedisResult<Value> {
        let slot = slot_of(key.as_bytes());
        self.request_slot(slot, request, deadline)
    }

    fn request_slot(&self, slot: u16, request: &Request, deadline: Instant) -> RedisResult<Value> {
        let mut target = self.master(slot, deadline)?;
        let mut asking = false;
        for attempt in 0..=REDIRECTS {
            let answer = if asking {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").ignore();
                match request {
                    Request::One(cmd) => {
                        pipe.add_command(cmd.clone());
                    }
                    Request::Many(many) => {
                        for cmd in many.cmd_iter() {
                            pipe.add_command(cmd.clone());
                        }
                    }
                }
                self.exchange(&target, &Request::Many(pipe), deadline)
                    .map(|v| match v {
                        // The ASKING reply first, then the request's.
                        Value::Array(mut replies) if matches!(request, Request::One(_)) => {
                            replies.pop().unwrap_or(Value::Nil)
                        }
                        Value::Array(mut replies) => {
                            replies.remove(0);
                            Value::Array(replies)
                        }
                        other => other,
                    })
            } else {
                self.exchange(&target, request, deadline)
            };
            match answer {
                Err(e) if e.code() == Some("MOVED") => {
                    let addr = redirect(&e)?;
                    lock_write(&self.map).set(slot, addr.clone());
                    self.stale.store(true, Relaxed);
                    target = addr;
                    asking = false;
                }
                Err(e) if e.code() == Some("ASK") => {
                    target = redirect(&e)?;
                    asking = true;
                }
                // A multi-key request (MGET) while its slot migrates, its keys split between
                // the two nodes: Redis asks to try again shortly. Pause (2 ms, doubling),
                // within the deadline, and start again from the slot's master.
                Err(e) if e.code() == Some("TRYAGAIN") => {
                    let pause = Duration::from_millis(2 << attempt);
                    if Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    std::thread::sleep(pause);
                    target = self.master(slot, deadline)?;
                    asking = false;
                }
                other => return other,
            }
        }
        Err(RedisError::from((
            redis::ErrorKind::Client,
            "too many cluster redirections",
        )))
    }

    /// One exchange with one node: an error reply comes back as an `Err` with its code.
    fn exchange(&self, addr: &Addr, request: &Request, deadline: Instant) -> RedisResult<Value> {
        let mut conn = self.checkout(addr, deadline)?;
        match conn.request::<Value>(request, deadline) {
            Ok(Answer::Value(value)) => {
                self.park(addr, conn);
                Ok(value)
            }
            Ok(Answer::Refused(e)) => {
                self.park(addr, conn);
                Err(e)
            }
            Err(e) => Err(self.lost(addr, e)),
        }
    }

    fn checkout(&self, addr: &Addr, deadline: Instant) -> RedisResult<Connection> {
        if let Some(conn) = lock(&self.idle).get_mut(addr).and_then(Vec::pop) {
            return Ok(conn);
        }
        Connection::open(&self.info_for(addr), &self.tls, deadline).map_err(|e| {
            let e = RedisError::from(e);
            self.lost(addr, e)
        })
    }

    fn park(&self, addr: &Addr, conn: Connection) {
        let mut idle = lock(&self.idle);
        let pool = idle.entry(addr.clone()).or_default();
        if pool.len() < IDLE_PER_NODE {
            pool.push(conn);
        }
    }

    /// A node failed: its idle connections are as dead, and the map may be out of date.
    fn lost(&self, addr: &Addr, e: RedisError) -> RedisError {
        if e.is_io_error() || e.is_timeout() {
            lock(&self.idle).remove(addr);
            self.stale.store(true, Relaxed);
        }
        e
    }

    fn info_for(&self, (host, port): &Addr) -> ConnectionInfo {
        let addr = match self.template.addr() {
            #[cfg(feature = "tls")]
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.clone(), *port),
        };
        self.template.clone().set_addr(addr)
    }

    /// The master of `slot`, reading the slot map first when it is stale or does not know.
    fn master(&self, slot: u16, deadline: Instant) -> RedisResult<Addr> {
        if self.stale.load(Relaxed)
            || self
                .map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .node(slot)
                .is_none()
        {
            self.refresh(deadline);
        }
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .node(slot)
            .cloned()
            .ok_or_else(|| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "no known master serves this slot",
                ))
            })
    }

    /// Reads `CLUSTER SLOTS` from a node that answers (the known masters, then the URLs
    /// given), unless another thread is doing it; each node gets a third of the time left.
    fn refresh(&self, deadline: Instant) {
        let Ok(_only_one) = self.refreshing.try_lock() else {
            return;
        };
        if !self.stale.load(Relaxed)
            && !self
                .map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .nodes
                .is_empty()
        {
            return;
        }
        let mut candidates: Vec<Addr> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .nodes
            .clone();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        if candidates.is_empty() {
            return;
        }
        let start = self.turn.fetch_add(1, Relaxed) % candidates.len();
        candidates.rotate_left(start);
        let ask = Request::One(redis::cmd("CLUSTER").arg("SLOTS").to_owned());
        for addr in candidates.iter().take(3) {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return;
            }
            let attempt = now + left / 3;
            let Ok(slots) = self.exchange(addr, &ask, attempt) else {
                continue;
            };
            if let Some(map) = parse_slots(slots, addr) {
                *lock_write(&self.map) = map;
                self.stale.store(false, Relaxed);
                return;
            }
        }
    }

    /// Groups `keys` by slot (batches of at most [`MGET_BATCH`]) and the batches by master.
    fn plan(
        &self,
        keys: &[String],
        mut master: impl FnMut(u16) -> RedisResult<Addr>,
    ) -> RedisResult<Plan> {
        let mut slots: Vec<(u16, Vec<usize>)> = Vec::new();
        let mut where_slot: HashMap<u16, usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = slot_of(key.as_bytes());
            let at = *where_slot.entry(slot).or_insert_with(|| {
                slots.push((slot, Vec::new()));
                slots.len() - 1
            });
            slots[at].1.push(i);
        }
        let mut batches = Vec::with_capacity(slots.len());
        for (slot, indices) in slots {
            for chunk in indices.chunks(MGET_BATCH) {
                batches.push((slot, chunk.to_vec()));
            }
        }
        let mut by_node: Vec<(Addr, Vec<usize>)> = Vec::new();
        for (b, (slot, _)) in batches.iter().enumerate() {
            let addr = master(*slot)?;
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, list)) => list.push(b),
                None => by_node.push((addr, vec![b])),
            }
        }
        Ok(Plan { batches, by_node })
    }

    /// [`plan`](Self::plan) from the slot map as it is, without any I/O (for async callers):
    /// `None` when the map is stale or does not know a slot.
    pub(super) fn plan_now(&self, keys: &[String]) -> Option<Plan> {
        if self.stale.load(Relaxed) {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        self.plan(keys, |slot| {
            map.node(slot)
                .cloned()
                .ok_or_else(|| RedisError::from((redis::ErrorKind::Client, "slot unknown")))
        })
        .ok()
    }

    /// Takes a `CLUSTER SLOTS` answer that an async caller read (`None` when it does not
    /// parse).
    pub(super) fn install(&self, slots: Value) -> Option<()> {
        let from = self.seeds.first()?.clone();
        let map = parse_slots(slots, &from)?;
        *lock_write(&self.map) = map;
        self.stale.store(false, Relaxed);
        Some(())
    }

    /// Asks for the slot map to be read again by the next sync request.
    pub(super) fn mark_stale(&self) {
        self.stale.store(true, Relaxed);
    }

    /// The values of `keys`, in order: per-slot `MGET`s pipelined to each master, every master
    /// written to before any is read.
    pub(super) fn get_many(
        &self,
        keys: &[String],
        deadline: Instant,
    ) -> RedisResult<Vec<Option<Vec<u8>>>> {
        let Plan { batches, by_node } = self.plan(keys, |slot| self.master(slot, deadline))?;
        let mget = |indices: &[usize]| {
            let mut cmd = redis::cmd("MGET");
            for &i in indices {
                cmd.arg(keys[i].as_str());
            }
            cmd
        };
        // Write every node's pipeline, then read each.
        let mut in_flight = Vec::with_capacity(by_node.len());
        for (addr, list) in &by_node {
            let mut pipe = redis::pipe();
            for &b in list {
                pipe.add_command(mget(&batches[b].1));
            }
            let mut conn = self.checkout(addr, deadline)?;
            let sent = conn
                .send(&Request::Many(pipe), deadline)
                .map_err(|e| self.lost(addr, e))?;
            in_flight.push((addr, list, conn, sent));
        }
        let mut values: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let mut again = Vec::new();
        for (addr, list, mut conn, sent) in in_flight {
            let replies = conn
                .receive(sent, deadline)
                .map_err(|e| self.lost(addr, e))?;
            self.park(addr, conn);
            for (&b, reply) in list.iter().zip(replies) {
                let indices = &batches[b].1;
                match reply {
                    Value::Array(items) if items.len() == indices.len() => {
                        for (&i, item) in indices.iter().zip(items) {
                            values[i] = bulk(item)?;
                        }
                    }
                    Value::ServerError(e) => {
                        let e = RedisError::from(e);
                        if matches!(e.code(), Some("MOVED" | "ASK" | "TRYAGAIN")) {
                            again.push(b);
                        } else {
                            return Err(e);
                        }
                    }
                    other => {
                        return Err(RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "unexpected answer",
                            format!("MGET answered {other:?}"),
                        )))
                    }
                }
            }
        }
        // Slots moving (a resharding): each asked again, following the redirection.
        for b in again {
            let (slot, indices) = &batches[b];
            let reply = self.request_slot(*slot, &Request::One(mget(indices)), deadline)?;
            let Value::Array(items) = reply else {
                return Err(RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "unexpected answer",
                    format!("MGET answered {reply:?}"),
                )));
            };
            for (&i, item) in indices.iter().zip(items) {
                values[i] = bulk(item)?;
            }
        }
        Ok(values)
    }
}

fn lock_write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn addr_of(info: &ConnectionInfo) -> Option<Addr> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
        #[cfg(feature = "tls")]
        ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    }
}

/// Where a `MOVED` / `ASK` points.
fn redirect(e: &RedisError) -> RedisResult<Addr> {
    let (addr, _slot) = e.redirect_node().ok_or_else(|| {
        RedisError::from((redis::ErrorKind::Client, "a redirection without an address"))
    })?;
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        RedisError::from((redis::ErrorKind::Client, "a redirection without a port"))
    })?;
    let port = port.parse().map_err(|_| {
        RedisError::from((redis::ErrorKind::Client, "a redirection with a bad port"))
    })?;
    Ok((host.to_owned(), port))
}

/// A slot map from a `CLUSTER SLOTS` answer (`from`: the node that answered, for masters
/// announced without an address).
fn parse_slots(slots: Value, from: &Addr) -> Option<SlotMap> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    let mut map = SlotMap::empty();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) if !host.is_empty() => {
                String::from_utf8_lossy(host).into_owned()
            }
            _ => from.0.clone(),
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(port)) = (
            u16::try_from(*start),
            u16::try_from(*end),
            u16::try_from(*port),
        ) else {
            continue;
        };
        for slot in start..=end.min(SLOTS - 1) {
            map.set(slot, (host.clone(), port));
        }
    }
    (!map.nodes.is_empty()).then_some(map)
}

fn bulk(value: Value) -> RedisResult<Option<Vec<u8>>> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        other => Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected answer",
            format!("expected bytes, got {other:?}"),
        ))),
    }
}
