//! A small driver for instruction counts of a preloaded page of 50 fragments with L1 emptied
//! (as in `benches/page.rs`) against its floor: one raw MGET of the same number of values,
//! bincode decodes, and 50 inserts into an emptied moka cache. Under callgrind:
//!
//! ```text
//! cargo build --release -p benches --bin page_profile
//! valgrind --tool=callgrind --toggle-collect='page_profile::measured_ours' \
//!     target/release/page_profile ours 200
//! ```
//!
//! Name the contender's own function (`measured_warm` for `warm`): a pattern matching two
//! nested functions toggles collection off again inside the second.
//!
//! Arguments: the contender (`ours`, `floor`, or `warm`: the same page with every fragment
//! already in L1 and this thread's front table) and the number of pages after warming (default
//! 200). Only the page itself is counted: emptying L1 or the moka cache before each page is
//! left out. It starts its own redis-server (see `benches::Redis`).

use std::hint::black_box;

use benches::{fragment, raw_moka, redis_for_both, RawStore};
use cache_runtime::preload;
use moka::sync::Cache;

const FRAGMENTS: u64 = 50;

#[cache_runtime::cached(ttl = 600)]
fn emptied(n: u64) -> String {
    fragment(n)
}

#[inline(never)]
fn measured_ours() -> usize {
    preload((0..FRAGMENTS).map(emptied::key), || {
        (0..FRAGMENTS).map(|n| emptied(n).len()).sum()
    })
}

/// The same page as [`measured_ours`], with nothing cleared before it.
#[inline(never)]
fn measured_warm() -> usize {
    measured_ours()
}

#[inline(never)]
fn measured_floor(raw: &mut RawStore, keys: &[String], moka: &Cache<String, String>) -> usize {
    let mut sum = 0;
    for (key, value) in keys.iter().zip(raw.mget(keys)) {
        sum += value.len();
        moka.insert(key.clone(), value);
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let who = args.get(1).map_or("ours", String::as_str);
    let pages: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200);
    let redis = redis_for_both();
    for n in 0..FRAGMENTS {
        emptied(n);
    }
    let mut raw = RawStore::with_fragments(&redis, 0..FRAGMENTS);
    let keys: Vec<String> = (0..FRAGMENTS).map(RawStore::key).collect();
    let moka = raw_moka();
    let mut sum = 0;
    for _ in 0..pages {
        match who {
            "ours" => {
                emptied::clear_local();
                sum += measured_ours();
            }
            "warm" => sum += measured_warm(),
            _ => {
                moka.invalidate_all();
                moka.run_pending_tasks();
                sum += measured_floor(&mut raw, &keys, &moka);
            }
        }
    }
    black_box(sum);
    assert_eq!(
        emptied::stats().misses,
        FRAGMENTS,
        "only the first page ran bodies"
    );
}
