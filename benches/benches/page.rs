//! A page of 50 fragments (about 200 bytes each) present in Redis with a cold L1: rendered
//! inside a preload scope, without one (50 GETs), with the `cached` crate's Redis store, and
//! the floor: one raw MGET of 50 keys plus bincode decoding.
//!
//! Two kinds of cold L1, each measured with and without the scope:
//! - "L1 emptied": the same 50 keys, `clear_local()` before each render (not timed). Its
//!   second floor adds what no L1 on moka escapes: 50 inserts into an emptied moka cache;
//! - "L1 full": 50 arguments never used before, written to Redis in the untimed set-up (see
//!   `Seeder`), into an L1 kept at its capacity (10 000) by the previous renders, as in a busy
//!   server. Each insert then also pays for moka's eviction, so this case has its own floor:
//!   the raw MGET + decode plus 50 inserts into a full moka cache.
//!
//! A third pair renders the same page with L1 warm (every fragment held): what a scope costs
//! when it has nothing to fetch.
//!
//! After criterion's group, the cold rows with a scope, their floors and the page without a
//! scope (L1 emptied) run again in turns, one of each per round (see `benches::InTurns`), and
//! their medians are printed: on a machine whose speed drifts, rows measured one after another
//! can drift apart by more than they differ. The L1-emptied and the L1-full rows take turns
//! in two sets, as each set's rows are compared only with each other.
//!
//! cargo bench -p benches --bench page

use std::cell::RefCell;
use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use benches::{
    cached_redis, fragment, full_moka, raw_moka, redis_for_both, timed, InTurns, RawStore, Seeder,
};
use cache_runtime::{preload, Key};
use criterion::{criterion_group, criterion_main, BatchSize, Bencher, Criterion};
use moka::sync::Cache;

const FRAGMENTS: u64 = 50;

/// Rounds of the cold rows in turns, after criterion's group (about 4 s).
const ROUNDS: usize = 300;

#[cache_runtime::cached(ttl = 600)]
fn emptied(n: u64) -> String {
    fragment(n)
}

#[cache_runtime::cached(ttl = 600)]
fn full(n: u64) -> String {
    fragment(n)
}

#[cache_runtime::cached(ttl = 600)]
fn warm(n: u64) -> String {
    fragment(n)
}

fn render(args: Range<u64>, fragment: impl Fn(u64) -> String) -> usize {
    args.map(|n| fragment(n).len()).sum()
}

fn scoped(args: Range<u64>, f: fn(u64) -> String, key: fn(u64) -> Key) -> usize {
    preload(args.clone().map(key), || render(args, f))
}

/// Renders with or without a scope.
fn rendered(scope: bool, args: Range<u64>, f: fn(u64) -> String, key: fn(u64) -> Key) -> usize {
    if scope {
        scoped(args, f, key)
    } else {
        render(args, f)
    }
}

/// The floors' work past the raw MGET: each value inserted into `moka` under `key(position)`.
fn mget_into(
    raw: &mut RawStore,
    keys: &[String],
    moka: &Cache<String, String>,
    mut key: impl FnMut(usize) -> String,
) {
    for (n, value) in raw.mget(keys).into_iter().enumerate() {
        moka.insert(key(n), value);
    }
}

/// A key never used before in the full moka floor.
fn next_key(next: &mut u64) -> String {
    *next += 1;
    next.to_string()
}

/// Empties a moka floor now (its `invalidate_all` alone is lazy), outside the timing.
fn empty(moka: &Cache<String, String>) {
    moka.invalidate_all();
    moka.run_pending_tasks();
}

