//! A page of 50 fragments present in Redis with a cold L1: rendered inside a preload scope, without
//! one, with the `cached` crate's Redis store, and the floor: one raw MGET of the 50 keys plus
//! bincode decoding.
//!
//! cargo bench -p benches --bench page

use std::hint::black_box;
use std::time::Duration;

use benches::{cached_redis, fragment, redis_for_both};
use cache_runtime::preload;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const FRAGMENTS: u64 = 50;

#[cache_runtime::cached(ttl = 600)]
fn ours(n: u64) -> String {
    fragment(n)
}

fn render(fragment: impl Fn(u64) -> String) -> usize {
    (0..FRAGMENTS).map(|n| fragment(n).len()).sum()
}

fn page(c: &mut Criterion) {
    let redis = redis_for_both();
    let mut conn = redis.connection().unwrap();
    let raw_keys: Vec<String> = (0..FRAGMENTS).map(|n| format!("bench:raw:{n}")).collect();
    for n in 0..FRAGMENTS {
        ours(n);
        cached_redis(n).unwrap();
        let bytes =
            bincode::serde::encode_to_vec(fragment(n), bincode::config::standard()).unwrap();
        let _: () = redis::cmd("SET")
            .arg(&raw_keys[n as usize])
            .arg(bytes)
            .query(&mut conn)
            .unwrap();
    }

    let mut group = c.benchmark_group("page_of_50");
    group.bench_function("raw MGET + bincode decode", |b| {
        b.iter(|| {
            let values: Vec<Vec<u8>> = redis::cmd("MGET").arg(&raw_keys).query(&mut conn).unwrap();
            let total: usize = values
                .iter()
                .map(|bytes| {
                    let (value, _): (String, usize) =
                        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                            .unwrap();
                    value.len()
                })
                .sum();
            black_box(total)
        })
    });
    group.bench_function("cache_runtime with preload", |b| {
        b.iter_batched(
            ours::clear_local,
            |()| black_box(preload((0..FRAGMENTS).map(ours::key), || render(ours))),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cache_runtime without preload", |b| {
        b.iter_batched(
            ours::clear_local,
            |()| black_box(render(ours)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cached concurrent_cached(redis = true)", |b| {
        b.iter(|| black_box(render(|n| cached_redis(n).unwrap())))
    });
    group.finish();
    assert_eq!(
        ours::stats().misses,
        FRAGMENTS,
        "every measured render read Redis"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = page
}
criterion_main!(benches);
