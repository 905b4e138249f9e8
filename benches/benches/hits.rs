//! The hit path: 1 000 hot keys, `u64 -> Arc<String>`, at 1 and 2 threads, side by side with
//! the `cached` crate (`#[cached]` and `#[concurrent_cached]`) and a raw moka lookup.
//!
//! cargo bench -p benches --bench hits

use std::hint::black_box;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const KEYS: u64 = 1_000;

#[cache_runtime::cached(ttl = 60)]
fn ours(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

#[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 60)]
fn cached_crate(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

#[cached::proc_macro::concurrent_cached(max_size = 2_000, ttl_secs = 60)]
fn cached_concurrent(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

static MOKA: LazyLock<moka::sync::Cache<u64, Arc<String>>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(2_000)
        .time_to_live(Duration::from_secs(60))
        .build()
});

fn raw_moka(n: u64) -> Arc<String> {
    MOKA.get(&n).unwrap_or_else(|| {
        let value = Arc::new(n.to_string());
        MOKA.insert(n, value.clone());
        value
    })
}

/// One contender's cached function.
type Lookup = fn(u64) -> Arc<String>;

/// The keys in a fixed scrambled order (7919 is prime to 1 000).
fn order() -> Vec<u64> {
    (0..KEYS).map(|i| (i * 7919) % KEYS).collect()
}

/// Wall time of `threads` threads each making `iters` calls; each thread starts at another
/// point of the key order so they do not walk the same keys in lockstep.
fn run(threads: usize, iters: u64, keys: &[u64], f: Lookup) -> Duration {
    for &k in keys {
        black_box(f(k)); // warm every thread-independent layer
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let offset = t * keys.len() / threads;
                let mut sum = 0usize;
                for i in 0..iters as usize {
                    sum += f(keys[(offset + i) % keys.len()]).len();
                }
                black_box(sum);
            });
        }
    });
    started.elapsed()
}

fn hit_path(c: &mut Criterion) {
    let keys = order();
    let contenders: [(&str, Lookup); 4] = [
        ("cache_runtime", ours),
        ("cached #[cached]", cached_crate),
        ("cached #[concurrent_cached]", cached_concurrent),
        ("raw moka get", raw_moka),
    ];
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("hit_path/{threads}_thread"));
        group.throughput(Throughput::Elements(threads as u64));
        for (name, f) in contenders {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| run(threads, iters, &keys, f))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hit_path
}
criterion_main!(benches);