fn page(c: &mut Criterion) {
    let redis = redis_for_both();
    let mut raw = RawStore::with_fragments(&redis, 0..FRAGMENTS);
    let raw_keys: Vec<String> = (0..FRAGMENTS).map(RawStore::key).collect();
    for n in 0..FRAGMENTS {
        cached_redis(n).expect("cached's store");
        emptied(n); // computed once, written to Redis
    }
    let mut seeder = Seeder::new(&redis, 1_000_000);
    seeder.fill_l1(full::key, full, fragment);
    let moka = full_moka();
    let mut next_moka_key = 2_000_000u64;

    let mut group = c.benchmark_group("page_of_50");
    group.bench_function("raw MGET + bincode decode", |b| {
        b.iter(|| black_box(raw.mget(&raw_keys)))
    });
    let on_emptied = |b: &mut Bencher, scope: bool| {
        b.iter_batched(
            emptied::clear_local,
            |()| black_box(rendered(scope, 0..FRAGMENTS, emptied, emptied::key)),
            BatchSize::PerIteration,
        )
    };
    let emptied_moka = raw_moka();
    group.bench_function(
        "raw MGET + bincode decode + moka insert, moka emptied",
        |b| {
            b.iter_batched(
                || empty(&emptied_moka),
                |()| mget_into(&mut raw, &raw_keys, &emptied_moka, |n| n.to_string()),
                BatchSize::PerIteration,
            )
        },
    );
    group.bench_function("cache_runtime with preload, L1 emptied", |b| {
        on_emptied(b, true)
    });
    group.bench_function("cache_runtime without preload, L1 emptied", |b| {
        on_emptied(b, false)
    });
    group.bench_function("raw MGET + bincode decode + moka insert, L1 full", |b| {
        b.iter(|| mget_into(&mut raw, &raw_keys, &moka, |_| next_key(&mut next_moka_key)))
    });
    let mut on_full = |b: &mut Bencher, scope: bool| {
        b.iter_batched(
            || seeder.fresh(FRAGMENTS, full::key, fragment),
            |args| black_box(rendered(scope, args, full, full::key)),
            BatchSize::PerIteration,
        )
    };
    group.bench_function("cache_runtime with preload, L1 full", |b| on_full(b, true));
    group.bench_function("cache_runtime without preload, L1 full", |b| {
        on_full(b, false)
    });
    for n in 0..FRAGMENTS {
        warm(n);
    }
    for scope in [true, false] {
        let name = if scope { "with" } else { "without" };
        group.bench_function(format!("cache_runtime {name} preload, L1 warm"), |b| {
            b.iter(|| black_box(rendered(scope, 0..FRAGMENTS, warm, warm::key)))
        });
    }
    group.bench_function("cached concurrent_cached(redis = true)", |b| {
        b.iter(|| black_box(render(0..FRAGMENTS, |n| cached_redis(n).unwrap())))
    });
    group.finish();

    // The cold rows that decide the targets again, in turns (see `InTurns`).
    let raw = RefCell::new(raw);
    let medians = InTurns::default()
        .add("raw MGET + bincode decode", || {
            timed(|| raw.borrow_mut().mget(&raw_keys))
        })
        .add(
            "raw MGET + bincode decode + moka insert, moka emptied",
            || {
                empty(&emptied_moka);
                let mut raw = raw.borrow_mut();
                timed(|| mget_into(&mut raw, &raw_keys, &emptied_moka, |n| n.to_string()))
            },
        )
        .add("cache_runtime with preload, L1 emptied", || {
            emptied::clear_local();
            timed(|| rendered(true, 0..FRAGMENTS, emptied, emptied::key))
        })
        .add("cache_runtime without preload, L1 emptied", || {
            emptied::clear_local();
            timed(|| rendered(false, 0..FRAGMENTS, emptied, emptied::key))
        })
        .report("page_of_50, L1 emptied", ROUNDS);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  without preload ÷ with preload: {:.1}×",
        ratio(medians[3], medians[2])
    );
    // A set of its own: evictions in a full cache would leave the CPU caches of the rows
    // above cold.
    let medians = InTurns::default()
        .add("raw MGET + bincode decode + moka insert, L1 full", || {
            let mut raw = raw.borrow_mut();
            timed(|| mget_into(&mut raw, &raw_keys, &moka, |_| next_key(&mut next_moka_key)))
        })
        .add("cache_runtime with preload, L1 full", || {
            let args = seeder.fresh(FRAGMENTS, full::key, fragment);
            timed(|| rendered(true, args, full, full::key))
        })
        .report("page_of_50, L1 full", ROUNDS);
    println!(
        "  with preload ÷ its floor: {:.2}×",
        ratio(medians[1], medians[0])
    );

    for stats in [emptied::stats(), full::stats()] {
        assert_eq!(stats.l1_hits, 0, "L1 was cold on every call");
        assert_eq!(stats.decode_errors, 0);
    }
    assert_eq!(
        emptied::stats().misses,
        FRAGMENTS,
        "only the first calls ran the body"
    );
    assert_eq!(full::stats().misses, 0, "every value came from Redis");
    let warm = warm::stats();
    assert_eq!(
        (warm.misses, warm.l2_hits, warm.scope_hits),
        (FRAGMENTS, 0, 0),
        "warm rows were answered by L1 alone"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = page
}
criterion_main!(benches);
