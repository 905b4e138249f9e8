//! What reading a stored value costs: bincode's own decoder on the bare payload (the floor)
//! against the runtime's `codec::decode`, which also checks the envelope (format, codec, type
//! fingerprint, the checksum over header and payload) and decodes with bounds on depth,
//! memory and work. Values: the 190-byte HTML fragment the Redis benches store, a 10 kB
//! string, and 1 000 integers.
//!
//! cargo bench -p benches --bench codec

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::{fragment, InTurns};
use cache_runtime::codec::{self, DefaultCodec, Header};
use criterion::{criterion_group, criterion_main, Criterion};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes per timed sample in the in-turns runs (one decode is below the timer's grain).
const BATCH: u32 = 1_000;
const ROUNDS: usize = 300;

fn header() -> Header {
    Header {
        expires_at_ms: Some(u64::MAX / 2),
        compute_time: Duration::from_micros(120),
    }
}

fn bincode_decode<T: DeserializeOwned>(payload: &[u8]) -> T {
    bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .expect("bincode")
        .0
}

fn compare<T: Serialize + DeserializeOwned>(c: &mut Criterion, name: &str, value: T) {
    let envelope = codec::encode::<T, DefaultCodec>(&value, header()).expect("encodable");
    let payload = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
    assert_eq!(
        &envelope[30..],
        &payload[..],
        "the envelope holds bincode's bytes"
    );
    let mut group = c.benchmark_group(format!("decode {name}"));
    group.bench_function("bincode decode_from_slice (payload only)", |b| {
        b.iter(|| black_box(bincode_decode::<T>(black_box(&payload))))
    });
    group.bench_function("cache_runtime codec::decode (envelope)", |b| {
        b.iter(|| black_box(codec::decode::<T, DefaultCodec>(black_box(&envelope)).unwrap()))
    });
    group.finish();
    let batch = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        started.elapsed() / BATCH
    };
    InTurns::default()
        .add("bincode decode_from_slice (payload only)", || {
            batch(&|| {
                black_box(bincode_decode::<T>(black_box(&payload)));
            })
        })
        .add("cache_runtime codec::decode (envelope, checksum)", || {
            batch(&|| {
                black_box(codec::decode::<T, DefaultCodec>(black_box(&envelope)).unwrap());
            })
        })
        .report(&format!("decode {name} (per decode)"), ROUNDS);
}

fn decode(c: &mut Criterion) {
    compare(c, "fragment (190 B)", fragment(7));
    compare(c, "string (10 kB)", "x".repeat(10_000));
    compare(
        c,
        "1000 u64",
        (0..1000u64).map(|i| i * 7919).collect::<Vec<_>>(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = decode
}
criterion_main!(benches);
