//! A small driver for instruction counts of one hit path under callgrind (repeatable on a
//! noisy machine, unlike timings):
//!
//! ```text
//! cargo build --release -p benches --bin hit_profile
//! valgrind --tool=callgrind target/release/hit_profile text ours 1000000
//! ```
//!
//! Arguments: the shape (`int`, `text`, `pair`), the contender (`ours`, `peer`), and the
//! number of hits after warming (default 1 000 000). Divide the counts of two runs with
//! different numbers of hits by their difference for the cost of one hit.

use std::hint::black_box;
use std::sync::Arc;

#[cache_runtime::cached(ttl = 600)]
fn ours_int(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

#[cache_runtime::cached(ttl = 600)]
fn ours_text(url: &str) -> Arc<String> {
    Arc::new(url.to_owned())
}

#[cache_runtime::cached(ttl = 600)]
fn ours_pair(a: u64, b: u32) -> Arc<String> {
    Arc::new((a + b as u64).to_string())
}

#[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 600)]
fn peer_int(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

#[cached::proc_macro::cached(
    max_size = 2_000,
    ttl_secs = 600,
    key = "String",
    convert = r#"{ url.to_owned() }"#
)]
fn peer_text(url: &str) -> Arc<String> {
    Arc::new(url.to_owned())
}

#[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 600)]
fn peer_pair(a: u64, b: u32) -> Arc<String> {
    Arc::new((a + b as u64).to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = args.get(1).map_or("int", String::as_str);
    let who = args.get(2).map_or("ours", String::as_str);
    let hits: usize = args
        .get(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let urls: Vec<String> = (0..1000u64)
        .map(|n| format!("https://example.com/notes/{n:06}"))
        .collect();
    let call = |i: usize| -> usize {
        let n = (i % 1000) as u64;
        match (shape, who) {
            ("int", "ours") => ours_int(n).len(),
            ("int", _) => peer_int(n).len(),
            ("text", "ours") => ours_text(&urls[n as usize]).len(),
            ("text", _) => peer_text(&urls[n as usize]).len(),
            ("pair", "ours") => ours_pair(n, 3).len(),
            (_, _) => peer_pair(n, 3).len(),
        }
    };
    let mut sum = 0;
    for i in 0..1000 {
        sum += call(i);
    }
    for i in 0..hits {
        sum += call(black_box(i));
    }
    black_box(sum);
}
