//! A page of 50 fragments (about 200 bytes each) present in the shared store, L1 emptied
//! before each render (not timed), preloaded from a Redis Cluster of 3 masters (+3 replicas)
//! against the same page preloaded from one Redis: the cluster's preload sends one `MGET` per
//! slot, pipelined per master, all masters at once, where one Redis answers one `MGET`.
//!
//! Rows (all sync but the last; one process, one `Config`: the single Redis is the named store
//! `"single"`, the cluster the default one):
//! - single Redis, preload: the reference (one MGET);
//! - cluster, preload, keys spread over the 3 masters (50 slots);
//! - cluster, preload, every key with the page's hash tag `{page}` (one slot, one MGET);
//! - cluster, no preload: 50 GETs one after another;
//! - single Redis, no preload: 50 GETs;
//! - cluster, `preload_async` on a tokio runtime, keys spread.
//!
//! After criterion's group, the rows run again in turns (see `benches::InTurns`) and the
//! medians and ratios to the single-Redis preload are printed.
//!
//! cargo bench -p benches --bench cluster

use std::hint::black_box;
use std::time::Duration;

use benches::cluster::Cluster;
use benches::{fragment, timed, InTurns, Redis};
use cache_runtime::{cached, preload, preload_async, Config, Key, Store};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const FRAGMENTS: u64 = 50;

/// Rounds in turns after criterion's group.
const ROUNDS: usize = 300;

#[cached(ttl = 600, store = "single")]
fn single(n: u64) -> String {
    fragment(n)
}

#[cached(ttl = 600)]
fn spread(n: u64) -> String {
    fragment(n)
}

#[cached(ttl = 600, key = format!("{{page}}{n}"))]
fn tagged(n: u64) -> String {
    fragment(n)
}

#[cached(ttl = 600)]
async fn spread_async(n: u64) -> String {
    fragment(n)
}

fn page(args: impl Iterator<Item = u64>, f: fn(u64) -> String) -> usize {
    args.map(|n| f(n).len()).sum()
}

fn preloaded(f: fn(u64) -> String, key: fn(u64) -> Key) -> usize {
    preload((0..FRAGMENTS).map(key), || page(0..FRAGMENTS, f))
}

fn bench(c: &mut Criterion) {
    let redis = Redis::start();
    let cluster = Cluster::start();
    Config::new()
        .redis_cluster(cluster.urls())
        .named("single", Store::redis(redis.url()))
        .prefix("bench")
        .install()
        .expect("install");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for n in 0..FRAGMENTS {
        single(n);
        spread(n);
        tagged(n);
        runtime.block_on(spread_async(n));
    }
    let async_page = || {
        runtime.block_on(async {
            let keys = (0..FRAGMENTS).map(spread_async::key);
            preload_async(keys, async {
                let mut len = 0;
                for n in 0..FRAGMENTS {
                    len += spread_async(n).await.len();
                }
                len
            })
            .await
        })
    };
    let clear = || {
        single::clear_local();
        spread::clear_local();
        tagged::clear_local();
        spread_async::clear_local();
    };

    let mut group = c.benchmark_group("cluster_page_of_50");
    let mut row = |name: &str, run: &dyn Fn() -> usize| {
        group.bench_function(name, |b| {
            b.iter_batched(clear, |()| black_box(run()), BatchSize::PerIteration)
        });
    };
    row("single Redis, preload", &|| preloaded(single, single::key));
    row("cluster, preload, keys on 3 masters", &|| {
        preloaded(spread, spread::key)
    });
    row("cluster, preload, one hash tag", &|| {
        preloaded(tagged, tagged::key)
    });
    row("cluster, 50 GETs", &|| page(0..FRAGMENTS, spread));
    row("single Redis, 50 GETs", &|| page(0..FRAGMENTS, single));
    row("cluster, preload_async, keys on 3 masters", &async_page);
    group.finish();

    let medians = InTurns::default()
        .add("single Redis, preload", || {
            clear();
            timed(|| preloaded(single, single::key))
        })
        .add("cluster, preload, keys on 3 masters", || {
            clear();
            timed(|| preloaded(spread, spread::key))
        })
        .add("cluster, preload, one hash tag", || {
            clear();
            timed(|| preloaded(tagged, tagged::key))
        })
        .add("cluster, 50 GETs", || {
            clear();
            timed(|| page(0..FRAGMENTS, spread))
        })
        .add("single Redis, 50 GETs", || {
            clear();
            timed(|| page(0..FRAGMENTS, single))
        })
        .add("cluster, preload_async, keys on 3 masters", || {
            clear();
            timed(async_page)
        })
        .report("cluster_page_of_50, L1 emptied", ROUNDS);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  cluster preload (3 masters) ÷ single-Redis preload: {:.2}×",
        ratio(medians[1], medians[0])
    );
    println!(
        "  cluster 50 GETs ÷ cluster preload (3 masters): {:.1}×",
        ratio(medians[3], medians[1])
    );

    for stats in [
        single::stats(),
        spread::stats(),
        tagged::stats(),
        spread_async::stats(),
    ] {
        assert_eq!(stats.misses, FRAGMENTS, "only the first calls ran the body");
        assert_eq!(stats.l2_errors + stats.decode_errors, 0);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
