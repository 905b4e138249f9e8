//! Shared set-up for the benches: a private `redis-server` on a free loopback port, values
//! written to it the way `cache_runtime` stores them (so that an L1 is cold by construction),
//! and the `cached` crate's Redis store as a contender.

pub mod cluster;

use std::net::TcpListener;
use std::ops::Range;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::codec::{self, DefaultCodec, Header};
use cache_runtime::Key;

/// How long the values the benches write stay in Redis (and fresh once read back).
pub const TTL: Duration = Duration::from_secs(600);

/// Entries in an L1 (`cache_runtime`'s default `capacity`) and in the raw moka floors.
pub const L1_CAPACITY: u64 = 10_000;

/// A `redis-server` child process, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one (from `$REDIS_SERVER` or `redis-server` on `PATH`) and waits for it.
    ///
    /// # Panics
    /// If the binary is missing or the server does not answer within 10 s.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{binary}`: {e}; install redis-server or set REDIS_SERVER")
            });
        let redis = Redis { child, port };
        let started = Instant::now();
        while redis.try_connection().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A blocking connection (the type `cache_runtime` uses for sync calls).
    ///
    /// # Panics
    /// If the server does not answer.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .expect("a connection to the bench redis")
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let mut conn = redis::Client::open(self.url())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A value of about 200 bytes, the size of a small rendered fragment.
pub fn fragment(n: u64) -> String {
    format!("<div class=\"fragment\">{n}</div>{}", "x".repeat(170))
}

/// Starts a private Redis and points both `cache_runtime` (prefix `bench`) and the `cached`
/// crate's Redis store at it.
pub fn redis_for_both() -> Redis {
    let redis = Redis::start();
    cache_runtime::Config::new()
        .redis(redis.url())
        .prefix("bench")
        .install()
        .expect("install");
    // Called before the benches start any thread, so no other thread reads the environment.
    std::env::set_var("CACHED_REDIS_CONNECTION_STRING", redis.url());
    redis
}

/// The `cached` crate's Redis store on the same fragments. It has no in-process layer: every
/// call is a GET.
#[cached::proc_macro::concurrent_cached(
    redis = true,
    ttl_secs = 600,
    map_error = r##"|e| format!("{e:?}")"##
)]
pub fn cached_redis(n: u64) -> Result<String, String> {
    Ok(fragment(n))
}

/// Writes values to Redis for arguments no call has used yet, exactly as `cache_runtime`
/// stores them (envelope + codec), so that the next calls find them in Redis and never in
/// L1. Used in criterion's untimed set-up: an honest cold L1 without emptying L1 (a full L1
/// under churn, as in a long-running server).
pub struct Seeder {
    conn: redis::Connection,
    next: u64,
    written: Vec<String>,
}

impl Seeder {
    /// A seeder with its own connection; arguments start at `first` (keep it clear of the
    /// arguments the bench uses otherwise).
    pub fn new(redis: &Redis, first: u64) -> Self {
        Seeder {
            conn: redis.connection(),
            next: first,
            written: Vec::new(),
        }
    }

    /// Stores `value(n)` under `key(n)` for `count` arguments never used before and returns
    /// them. The keys of the previous call are deleted in the same round-trip, so Redis
    /// stays small however many iterations criterion runs.
    ///
    /// # Panics
    /// If Redis fails or a value cannot be encoded.
    pub fn fresh<V: serde::Serialize>(
        &mut self,
        count: u64,
        key: impl Fn(u64) -> Key,
        value: impl Fn(u64) -> V,
    ) -> Range<u64> {
        let args = self.next..self.next + count;
        self.next += count;
        let header = Header {
            expires_at_ms: Some(unix_millis() + TTL.as_millis() as u64),
            compute_time: Duration::ZERO,
        };
        let mut pipe = redis::pipe();
        if !self.written.is_empty() {
            pipe.cmd("DEL").arg(&self.written).ignore();
        }
        self.written.clear();
        for n in args.clone() {
            let remote = key(n).to_string();
            let bytes = codec::encode::<V, DefaultCodec>(&value(n), header).expect("encodable");
            pipe.cmd("SET")
                .arg(&remote)
                .arg(bytes)
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .ignore();
            self.written.push(remote);
        }
        let () = pipe.query(&mut self.conn).expect("seeding redis");
        args
    }

    /// Fills the L1 of `f` (whose key companion is `key`) to [`L1_CAPACITY`] with values read
    /// from Redis, through preload scopes of 100 keys.
    pub fn fill_l1<V: serde::Serialize>(
        &mut self,
        key: fn(u64) -> Key,
        f: fn(u64) -> V,
        value: impl Fn(u64) -> V,
    ) {
        for _ in 0..L1_CAPACITY / 100 {
            let args = self.fresh(100, key, &value);
            cache_runtime::preload(args.clone().map(key), || args.for_each(|n| drop(f(n))));
        }
    }
}

