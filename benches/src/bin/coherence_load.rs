//! Coherence load: how fast a change made by one process reaches the L1 of the others, and
//! what the announcement costs Redis per write as the fleet grows.
//!
//! ```text
//! cargo run --release -p benches --bin coherence_load -- [--processes 4] [--rounds 200]
//!     [--subscribers 0,10,100] [--publishes 2000]
//! ```
//!
//! It starts its own `redis-server`. **Propagation**: `--processes` reader processes (this
//! program again, as `--worker`) each hold key 1 in L1 and poll it through the `#[cached]`
//! function (their own front table and L1; 100 µs between polls so that two cores are not
//! saturated); this process, the writer, changes the key `--rounds` times — by `f::put`, and
//! by changing the source of truth then `f::invalidate` — stamping each value with the wall
//! clock, and waits until every reader reported it. A reader's latency is from the writer's
//! stamp to its first call that returned the new value (the message, the removal, then a
//! GET, or a recompute for an invalidation). **Publish cost**: with N plain subscriber
//! connections on the channel (N = each of `--subscribers`, standing for N processes), the
//! round-trip of `SET`, of `SET` + `PUBLISH` pipelined (what a write costs a caller with
//! coherence on), and Redis' own time per `PUBLISH` (`INFO commandstats`, which includes
//! writing the message to every subscriber).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use benches::Redis;
use cache_runtime::cached;

const PREFIX: &str = "coherence_load";
const CHANNEL: &str = "cache-runtime:coherence:coherence_load";

thread_local! {
    /// The worker's connection to the source of truth.
    static TRUTH: std::cell::RefCell<Option<redis::Connection>> = const { std::cell::RefCell::new(None) };
}

static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The source of truth of the watched key.
fn truth() -> String {
    TRUTH.with(|conn| {
        let mut conn = conn.borrow_mut();
        let conn = conn.get_or_insert_with(|| {
            redis::Client::open(URL.get().expect("url").as_str())
                .expect("url")
                .get_connection()
                .expect("connection")
        });
        redis::cmd("GET")
            .arg("truth")
            .query::<Option<String>>(conn)
            .expect("GET truth")
            .unwrap_or_default()
    })
}

#[cached(ttl = 600, name = "coherence_load::watched")]
fn watched(n: u64) -> String {
    let _ = n;
    truth()
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// The command line: `--name value` pairs.
struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|arg| arg == name)?;
        Some(
            self.0
                .get(at + 1)
                .unwrap_or_else(|| panic!("{name} needs a value")),
        )
    }

    fn number(&self, name: &str, default: usize) -> usize {
        self.value(name)
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
            .unwrap_or(default)
    }
}

fn install(url: &str) {
    cache_runtime::Config::new()
        .redis(url)
        .prefix(PREFIX)
        .install()
        .expect("install");
}

