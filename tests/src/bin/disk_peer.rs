//! A process using the disk store in DIR, driven by the `disk_*` tests.
//!
//! ```text
//! disk_peer DIR get FROM TO      calls page(n) for n in FROM..TO on 4 threads, prints a report
//! disk_peer DIR serve            prints `ready`, then answers commands read on stdin:
//!                                  `get FROM TO` (a report), `exit`
//! disk_peer DIR forever          calls page(0), page(1), ... and prints `stored N` after each
//! disk_peer DIR lock THREADS AT  THREADS threads call locked(1) at unix ms AT; prints a report
//! ```
//!
//! A report is `runs=R l2_hits=H l2_errors=E by=PID:N,...`: counters since the process
//! started, and how many of the values returned each process computed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{cached, Config};

static RUNS: AtomicU64 = AtomicU64::new(0);

/// What every process computes: the value names the process.
#[cached(ttl = 600, name = "disk::page")]
fn page(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("page {n} by {}", std::process::id())
}

#[cached(ttl = 600, name = "disk::locked", lock)]
fn locked(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    format!("page {n} by {}", std::process::id())
}

/// `by` of a report: the pid each value names.
fn origin(value: &str) -> u32 {
    value
        .rsplit(' ')
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("a value names its process")
}

fn report(values: &[String], l2_hits: u64, l2_errors: u64) -> String {
    let mut by = BTreeMap::new();
    for value in values {
        *by.entry(origin(value)).or_insert(0u64) += 1;
    }
    let by: Vec<String> = by.iter().map(|(pid, n)| format!("{pid}:{n}")).collect();
    format!(
        "runs={} l2_hits={l2_hits} l2_errors={l2_errors} by={}",
        RUNS.load(SeqCst),
        by.join(",")
    )
}

/// page(n) for every n in `from..to`, on 4 threads (interleaved), in order.
fn get(from: u64, to: u64) -> String {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (from + t..to)
                    .step_by(4)
                    .map(|n| (n, page(n)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut values: Vec<(u64, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a caller"))
        .collect();
    values.sort();
    for (n, value) in &values {
        assert!(value.starts_with(&format!("page {n} by ")), "{value}");
    }
    let values: Vec<String> = values.into_iter().map(|(_, v)| v).collect();
    let stats = page::stats();
    report(&values, stats.l2_hits, stats.l2_errors)
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let number = |i: usize| -> u64 { arg(i).parse().expect("a number") };
    Config::new()
        .disk(arg(1))
        .prefix("peer")
        .install()
        .expect("install");
    let mut out = std::io::stdout().lock();
    match arg(2) {
        "get" => writeln!(out, "{}", get(number(3), number(4))).expect("stdout"),
        "serve" => {
            writeln!(out, "ready").expect("stdout");
            out.flush().expect("stdout");
            for line in std::io::stdin().lock().lines() {
                let line = line.expect("stdin");
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["get", from, to] => {
                        let report = get(from.parse().expect("FROM"), to.parse().expect("TO"));
                        writeln!(out, "{report}").expect("stdout");
                    }
                    ["exit"] => return,
                    other => panic!("unknown command {other:?}"),
                }
                out.flush().expect("stdout");
            }
        }
        "forever" => {
            for n in 0.. {
                page(n);
                writeln!(out, "stored {n}").expect("stdout");
                out.flush().expect("stdout");
            }
        }
        "lock" => {
            let threads = number(3);
            let at = u128::from(number(4));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(move || {
                        while unix_millis() < at {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        locked(1)
                    })
                })
                .collect();
            let values: Vec<String> = handles
                .into_iter()
                .map(|h| h.join().expect("a caller"))
                .collect();
            let stats = locked::stats();
            writeln!(out, "{}", report(&values, stats.l2_hits, stats.l2_errors)).expect("stdout");
        }
        other => panic!("unknown mode {other:?}"),
    }
}
