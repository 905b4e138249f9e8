//! The disk store (SQLite, feature `disk`): an L2 hit with L1 emptied against a raw rusqlite
//! `SELECT value FROM entries WHERE key = ?` of the same row plus the envelope's decode, and
//! against the `cached` crate's disk store (`RedbCache`, feature `redb_store`, on the same
//! values); then a page of 50 fragments on disk, preloaded (one `get_many`: one statement in
//! one read transaction) against 50 single reads, against 50 `RedbCache` reads and against a
//! raw `SELECT .. WHERE key IN (50 keys)` + decode.
//!
//! Every store lives in a directory of its own under the system's temp dir (removed at the
//! end). After criterion's groups each set of rows runs again in turns (see
//! `benches::InTurns`), and the ratios printed there are the ones the README reports. Python's
//! `diskcache` on the same kind of value: `python3 benches/diskcache_get.py`.
//!
//! cargo bench -p benches --bench disk

use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use benches::{fragment, raw_moka, timed, InTurns};
use cache_runtime::codec::{self, DefaultCodec};
use cache_runtime::{preload, Config, Key};
use cached::{ConcurrentCached, RedbCache};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const FRAGMENTS: u64 = 50;

/// Rounds in turns, after criterion's groups.
const HIT_ROUNDS: usize = 5_000;
const PAGE_ROUNDS: usize = 500;

#[cache_runtime::cached(ttl = 600)]
fn emptied(n: u64) -> String {
    fragment(n)
}

#[cache_runtime::cached(ttl = 600)]
fn paged(n: u64) -> String {
    fragment(n)
}

/// A directory of its own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cache-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        Dir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The floor: a connection of our own to the store's file, opened as the store opens its
/// own (WAL, `synchronous = NORMAL`), reading rows the store wrote and decoding them with the
/// same codec.
struct RawSqlite {
    conn: rusqlite::Connection,
}

impl RawSqlite {
    fn open(dir: &Path) -> Self {
        let conn = rusqlite::Connection::open(dir.join("cache.sqlite3")).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .expect("pragmas");
        RawSqlite { conn }
    }

    fn get(&self, key: &str) -> String {
        let bytes: Vec<u8> = self
            .conn
            .prepare_cached("SELECT value FROM entries WHERE key = ?1")
            .expect("prepare")
            .query_row([key], |row| row.get(0))
            .expect("the row");
        decode(&bytes)
    }

    fn get_many(&self, keys: &[String]) -> Vec<String> {
        let marks = vec!["?"; keys.len()].join(",");
        let sql = format!("SELECT value FROM entries WHERE key IN ({marks})");
        let mut statement = self.conn.prepare_cached(&sql).expect("prepare");
        let rows = statement
            .query_map(rusqlite::params_from_iter(keys), |row| {
                row.get::<_, Vec<u8>>(0)
            })
            .expect("query");
        rows.map(|bytes| decode(&bytes.expect("a row"))).collect()
    }
}

fn decode(bytes: &[u8]) -> String {
    codec::decode::<String, DefaultCodec>(bytes)
        .expect("an envelope")
        .0
}

/// The `cached` crate's disk store, in a directory of its own, holding the same fragments.
fn redb(dir: &Path) -> RedbCache<u64, String> {
    let store = RedbCache::builder("bench")
        .disk_dir(dir)
        .ttl(Duration::from_secs(600))
        .build()
        .expect("RedbCache");
    for n in 0..FRAGMENTS {
        store.cache_set(n, fragment(n)).expect("redb write");
    }
    store
}

fn keys(key: fn(u64) -> Key) -> Vec<String> {
    (0..FRAGMENTS).map(|n| key(n).to_string()).collect()
}

fn render(f: impl Fn(u64) -> String) -> usize {
    (0..FRAGMENTS).map(|n| f(n).len()).sum()
}

fn preloaded() -> usize {
    preload((0..FRAGMENTS).map(paged::key), || render(paged))
}

