//! The hit path with metrics on and off: `#[cached(ttl = 60)] fn(u64) -> Arc<String>` over
//! 1 000 hot keys on one thread, as in `hits.rs`.
//!
//! - off: no recorder, no publisher.
//! - on: a Prometheus recorder installed and `Config::metrics_every(10 ms)` publishing every
//!   function's counters from its thread (a hundred times more often than a typical scrape).
//!
//! A recorder cannot be uninstalled, so each measurement is a child process of this one, and
//! the modes alternate: off, on, off, on, ... Each child warms the keys, then times several
//! rounds and reports its best. The parent prints each mode's range and the ratio of medians.
//!
//! cargo bench -p benches --bench metrics_hits            # 5 pairs; METRICS_PAIRS=n for more

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: u64 = 1_000;
const CALLS_PER_ROUND: u64 = 20_000_000;
const ROUNDS: usize = 5;

#[cache_runtime::cached(ttl = 60)]
fn ours(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

/// Best nanoseconds per hit over [`ROUNDS`] rounds, in this process's mode.
fn measure(on: bool) -> f64 {
    if on {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder");
        cache_runtime::Config::new()
            .metrics_every(Duration::from_millis(10))
            .install()
            .expect("install");
    }
    for k in 0..KEYS {
        black_box(ours(k));
    }
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut sum = 0usize;
        for i in 0..CALLS_PER_ROUND {
            // A fixed stride over the keys (coprime with KEYS): no two calls in a row alike.
            sum += ours(black_box((i * 617) % KEYS)).len();
        }
        black_box(sum);
        best = best.min(started.elapsed().as_nanos() as f64 / CALLS_PER_ROUND as f64);
    }
    let misses = ours::stats().misses;
    assert!(misses <= KEYS * 2, "{misses} misses: not a hit-path run");
    best
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if let Ok(mode) = std::env::var("METRICS_HITS_MODE") {
        println!("{}", measure(mode == "on"));
        return;
    }
    let pairs: usize = std::env::var("METRICS_PAIRS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let exe = std::env::current_exe().expect("this bench's path");
    let run = |mode: &str| -> f64 {
        let out = Command::new(&exe)
            .env("METRICS_HITS_MODE", mode)
            .output()
            .expect("run a measurement");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("ns per call")
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        off.push(run("off"));
        on.push(run("on"));
        println!(
            "pair {}: off {:.2} ns/hit, on {:.2} ns/hit",
            pair + 1,
            off[pair],
            on[pair]
        );
    }
    let ratios: Vec<f64> = on.iter().zip(&off).map(|(on, off)| on / off).collect();
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.3}-{hi:.3}")
    };
    println!("off: {} ns/hit", range(&off));
    println!("on:  {} ns/hit", range(&on));
    println!("on/off per pair: {}", range(&ratios));
    println!(
        "on/off of medians: {:.3}",
        median(&mut on.clone()) / median(&mut off.clone())
    );
}
