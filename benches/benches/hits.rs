//! The hit path for the key shapes services use, side by side with the `cached` crate
//! (`#[cached]` and `#[concurrent_cached]`, its two in-memory configurations): 1 000 hot keys,
//! values `Arc<String>`, at 1 and 2 threads.
//!
//! Shapes: one `u64`; a `&str` URL of about 32 bytes (the `cached` crate needs a `String` key,
//! so it allocates one per call); a `(u64, u32)` pair; a struct argument keyed by one field
//! (`key = note.id`, `convert = "{ note.id }"` there); an `async fn` keyed by a `u64` on a
//! current-thread runtime.
//!
//! Every contender is warmed on every measuring thread before the clock starts, then called
//! over the keys in a fixed pseudo-random order; each thread starts at another point of it.
//! Throughput counts calls made by all threads together. After criterion's groups, each shape
//! runs again in turns (see `benches::InTurns`): ours and the best `cached` configuration, one
//! of each per round. Those ratios are the ones the README reports.
//!
//! cargo bench -p benches --bench hits

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use benches::InTurns;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const KEYS: u64 = 1_000;

/// A record passed whole, cached by its id.
#[derive(Clone)]
pub struct Note {
    id: u64,
    title: String,
}

fn render(n: u64) -> Arc<String> {
    Arc::new(n.to_string())
}

fn url_of(n: u64) -> String {
    format!("https://example.com/notes/{n:06}")
}

mod ours {
    use super::*;

    #[cache_runtime::cached(ttl = 60)]
    pub fn int(n: u64) -> Arc<String> {
        render(n)
    }

    #[cache_runtime::cached(ttl = 60)]
    pub fn text(url: &str) -> Arc<String> {
        Arc::new(url.to_owned())
    }

    #[cache_runtime::cached(ttl = 60)]
    pub fn pair(a: u64, b: u32) -> Arc<String> {
        render(a + b as u64)
    }

    #[cache_runtime::cached(ttl = 60, key = note.id)]
    pub fn field(note: &Note) -> Arc<String> {
        Arc::new(note.title.clone())
    }

    #[cache_runtime::cached(ttl = 60)]
    pub async fn int_async(n: u64) -> Arc<String> {
        render(n)
    }
}

mod peer {
    use super::*;

    #[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 60)]
    pub fn int(n: u64) -> Arc<String> {
        render(n)
    }

    #[cached::proc_macro::concurrent_cached(max_size = 2_000, ttl_secs = 60)]
    pub fn int_concurrent(n: u64) -> Arc<String> {
        render(n)
    }

    #[cached::proc_macro::cached(
        max_size = 2_000,
        ttl_secs = 60,
        key = "String",
        convert = r#"{ url.to_owned() }"#
    )]
    pub fn text(url: &str) -> Arc<String> {
        Arc::new(url.to_owned())
    }

    #[cached::proc_macro::concurrent_cached(
        max_size = 2_000,
        ttl_secs = 60,
        key = "String",
        convert = r#"{ url.to_owned() }"#
    )]
    pub fn text_concurrent(url: &str) -> Arc<String> {
        Arc::new(url.to_owned())
    }

    #[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 60)]
    pub fn pair(a: u64, b: u32) -> Arc<String> {
        render(a + b as u64)
    }

    #[cached::proc_macro::concurrent_cached(max_size = 2_000, ttl_secs = 60)]
    pub fn pair_concurrent(a: u64, b: u32) -> Arc<String> {
        render(a + b as u64)
    }

    #[cached::proc_macro::cached(
        max_size = 2_000,
        ttl_secs = 60,
        key = "u64",
        convert = r#"{ note.id }"#
    )]
    pub fn field(note: &Note) -> Arc<String> {
        Arc::new(note.title.clone())
    }

    #[cached::proc_macro::concurrent_cached(
        max_size = 2_000,
        ttl_secs = 60,
        key = "u64",
        convert = r#"{ note.id }"#
    )]
    pub fn field_concurrent(note: &Note) -> Arc<String> {
        Arc::new(note.title.clone())
    }

    #[cached::proc_macro::cached(max_size = 2_000, ttl_secs = 60)]
    pub async fn int_async(n: u64) -> Arc<String> {
        render(n)
    }
}

/// One contender: a cached function over one shape of argument.
type Lookup<I> = fn(&I) -> Arc<String>;

/// `0..KEYS` shuffled by a fixed xorshift sequence (Fisher-Yates), the same on every run.
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

/// Warms `f` on this thread, then times `calls` calls starting at `offset` in `inputs`.
fn measure<I>(f: Lookup<I>, inputs: &[I], offset: usize, calls: u64, start: &Barrier) -> Duration {
    for input in inputs {
        black_box(f(input));
    }
    start.wait();
    let started = Instant::now();
    let mut sum = 0usize;
    for input in inputs.iter().cycle().skip(offset).take(calls as usize) {
        sum += f(black_box(input)).len();
    }
    black_box(sum);
    started.elapsed()
}

