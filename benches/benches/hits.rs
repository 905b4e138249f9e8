//! The hit path: 1 000 hot keys, `u64 -> Arc<String>`, at 1 and 2 threads, side by side with
//! the `cached` crate (`#[cached]` and `#[concurrent_cached]`) and a raw moka lookup.
//!
//! Every contender is warmed on every measuring thread before the clock starts, then called
//! over the keys in a fixed pseudo-random order; each thread starts at another point of it.
//! Throughput counts calls made by all threads together.
//!
//! cargo bench -p benches --bench hits

use std::hint::black_box;
use std::sync::{Arc, Barrier, LazyLock};
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

/// The keys shuffled by a fixed xorshift sequence (Fisher-Yates), the same on every run.
fn order() -> Vec<u64> {
    let mut keys: Vec<u64> = (0..KEYS).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..keys.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        keys.swap(i, (state % (i as u64 + 1)) as usize);
    }
    keys
}

/// Warms `f` on this thread, then times `calls` calls starting at `offset` in `keys`.
fn measure(f: Lookup, keys: &[u64], offset: usize, calls: u64, start: &Barrier) -> Duration {
    for &k in keys {
        black_box(f(k));
    }
    start.wait();
    let started = Instant::now();
    let mut sum = 0usize;
    for &k in keys.iter().cycle().skip(offset).take(calls as usize) {
        sum += f(black_box(k)).len();
    }
    black_box(sum);
    started.elapsed()
}

/// Time for `threads` threads to make `calls` calls each (the slowest thread's time: they
/// start together).
fn run(threads: usize, calls: u64, keys: &[u64], f: Lookup) -> Duration {
    if threads == 1 {
        return measure(f, keys, 0, calls, &Barrier::new(1));
    }
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                scope.spawn(move || measure(f, keys, t * keys.len() / threads, calls, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn hit_path(c: &mut Criterion) {
    let keys = order();
    let contenders: [(&str, Lookup); 4] = [
        ("cache_runtime", ours),
        ("cached #[cached]", cached_crate),
        ("cached #[concurrent_cached]", cached_concurrent),
        ("raw moka get", raw_moka),
    ];
    let began = Instant::now();
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("hit_path/{threads}_thread"));
        group.throughput(Throughput::Elements(threads as u64));
        for (name, f) in contenders {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|calls| run(threads, calls, &keys, f))
            });
        }
        group.finish();
    }
    // Misses happen only while warming: once per key, and once more each time its TTL ran out.
    let lifetimes = began.elapsed().as_secs() / 60 + 1;
    let misses = ours::stats().misses;
    assert!(
        misses <= KEYS * lifetimes,
        "{misses} misses for {KEYS} keys"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hit_path
}
criterion_main!(benches);
