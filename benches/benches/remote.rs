//! L2: a hit with a cold L1 against raw redis-rs GET + bincode decode and against the `cached`
//! crate's Redis store; and the cost of a call while Redis is dead and the breaker open,
//! against the same call with no Redis configured.
//!
//! cargo bench -p benches --bench remote

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use benches::{cached_redis, fragment, redis_for_both};
use cache_runtime::Config;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

#[cache_runtime::cached(ttl = 600, name = "bench::remote")]
fn ours(n: u64) -> String {
    fragment(n)
}

fn l2_hit(c: &mut Criterion) {
    let redis = redis_for_both();
    ours(1);
    cached_redis(1).unwrap();
    let key = ours::key(1).to_string();
    let raw_key = "bench:raw:1";
    let mut conn = redis.connection().unwrap();
    let bytes = bincode::serde::encode_to_vec(fragment(1), bincode::config::standard()).unwrap();
    let _: () = redis::cmd("SET")
        .arg(raw_key)
        .arg(bytes)
        .query(&mut conn)
        .unwrap();
    assert!(redis::cmd("EXISTS")
        .arg(&key)
        .query::<bool>(&mut conn)
        .unwrap());

    let mut group = c.benchmark_group("l2_hit");
    group.bench_function("raw redis-rs GET + bincode decode", |b| {
        b.iter(|| {
            let bytes: Vec<u8> = redis::cmd("GET").arg(raw_key).query(&mut conn).unwrap();
            let (value, _): (String, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            black_box(value)
        })
    });
    group.bench_function("cache_runtime (L1 cold)", |b| {
        b.iter_batched(
            ours::clear_local,
            |()| black_box(ours(1)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cached concurrent_cached(redis = true)", |b| {
        b.iter(|| black_box(cached_redis(1).unwrap()))
    });
    group.finish();
    assert_eq!(ours::stats().misses, 1, "every measured call was an L2 hit");
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
    // Nothing listens on port 1: connections are refused, the breaker opens after one failure
    // and stays open for the whole run.
    Config::new()
        .redis("redis://127.0.0.1:1/")
        .circuit_breaker(1, Duration::from_secs(3600))
        .install()
        .unwrap();
    trivial(fresh());
    group.bench_function("Redis dead, breaker open", |b| {
        b.iter(|| black_box(trivial(fresh())))
    });
    group.finish();
    Config::uninstall();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = l2_hit, dead_redis
}
criterion_main!(benches);