/// A raw moka cache sized like an L1 ([`L1_CAPACITY`] entries, with a TTL), empty.
pub fn raw_moka() -> moka::sync::Cache<String, String> {
    moka::sync::Cache::builder()
        .max_capacity(L1_CAPACITY)
        .time_to_live(TTL)
        .build()
}

/// A raw moka cache like a full L1: [`L1_CAPACITY`] fragments with a TTL.
pub fn full_moka() -> moka::sync::Cache<String, String> {
    let moka = raw_moka();
    for n in 0..L1_CAPACITY {
        moka.insert(n.to_string(), fragment(n));
    }
    moka.run_pending_tasks();
    moka
}

/// Contenders measured in turns: each round runs every contender once, in an order rotated
/// from round to round, so that a machine whose speed drifts during a run (a shared VM, a
/// loopback whose latency wanders) affects them all alike. Rows that criterion measures one
/// after another can drift apart by more than the differences between them.
#[derive(Default)]
pub struct InTurns<'a> {
    contenders: Vec<(String, Box<dyn FnMut() -> Duration + 'a>)>,
}

impl<'a> InTurns<'a> {
    /// Adds a contender: `run` does its own untimed set-up and returns the time of the part
    /// it measures (see [`timed`]).
    pub fn add(mut self, name: &str, run: impl FnMut() -> Duration + 'a) -> Self {
        self.contenders.push((name.to_owned(), Box::new(run)));
        self
    }

    /// Runs `rounds` rounds and prints each contender's median time, with its ratio to the
    /// first contender's. Returns the medians, in the order the contenders were added.
    pub fn report(mut self, title: &str, rounds: usize) -> Vec<Duration> {
        let count = self.contenders.len();
        let mut times = vec![Vec::with_capacity(rounds); count];
        for round in 0..rounds {
            for turn in 0..count {
                let at = (round + turn) % count;
                times[at].push((self.contenders[at].1)());
            }
        }
        let medians: Vec<Duration> = times
            .iter_mut()
            .map(|samples| {
                samples.sort_unstable();
                samples[samples.len() / 2]
            })
            .collect();
        println!("\n{title}: medians of {rounds} rounds, contenders in turns (order rotated)");
        for ((name, _), median) in self.contenders.iter().zip(&medians) {
            let ratio = median.as_secs_f64() / medians[0].as_secs_f64();
            println!(
                "  {name:<60} {:>10.1} µs  {ratio:>6.2}×",
                median.as_secs_f64() * 1e6
            );
        }
        medians
    }
}

/// How long `f` took (its result is kept from the optimizer).
pub fn timed<R>(f: impl FnOnce() -> R) -> Duration {
    let started = Instant::now();
    std::hint::black_box(f());
    started.elapsed()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The floor of a Redis read: plain bincode values under `bench:raw:{n}`, read back with
/// redis-rs on a blocking connection and decoded with bincode's serde API.
pub struct RawStore {
    conn: redis::Connection,
}

impl RawStore {
    /// Writes `fragment(n)` for every `n` in `args` and keeps the connection for reading.
    ///
    /// # Panics
    /// If Redis fails.
    pub fn with_fragments(redis: &Redis, args: Range<u64>) -> Self {
        let mut conn = redis.connection();
        let mut pipe = redis::pipe();
        for n in args {
            let bytes = bincode::serde::encode_to_vec(fragment(n), bincode::config::standard())
                .expect("encodable");
            pipe.cmd("SET").arg(Self::key(n)).arg(bytes).ignore();
        }
        let () = pipe.query(&mut conn).expect("writing raw values");
        RawStore { conn }
    }

    /// The raw key of fragment `n`.
    pub fn key(n: u64) -> String {
        format!("bench:raw:{n}")
    }

    /// One GET and a decode.
    ///
    /// # Panics
    /// If the value is missing or undecodable.
    pub fn get(&mut self, key: &str) -> String {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query(&mut self.conn)
            .expect("GET");
        decode(&bytes)
    }

    /// One MGET and a decode of every value.
    ///
    /// # Panics
    /// If a value is missing or undecodable.
    pub fn mget(&mut self, keys: &[String]) -> Vec<String> {
        let values: Vec<Vec<u8>> = redis::cmd("MGET")
            .arg(keys)
            .query(&mut self.conn)
            .expect("MGET");
        values.iter().map(|bytes| decode(bytes)).collect()
    }
}

fn decode(bytes: &[u8]) -> String {
    let (value, _): (String, usize) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).expect("bincode");
    value
}