/// A reader: prints `ready`, then `seen VALUE LATENCY_US` for each change, until `rounds`.
fn worker(url: &str, rounds: usize) {
    URL.set(url.to_owned()).expect("url once");
    install(url);
    let mut last = watched(1);
    println!("ready");
    let give_up = Instant::now() + Duration::from_secs(600);
    let mut seen = 0;
    while seen < rounds && Instant::now() < give_up {
        let now = watched(1);
        if now != last {
            let at = unix_nanos();
            let sent: u128 = now
                .split_once('@')
                .and_then(|(_, stamp)| stamp.parse().ok())
                .unwrap_or(at);
            println!("seen {now} {}", at.saturating_sub(sent) / 1000);
            last = now;
            seen += 1;
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

struct Reader {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The writer's side: latencies (µs) of `put` rounds and of `invalidate` rounds.
fn propagation(redis: &Redis, processes: usize, rounds: usize) -> (Vec<u64>, Vec<u64>) {
    let url = redis.url();
    URL.set(url.clone()).expect("url once");
    install(&url);
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET")
        .arg("truth")
        .arg("v0")
        .query(&mut conn)
        .expect("SET");
    let me = std::env::current_exe().expect("own path");
    let readers: Vec<Reader> = (0..processes)
        .map(|_| {
            let mut child = Command::new(&me)
                .args(["--worker", &url, &rounds.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a reader");
            let stdout = child.stdout.take().expect("stdout");
            let (send, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            Reader { child, lines }
        })
        .collect();
    let next = |reader: &Reader| {
        reader
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a reader answers")
    };
    for reader in &readers {
        assert_eq!(next(reader), "ready");
    }
    let (mut puts, mut invalidations) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let value = format!("v{round}@{}", unix_nanos());
        let by_put = round % 2 == 1;
        if by_put {
            watched::put(1, value.clone());
        } else {
            let _: () = redis::cmd("SET")
                .arg("truth")
                .arg(&value)
                .query(&mut conn)
                .expect("SET truth");
            watched::invalidate(1);
        }
        for reader in &readers {
            let line = next(reader);
            let (seen, latency) = line
                .strip_prefix("seen ")
                .and_then(|rest| rest.rsplit_once(' '))
                .expect("seen VALUE LATENCY");
            assert_eq!(seen, value, "a reader saw another value");
            let latency: u64 = latency.parse().expect("latency");
            if by_put {
                puts.push(latency);
            } else {
                invalidations.push(latency);
            }
        }
    }
    for mut reader in readers {
        reader.child.wait().expect("reader exit");
    }
    puts.sort_unstable();
    invalidations.sort_unstable();
    (puts, invalidations)
}

/// Median and p99 round-trip (µs) of `request`, and Redis' own µs per PUBLISH.
fn publish_cost(redis: &Redis, subscribers: usize, publishes: usize) -> [f64; 5] {
    let mut listeners = Vec::new();
    for _ in 0..subscribers {
        let client = redis::Client::open(redis.url()).expect("url");
        let mut conn = client.get_connection().expect("connection");
        listeners.push(std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(CHANNEL).expect("SUBSCRIBE");
            while let Ok(message) = pubsub.get_message() {
                if message.get_payload_bytes() == b"stop" {
                    break;
                }
            }
        }));
    }
    let mut conn = redis.connection();
    while redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(CHANNEL)
        .query::<(String, usize)>(&mut conn)
        .expect("NUMSUB")
        .1
        < subscribers
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let message = cache_runtime_message();
    let value = benches::fragment(1);
    let mut set_only = Vec::with_capacity(publishes);
    let mut set_publish = Vec::with_capacity(publishes);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut conn)
        .expect("RESETSTAT");
    for _ in 0..publishes {
        // In turns, so that drift hits both alike.
        let started = Instant::now();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(&value)
            .arg("PX")
            .arg(60_000)
            .query(&mut conn)
            .expect("SET");
        set_only.push(started.elapsed());
        let started = Instant::now();
        let _: (String, u64) = redis::pipe()
            .cmd("SET")
            .arg("k")
            .arg(&value)
            .arg("PX")
            .arg(60_000)
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(&message)
            .query(&mut conn)
            .expect("SET + PUBLISH");
        set_publish.push(started.elapsed());
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO");
    let usec = |command: &str| -> f64 {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
            .and_then(|fields| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("usec_per_call="))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let _: u64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg("stop")
        .query(&mut conn)
        .expect("PUBLISH stop");
    for listener in listeners {
        let _ = listener.join();
    }
    let micros = |mut times: Vec<Duration>, p: f64| {
        times.sort_unstable();
        times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
    };
    [
        micros(set_only.clone(), 0.5),
        micros(set_publish.clone(), 0.5),
        micros(set_publish, 0.99),
        usec("set"),
        usec("publish"),
    ]
}

/// A message of the size `cache_runtime` sends for a key of this load's function.
fn cache_runtime_message() -> Vec<u8> {
    let name = "coherence_load::watched";
    format!("c1 {:016x} k 0 {} {name}1", u64::MAX, name.len()).into_bytes()
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    if let Some(url) = args.value("--worker") {
        let rounds = args.0.get(2).and_then(|r| r.parse().ok()).expect("ROUNDS");
        worker(url, rounds);
        return;
    }
    let processes = args.number("--processes", 4);
    let rounds = args.number("--rounds", 200);
    let publishes = args.number("--publishes", 2000);
    let subscribers: Vec<usize> = args
        .value("--subscribers")
        .unwrap_or("0,10,100")
        .split(',')
        .map(|n| n.parse().expect("--subscribers: numbers"))
        .collect();
    let redis = Redis::start();
    let (puts, invalidations) = propagation(&redis, processes, rounds);
    println!("## Propagation to {processes} processes ({rounds} changes, alternately put and invalidate)\n");
    println!("| change | observations | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, latencies) in [("`f::put`", &puts), ("`f::invalidate`", &invalidations)] {
        println!(
            "| {name} | {} | {} µs | {} µs | {} µs |",
            latencies.len(),
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            latencies.last().copied().unwrap_or(0)
        );
    }
    println!("\n## What a write costs with N processes listening ({publishes} writes each)\n");
    println!("| listeners | SET p50 | SET + PUBLISH p50 | SET + PUBLISH p99 | Redis µs per SET | Redis µs per PUBLISH |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in subscribers {
        let [set, both, both99, redis_set, redis_publish] = publish_cost(&redis, n, publishes);
        println!(
            "| {n} | {set:.1} µs | {both:.1} µs | {both99:.1} µs | {redis_set:.2} | {redis_publish:.2} |"
        );
    }
}