/// Time for `threads` threads to make `calls` calls each (the slowest thread's time: they
/// start together).
fn run<I: Sync>(threads: usize, calls: u64, inputs: &[I], f: Lookup<I>) -> Duration {
    if threads == 1 {
        return measure(f, inputs, 0, calls, &Barrier::new(1));
    }
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                scope.spawn(move || measure(f, inputs, t * inputs.len() / threads, calls, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

/// Calls made in each timed turn of the in-turns comparison.
const TURN_CALLS: u64 = 2_000_000;

/// One key shape: its inputs and contenders, ours first, then the peer's configurations.
struct Shape<I: 'static> {
    name: &'static str,
    inputs: Vec<I>,
    ours: Lookup<I>,
    peers: [(&'static str, Lookup<I>); 2],
}

impl<I: Sync> Shape<I> {
    fn bench(&self, c: &mut Criterion) {
        for threads in [1usize, 2] {
            let mut group = c.benchmark_group(format!("hits/{}/{threads}_thread", self.name));
            group.throughput(Throughput::Elements(threads as u64));
            let contenders = [("cache_runtime", self.ours)].into_iter().chain(self.peers);
            for (name, f) in contenders {
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter_custom(|calls| run(threads, calls, &self.inputs, f))
                });
            }
            group.finish();
        }
    }

    /// Ours against each peer configuration, in turns; prints the ratios.
    fn in_turns(&self, threads: usize) {
        let mut turns = InTurns::default().add("cache_runtime", || {
            run(threads, TURN_CALLS, &self.inputs, self.ours)
        });
        for (name, f) in self.peers {
            turns = turns.add(name, move || run(threads, TURN_CALLS, &self.inputs, f));
        }
        turns.report(
            &format!(
                "hits/{} at {threads} thread(s), {TURN_CALLS} calls each",
                self.name
            ),
            15,
        );
    }
}

/// The key shapes measured.
type Shapes = (Shape<u64>, Shape<String>, Shape<(u64, u32)>, Shape<Note>);

fn shapes() -> Shapes {
    let keys = order();
    let int = Shape {
        name: "u64",
        inputs: keys.clone(),
        ours: |n| ours::int(*n),
        peers: [
            ("cached #[cached]", |n| peer::int(*n)),
            ("cached #[concurrent_cached]", |n| peer::int_concurrent(*n)),
        ],
    };
    let text = Shape {
        name: "str_url",
        inputs: keys.iter().map(|&n| url_of(n)).collect(),
        ours: |url| ours::text(url),
        peers: [
            ("cached #[cached]", |url| peer::text(url)),
            ("cached #[concurrent_cached]", |url| {
                peer::text_concurrent(url)
            }),
        ],
    };
    let pair = Shape {
        name: "u64_u32",
        inputs: keys.iter().map(|&n| (n, (n % 7) as u32)).collect(),
        ours: |&(a, b)| ours::pair(a, b),
        peers: [
            ("cached #[cached]", |&(a, b)| peer::pair(a, b)),
            ("cached #[concurrent_cached]", |&(a, b)| {
                peer::pair_concurrent(a, b)
            }),
        ],
    };
    let field = Shape {
        name: "struct_field",
        inputs: keys
            .iter()
            .map(|&n| Note {
                id: n,
                title: format!("note {n}"),
            })
            .collect(),
        ours: ours::field,
        peers: [
            ("cached #[cached]", peer::field),
            ("cached #[concurrent_cached]", peer::field_concurrent),
        ],
    };
    (int, text, pair, field)
}

/// `calls` awaited calls on one current-thread runtime (the loop runs inside the runtime, so
/// what is timed is the cached call, not entering the runtime).
macro_rules! async_run {
    ($f:path, $keys:expr, $calls:expr) => {{
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            for &k in $keys {
                black_box($f(k).await);
            }
            let started = Instant::now();
            let mut sum = 0usize;
            for &k in $keys.iter().cycle().take($calls as usize) {
                sum += $f(black_box(k)).await.len();
            }
            black_box(sum);
            started.elapsed()
        })
    }};
}

fn async_hits(c: &mut Criterion, keys: &[u64], in_turns: bool) {
    let mut group = c.benchmark_group("hits/async_u64/current_thread");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("cache_runtime"), |b| {
        b.iter_custom(|calls| async_run!(ours::int_async, keys, calls))
    });
    group.bench_function(BenchmarkId::from_parameter("cached #[cached]"), |b| {
        b.iter_custom(|calls| async_run!(peer::int_async, keys, calls))
    });
    group.finish();
    if !in_turns {
        return;
    }
    InTurns::default()
        .add("cache_runtime", || {
            async_run!(ours::int_async, keys, TURN_CALLS)
        })
        .add("cached #[cached]", || {
            async_run!(peer::int_async, keys, TURN_CALLS)
        })
        .report(
            &format!("hits/async_u64 on a current-thread runtime, {TURN_CALLS} calls each"),
            15,
        );
}

fn hit_paths(c: &mut Criterion) {
    let began = Instant::now();
    let (int, text, pair, field) = shapes();
    // Criterion's filter picks groups; the in-turns tables run only for the shapes asked for.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| name.contains(o) || o.contains(name))
    };
    int.bench(c);
    text.bench(c);
    pair.bench(c);
    field.bench(c);
    async_hits(c, &int.inputs, wanted("hits/async_u64"));
    for threads in [1, 2] {
        if wanted(&format!("hits/u64/{threads}")) {
            int.in_turns(threads);
        }
        if wanted(&format!("hits/str_url/{threads}")) {
            text.in_turns(threads);
        }
        if wanted(&format!("hits/u64_u32/{threads}")) {
            pair.in_turns(threads);
        }
        if wanted(&format!("hits/struct_field/{threads}")) {
            field.in_turns(threads);
        }
    }
    // Misses happen only while warming: once per key, and once more each time its TTL ran out.
    let lifetimes = began.elapsed().as_secs() / 60 + 1;
    for (name, misses) in [
        ("int", ours::int::stats().misses),
        ("text", ours::text::stats().misses),
        ("pair", ours::pair::stats().misses),
        ("field", ours::field::stats().misses),
        ("async", ours::int_async::stats().misses),
    ] {
        assert!(
            misses <= KEYS * lifetimes,
            "{name}: {misses} misses for {KEYS} keys"
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = hit_paths
}
criterion_main!(benches);
