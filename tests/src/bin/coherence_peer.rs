//! Another process of the fleet for the coherence tests (`tests/coherence.rs`) and the
//! propagation load program.
//!
//! ```text
//! coherence_peer watch URL PREFIX ROUNDS    reads value(1), prints `ready VALUE`, then polls
//!                                           value(1) (its own layers) and prints
//!                                           `seen VALUE LATENCY_US` each time it changes, where
//!                                           VALUE is `v{i}@{unix_ns}` as the writer stamped it;
//!                                           after ROUNDS changes prints `stats ...` and exits
//! coherence_peer invalidate URL PREFIX F N...
//!                                           for each N: `SET truth:N <next>` and
//!                                           F::invalidate(N) (F: `value` or `slow`), in
//!                                           order; then exits
//! coherence_peer put URL PREFIX N VALUE     value::put(N, VALUE)
//! coherence_peer invalidate-page URL PREFIX PAGE
//!                                           `SET truth:PAGE <next>` and page::invalidate(PAGE)
//! ```
//!
//! `value(n)` returns the Redis key `truth:{n}` (read with a raw connection): the source of
//! truth that a writer changes before announcing the change.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::cached;

fn url() -> String {
    std::env::args().nth(2).expect("URL")
}

/// The source of truth of key `n`.
fn truth(n: u64) -> String {
    truth_of(&n.to_string())
}

/// The source of truth of key `name`: the Redis key `truth:{name}`.
fn truth_of(name: &str) -> String {
    let client = redis::Client::open(url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    redis::cmd("GET")
        .arg(format!("truth:{name}"))
        .query::<Option<String>>(&mut conn)
        .expect("GET truth")
        .unwrap_or_else(|| "none".into())
}

#[cached(ttl = 600, name = "coherence::value")]
fn value(n: u64) -> String {
    truth(n)
}

#[cached(ttl = 600, name = "coherence::slow")]
fn slow(n: u64) -> String {
    truth(n)
}

/// Keyed by one text: its front-table slots are probed with the text itself.
#[cached(ttl = 600, name = "coherence::page")]
fn page(url: &str) -> String {
    truth_of(url)
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// The writer's stamp in a value `v{i}@{unix_ns}`.
fn stamp(value: &str) -> Option<u128> {
    value.split_once('@')?.1.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    cache_runtime::Config::new()
        .redis(arg(2))
        .prefix(arg(3))
        .install()
        .expect("install");
    match arg(1) {
        "watch" => {
            let rounds: usize = arg(4).parse().expect("ROUNDS");
            let mut last = value(1);
            println!("ready {last}");
            let give_up = Instant::now() + Duration::from_secs(120);
            let mut seen = 0;
            while seen < rounds && Instant::now() < give_up {
                let now = value(1);
                if now != last {
                    let at = unix_nanos();
                    let latency = stamp(&now).map_or(0, |sent| at.saturating_sub(sent) / 1000);
                    println!("seen {now} {latency}");
                    last = now;
                    seen += 1;
                } else {
                    // Poll, without taking one of the machine's two cores whole.
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            let stats = value::stats();
            println!(
                "stats misses={} l2_hits={} coherence_flushes={}",
                stats.misses, stats.l2_hits, stats.coherence_flushes
            );
        }
        "invalidate" => {
            let client = redis::Client::open(url()).expect("url");
            let mut conn = client.get_connection().expect("connection");
            let slow_fn = arg(4) == "slow";
            for n in &args[5..] {
                let n: u64 = n.parse().expect("N");
                let next = format!("v-from-{}@{}", std::process::id(), unix_nanos());
                let _: () = redis::cmd("SET")
                    .arg(format!("truth:{n}"))
                    .arg(&next)
                    .query(&mut conn)
                    .expect("SET truth");
                if slow_fn {
                    slow::invalidate(n);
                } else {
                    value::invalidate(n);
                }
            }
        }
        "invalidate-page" => {
            let client = redis::Client::open(url()).expect("url");
            let mut conn = client.get_connection().expect("connection");
            let next = format!("v-from-{}@{}", std::process::id(), unix_nanos());
            let _: () = redis::cmd("SET")
                .arg(format!("truth:{}", arg(4)))
                .arg(&next)
                .query(&mut conn)
                .expect("SET truth");
            page::invalidate(arg(4));
        }
        "put" => {
            value::put(arg(4).parse().expect("N"), arg(5).to_owned());
        }
        other => panic!("unknown mode {other:?}"),
    }
}
