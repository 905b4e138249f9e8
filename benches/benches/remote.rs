//! L2: a hit with a cold L1 against raw redis-rs GET + bincode decode and against the `cached`
//! crate's Redis store; and the cost of a call while Redis is dead and the breaker open,
//! against the same call with no Redis configured.
//!
//! Two kinds of cold L1 (as in `page`): "L1 emptied" reads one key after `clear_local()`
//! (not timed); "L1 full" reads an argument never used before, written to Redis in the
//! untimed set-up, into an L1 kept at its capacity, as in a busy server. The second has its
//! own floor: the raw GET + decode plus an insert into a full moka cache. After criterion's
//! group the L1-emptied pair runs again in turns (see `benches::InTurns`).
//!
//! cargo bench -p benches --bench remote

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use benches::{
    cached_redis, fragment, full_moka, redis_for_both, timed, InTurns, RawStore, Seeder,
    L1_CAPACITY,
};
use cache_runtime::Config;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

/// Rounds of the L1-emptied pair in turns, after criterion's group.
const ROUNDS: usize = 2_000;

#[cache_runtime::cached(ttl = 600)]
fn emptied(n: u64) -> String {
    fragment(n)
}

#[cache_runtime::cached(ttl = 600)]
fn full(n: u64) -> String {
    fragment(n)
}

fn l2_hit(c: &mut Criterion) {
    let redis = redis_for_both();
    emptied(1); // computed once, written to Redis
    cached_redis(1).expect("cached's store");
    let mut raw = RawStore::with_fragments(&redis, 1..2);
    let raw_key = RawStore::key(1);
    let mut seeder = Seeder::new(&redis, 1_000_000);
    seeder.fill_l1(full::key, full, fragment);
    let moka = full_moka();
    let mut next_moka_key = L1_CAPACITY;

    let mut group = c.benchmark_group("l2_hit");
    group.bench_function("raw redis-rs GET + bincode decode", |b| {
        b.iter(|| black_box(raw.get(&raw_key)))
    });
    group.bench_function("cache_runtime, L1 emptied", |b| {
        b.iter_batched(
            emptied::clear_local,
            |()| black_box(emptied(1)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("raw GET + decode + moka insert, L1 full", |b| {
        b.iter(|| {
            moka.insert(next_moka_key.to_string(), raw.get(&raw_key));
            next_moka_key += 1;
        })
    });
    group.bench_function("cache_runtime, L1 full", |b| {
        b.iter_batched(
            || seeder.fresh(1, full::key, fragment).start,
            |n| black_box(full(n)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cached concurrent_cached(redis = true)", |b| {
        b.iter(|| black_box(cached_redis(1).unwrap()))
    });
    group.finish();

    // The pair that decides the target again, in turns (see `InTurns`).
    let raw = RefCell::new(raw);
    InTurns::default()
        .add("raw redis-rs GET + bincode decode", || {
            timed(|| raw.borrow_mut().get(&raw_key))
        })
        .add("cache_runtime, L1 emptied", || {
            emptied::clear_local();
            timed(|| emptied(1))
        })
        .report("l2_hit", ROUNDS);

    for stats in [emptied::stats(), full::stats()] {
        assert_eq!(stats.l1_hits, 0, "L1 was cold on every call");
        assert_eq!(stats.decode_errors, 0);
    }
    assert_eq!(
        emptied::stats().misses,
        1,
        "only the first call ran the body"
    );
    assert_eq!(full::stats().misses, 0, "every value came from Redis");
}

#[cache_runtime::cached(ttl = 600)]
fn trivial(n: u64) -> u64 {
    n + 1
}

fn dead_redis(c: &mut Criterion) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let fresh = || NEXT.fetch_add(1, Relaxed);
    let mut group = c.benchmark_group("miss_with_redis_dead");
    Config::uninstall();
    group.bench_function("no Redis configured", |b| {
        b.iter(|| black_box(trivial(fresh())))
    });
    // Nothing listens on port 1: the connection is refused, the breaker opens after that one
    // failure and stays open for the whole run.
    Config::new()
        .redis("redis://127.0.0.1:1/")
        .circuit_breaker(1, Duration::from_secs(3600))
        .install()
        .expect("install");
    trivial(fresh());
    let before = trivial::stats();
    group.bench_function("Redis dead, breaker open", |b| {
        b.iter(|| black_box(trivial(fresh())))
    });
    group.finish();
    let after = trivial::stats();
    assert_eq!(
        after.l2_errors - before.l2_errors,
        after.misses - before.misses,
        "every call with Redis dead computed and counted Redis as failed"
    );
    Config::uninstall();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = l2_hit, dead_redis
}
criterion_main!(benches);
