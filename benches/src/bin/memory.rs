//! What the in-process layers cost in memory, against the `cached` crate: the growth of the
//! resident set (RSS, `/proc/self/statm`) of a fresh process while it fills and hits a cache.
//!
//! ```text
//! cargo run --release -p benches --bin memory
//! ```
//!
//! Two workloads, each contender in a child process of its own (so that one's freed pages do
//! not hide the other's), in turns, three rounds:
//!
//! - `strings`: 16 threads each hitting the same 1 000 keys, whose values are 10 kB `String`s
//!   (10 MB of values in all), for several passes.
//! - `ints`: one thread filling 1 000 000 `u64 -> u64` entries; reported per entry.
//!
//! Ours is an L1-only function (no store configured); the peer is `cached`'s bounded cache
//! with a TTL (`max_size` + `ttl_secs`), the configuration closest to ours. For the integer
//! entries a raw moka cache (`u64 -> u64`, `max_capacity` + `time_to_live`) shows what the L1
//! the design names costs by itself.

use std::hint::black_box;
use std::process::Command;

const THREADS: usize = 16;
const KEYS: u64 = 1_000;
const VALUE_BYTES: usize = 10_000;
const PASSES: usize = 20;
const ENTRIES: u64 = 1_000_000;

fn value(n: u64) -> String {
    let mut text = n.to_string();
    text.extend(std::iter::repeat_n('x', VALUE_BYTES - text.len()));
    text
}

#[cache_runtime::cached(ttl = 600, capacity = 2_000)]
fn ours_string(n: u64) -> String {
    value(n)
}

#[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 600)]
fn peer_string(n: u64) -> String {
    value(n)
}

#[cache_runtime::cached(ttl = 600, capacity = 2_000_000)]
fn ours_int(n: u64) -> u64 {
    n.wrapping_mul(31)
}

#[cached::proc_macro::cached(max_size = 2_000_000, ttl_secs = 600)]
fn peer_int(n: u64) -> u64 {
    n.wrapping_mul(31)
}

/// The resident set of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// Runs one workload in this process and prints the RSS growth in bytes.
fn child(workload: &str, who: &str) {
    let before = rss();
    match workload {
        "strings" => {
            let call = if who == "ours" {
                ours_string
            } else {
                peer_string
            };
            std::thread::scope(|threads| {
                for _ in 0..THREADS {
                    threads.spawn(move || {
                        let mut sum = 0;
                        for _ in 0..PASSES {
                            for n in 0..KEYS {
                                sum += call(black_box(n)).len();
                            }
                        }
                        black_box(sum);
                    });
                }
            });
        }
        _ if who == "moka" => {
            let moka = moka::sync::Cache::builder()
                .max_capacity(2_000_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build();
            for n in 0..ENTRIES {
                moka.insert(black_box(n), n.wrapping_mul(31));
            }
            moka.run_pending_tasks();
            for n in 0..1_000 {
                assert_eq!(moka.get(&n), Some(n.wrapping_mul(31)));
            }
            black_box(&moka);
        }
        _ => {
            let call = if who == "ours" { ours_int } else { peer_int };
            let mut sum = 0u64;
            for n in 0..ENTRIES {
                sum = sum.wrapping_add(call(black_box(n)));
            }
            black_box(sum);
            // Every entry is still held (a second pass hits).
            for n in 0..1_000 {
                assert_eq!(call(n), n.wrapping_mul(31));
            }
        }
    }
    if who == "ours" {
        let misses = match workload {
            "strings" => ours_string::stats().misses,
            _ => ours_int::stats().misses,
        };
        let expected = if workload == "strings" { KEYS } else { ENTRIES };
        assert!(
            misses <= expected + expected / 100,
            "nearly every key was computed once ({misses} misses)"
        );
    }
    println!("{}", rss().saturating_sub(before));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, workload, who] = args.as_slice() {
        return child(workload, who);
    }
    let me = std::env::current_exe().expect("own path");
    let run = |workload: &str, who: &str| -> u64 {
        let out = Command::new(&me)
            .args([workload, who])
            .output()
            .expect("child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("bytes")
    };
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "strings: {THREADS} threads x {KEYS} keys of {VALUE_BYTES}-byte String values, {PASSES} passes"
    );
    for round in 1..=3 {
        let (ours, peer) = (run("strings", "ours"), run("strings", "peer"));
        println!(
            "  round {round}: cache_runtime {:.1} MB, cached {:.1} MB, ratio {:.2}x",
            mb(ours),
            mb(peer),
            ours as f64 / peer as f64
        );
    }
    println!("ints: {ENTRIES} u64 -> u64 entries, one thread");
    for round in 1..=3 {
        let (ours, peer, moka) = (
            run("ints", "ours"),
            run("ints", "peer"),
            run("ints", "moka"),
        );
        println!(
            "  round {round}: cache_runtime {} B/entry, cached {} B/entry, raw moka {} B/entry, \
             ratio to cached {:.2}x",
            ours / ENTRIES,
            peer / ENTRIES,
            moka / ENTRIES,
            ours as f64 / peer as f64
        );
    }
}