fn disk(c: &mut Criterion) {
    let ours = Dir::new("disk-store");
    let theirs = Dir::new("disk-redb");
    Config::new()
        .disk(ours.path())
        .prefix("bench")
        .install()
        .expect("install");
    emptied(1); // computed once, written to disk
    for n in 0..FRAGMENTS {
        paged(n);
    }
    let raw = RawSqlite::open(ours.path());
    let raw_key = emptied::key(1).to_string();
    let page_keys = keys(paged::key);
    assert_eq!(raw.get(&raw_key), fragment(1));
    let redb = redb(theirs.path());
    assert_eq!(redb.cache_get(&1).expect("redb read"), Some(fragment(1)));

    let mut group = c.benchmark_group("disk_hit");
    group.bench_function("raw rusqlite SELECT + decode", |b| {
        b.iter(|| black_box(raw.get(&raw_key)))
    });
    group.bench_function("cache_runtime, L1 emptied", |b| {
        b.iter_batched(
            emptied::clear_local,
            |()| black_box(emptied(1)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cached RedbCache cache_get", |b| {
        b.iter(|| black_box(redb.cache_get(&1).expect("redb read")))
    });
    group.finish();

    let mut group = c.benchmark_group("disk_page_of_50");
    group.bench_function("raw rusqlite SELECT .. IN (50) + decode", |b| {
        b.iter(|| black_box(raw.get_many(&page_keys)))
    });
    group.bench_function("cache_runtime with preload, L1 emptied", |b| {
        b.iter_batched(
            paged::clear_local,
            |()| black_box(preloaded()),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cache_runtime without preload, L1 emptied", |b| {
        b.iter_batched(
            paged::clear_local,
            |()| black_box(render(paged)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cached RedbCache, 50 cache_get", |b| {
        b.iter(|| black_box(render(|n| redb.cache_get(&n).unwrap().unwrap())))
    });
    group.finish();

    // The rows that decide the targets again, in turns. A second floor adds what any layered
    // cache on moka does before and after reading its shared layer, which the contract asks
    // for: the L1 lookup that misses, and the backfill (an insert into an emptied moka cache).
    let moka = raw_moka();
    let empty_moka = || {
        moka.invalidate_all();
        moka.run_pending_tasks();
    };
    let raw = RefCell::new(raw);
    let medians = InTurns::default()
        .add("raw rusqlite SELECT + decode", || {
            timed(|| raw.borrow().get(&raw_key))
        })
        .add(
            "moka get (a miss) + raw rusqlite SELECT + decode + moka insert, moka emptied",
            || {
                empty_moka();
                timed(|| {
                    assert!(moka.get(&raw_key).is_none());
                    moka.insert(raw_key.clone(), raw.borrow().get(&raw_key))
                })
            },
        )
        .add("cache_runtime, L1 emptied", || {
            emptied::clear_local();
            timed(|| emptied(1))
        })
        .add("cached RedbCache cache_get", || {
            timed(|| redb.cache_get(&1).expect("redb read"))
        })
        .report("disk_hit", HIT_ROUNDS);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  cache_runtime ÷ raw: {:.2}×; ÷ floor with the moka miss and insert: {:.2}×; \
         cached RedbCache ÷ cache_runtime: {:.2}×",
        ratio(medians[2], medians[0]),
        ratio(medians[2], medians[1]),
        ratio(medians[3], medians[2])
    );
    let medians = InTurns::default()
        .add("raw rusqlite SELECT .. IN (50) + decode", || {
            timed(|| raw.borrow().get_many(&page_keys))
        })
        .add(
            "raw rusqlite SELECT .. IN (50) + decode + moka insert, moka emptied",
            || {
                empty_moka();
                timed(|| {
                    let values = raw.borrow().get_many(&page_keys);
                    for (key, value) in page_keys.iter().zip(values) {
                        moka.insert(key.clone(), value);
                    }
                })
            },
        )
        .add("cache_runtime with preload, L1 emptied", || {
            paged::clear_local();
            timed(preloaded)
        })
        .add("cache_runtime without preload, L1 emptied", || {
            paged::clear_local();
            timed(|| render(paged))
        })
        .add("cached RedbCache, 50 cache_get", || {
            timed(|| render(|n| redb.cache_get(&n).unwrap().unwrap()))
        })
        .report("disk_page_of_50", PAGE_ROUNDS);
    println!(
        "  with preload ÷ floor with moka inserts: {:.2}×; without preload ÷ with preload: \
         {:.1}×; RedbCache ÷ with preload: {:.2}×",
        ratio(medians[2], medians[1]),
        ratio(medians[3], medians[2]),
        ratio(medians[4], medians[2])
    );

    for stats in [emptied::stats(), paged::stats()] {
        assert_eq!(stats.l2_errors, 0);
        assert_eq!(stats.decode_errors, 0);
    }
    assert_eq!(
        emptied::stats().misses,
        1,
        "only the first call ran the body"
    );
    assert_eq!(
        paged::stats().misses,
        FRAGMENTS,
        "only the first page ran the bodies"
    );
    assert_eq!(emptied::stats().l1_hits, 0, "L1 was cold on every call");
    Config::uninstall();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = disk
}
criterion_main!(benches);
