//! `f::peek`, `f::put` and `f::clear` against a real Redis: what the layers hold without
//! running the body, warming a value every thread then sees, and removing every entry of a
//! function (in SCAN + UNLINK rounds) while other functions keep theirs. Also named stores:
//! `#[cached(store = "..")]` reaches the store configured under that name, and a name the
//! config lacks keeps the function in memory, with one warning.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Barrier;

use cache_runtime::{cached, Config, Store};
use integration_tests::{logs::Logs, serial, with_redis, RedisServer};

static DOUBLED: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
fn doubled(n: u64) -> u64 {
    DOUBLED.fetch_add(1, SeqCst);
    n * 2
}

#[test]
fn peek_reads_l1_then_redis_and_never_runs_the_body() {
    let (_guard, server) = with_redis("peek");
    assert_eq!(doubled::peek(1), None, "held nowhere");
    assert_eq!(server.calls("get"), 1, "Redis was asked");
    assert_eq!(DOUBLED.load(SeqCst), 0, "the body did not run");
    assert_eq!(doubled(1), 2);
    server.reset_stats();
    assert_eq!(doubled::peek(1), Some(2), "from L1");
    assert_eq!(server.calls("get"), 0);
    doubled::clear_local();
    assert_eq!(doubled::peek(1), Some(2), "from Redis");
    assert_eq!(server.calls("get"), 1);
    assert_eq!(doubled(1), 2, "peek backfilled L1");
    assert_eq!(server.calls("get"), 1, "no second GET");
    assert_eq!(DOUBLED.load(SeqCst), 1);
}

static GREETING: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
fn greeting(n: u64) -> String {
    GREETING.fetch_add(1, SeqCst);
    format!("computed {n}")
}

#[cached(ttl = 60, name = "greeting_reader")]
fn greeting_reader(n: u64) -> String {
    format!("reader computed {n}")
}

/// A value put by one thread replaces what another thread's front table held, and reaches
/// Redis for every other process.
#[test]
fn put_replaces_every_threads_copy_and_reaches_redis() {
    let (_guard, server) = with_redis("put");
    let (held, put_done) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(greeting(1), "computed 1");
            assert_eq!(
                greeting(1),
                "computed 1",
                "now in this thread's front table"
            );
            held.wait();
            put_done.wait();
            assert_eq!(greeting(1), "warmed 1", "the front copy was replaced");
        });
        held.wait();
        greeting::put(1, "warmed 1".to_string());
        put_done.wait();
    });
    assert_eq!(greeting(1), "warmed 1");
    greeting::put(2, "warmed 2".to_string());
    assert_eq!(greeting(2), "warmed 2", "a put value needs no body run");
    assert_eq!(GREETING.load(SeqCst), 1);
    // The key of another function with the same layout reads what was put, from Redis.
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(greeting::key(1).to_string())
        .query(&mut server.connection())
        .expect("GET");
    assert!(stored.is_some(), "the put value is in Redis");
    greeting::clear_local();
    server.reset_stats();
    assert_eq!(greeting(1), "warmed 1");
    assert_eq!((server.calls("get"), greeting::stats().l2_hits), (1, 1));
    let _ = greeting_reader(0);
}

static PAGE: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 600)]
fn page(n: u64) -> u64 {
    PAGE.fetch_add(1, SeqCst);
    n
}

static OTHER: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 600)]
fn other(n: u64) -> u64 {
    OTHER.fetch_add(1, SeqCst);
    n
}

fn keys_like(server: &RedisServer, pattern: &str) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut server.connection())
        .expect("KEYS");
    keys.len()
}

/// 1 200 entries (several SCAN rounds) of one function are removed from Redis and L1; another
/// function's entries stay.
#[test]
fn clear_removes_every_entry_of_the_function_and_nothing_else() {
    let (_guard, server) = with_redis("clear");
    for n in 0..1200 {
        page(n);
    }
    for n in 0..10 {
        other(n);
    }
    let page_prefix = format!("{}*", page::key(0).to_string().trim_end_matches('0'));
    let other_prefix = format!("{}*", other::key(0).to_string().trim_end_matches('0'));
    assert_eq!(keys_like(&server, &page_prefix), 1200);
    server.reset_stats();
    page::clear();
    assert_eq!(
        keys_like(&server, &page_prefix),
        0,
        "every entry of page is gone"
    );
    assert_eq!(
        keys_like(&server, &other_prefix),
        10,
        "other keeps its entries"
    );
    assert!(
        server.calls("scan") >= 3,
        "SCAN rounds: {}",
        server.calls("scan")
    );
    assert!(server.calls("unlink") >= 3);
    let runs = PAGE.load(SeqCst);
    page(5);
    assert_eq!(PAGE.load(SeqCst), runs + 1, "L1 was emptied too");
    other(5);
    assert_eq!(OTHER.load(SeqCst), 10, "other still answers from L1");
}

static ASYNC_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60)]
async fn slow_square(n: u64) -> u64 {
    ASYNC_RUNS.fetch_add(1, SeqCst);
    n * n
}

#[test]
fn async_companions_peek_put_and_clear() {
    let (_guard, _server) = with_redis("async-companions");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        assert_eq!(slow_square::peek(3).await, None);
        assert_eq!(slow_square(3).await, 9);
        slow_square::clear_local();
        assert_eq!(slow_square::peek(3).await, Some(9), "from Redis");
        slow_square::put(4, 1000).await;
        assert_eq!(slow_square(4).await, 1000);
        slow_square::clear().await;
        assert_eq!(slow_square::peek(3).await, None, "cleared from Redis");
        assert_eq!(slow_square(4).await, 16, "computed again");
    });
    assert_eq!(ASYNC_RUNS.load(SeqCst), 2);
}

static SECOND: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, store = "second")]
fn in_second_store(n: u64) -> u64 {
    SECOND.fetch_add(1, SeqCst);
    n + 100
}

#[cached(ttl = 60)]
fn in_default_store(n: u64) -> u64 {
    n + 200
}

static NOWHERE: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, store = "not-configured")]
fn in_missing_store(n: u64) -> u64 {
    NOWHERE.fetch_add(1, SeqCst);
    n + 300
}

#[test]
fn named_stores_are_reached_by_name_and_a_missing_one_keeps_the_function_in_memory() {
    let logs = Logs::capture();
    let _guard = serial();
    let (first, second) = (RedisServer::start(), RedisServer::start());
    Config::new()
        .redis(first.url())
        .named("second", Store::redis(second.url()))
        .prefix("named")
        .install()
        .expect("install");
    first.reset_stats();
    second.reset_stats();
    logs.take();
    assert_eq!(in_second_store(1), 101);
    assert_eq!(in_default_store(1), 201);
    assert_eq!((first.calls("set"), second.calls("set")), (1, 1));
    assert_eq!((first.calls("get"), second.calls("get")), (1, 1));
    let in_second: bool = redis::cmd("EXISTS")
        .arg(in_second_store::key(1).to_string())
        .query(&mut second.connection())
        .expect("EXISTS");
    assert!(
        in_second,
        "the named store holds the named function's value"
    );
    for n in 0..3 {
        assert_eq!(in_missing_store(n), 300 + n);
    }
    assert_eq!(in_missing_store(0), 300, "still cached in memory");
    assert_eq!(NOWHERE.load(SeqCst), 3);
    assert_eq!(
        first.calls("set") + second.calls("set"),
        2,
        "nothing written for it"
    );
    let warnings: Vec<String> = logs
        .take()
        .into_iter()
        .filter(|line| line.contains("not-configured"))
        .collect();
    assert_eq!(warnings.len(), 1, "warned once: {warnings:?}");
    assert!(warnings[0].starts_with("WARN"), "{warnings:?}");
    Config::uninstall();
}

pub struct Note {
    pub id: u64,
    pub body: String,
}

static CARD_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(ttl = 60, key = note.id)]
fn note_card(note: &Note) -> String {
    CARD_RUNS.fetch_add(1, SeqCst);
    format!("card {} ({} bytes)", note.id, note.body.len())
}

struct Shelf {
    tenant: u32,
}

impl Shelf {
    #[cached(ttl = 60, key = book)]
    fn title(&self, book: u64) -> String {
        format!("tenant {} book {book}", self.tenant)
    }
}

/// `key_for(k)` is the key of the call whose key expression is `k`, so a preload scope can
/// name keys without building whole arguments (one MGET, no GET, no body run).
#[test]
fn key_for_names_the_key_a_call_uses_and_preloads_it() {
    let (_guard, server) = with_redis("key-for");
    let note = Note {
        id: 7,
        body: "text".into(),
    };
    assert_eq!(note_card::key_for(&7u64), note_card::key(&note));
    assert_eq!(
        Shelf::title_key_for(&3u64),
        Shelf { tenant: 1 }.title_key(3)
    );
    assert_eq!(Shelf { tenant: 1 }.title(3), "tenant 1 book 3");
    note_card(&note);
    note_card::clear_local();
    server.reset_stats();
    let card = cache_runtime::preload([note_card::key_for(&7u64)], || note_card(&note));
    assert_eq!(card, "card 7 (4 bytes)");
    assert_eq!((server.calls("mget"), server.calls("get")), (1, 0));
    assert_eq!(CARD_RUNS.load(SeqCst), 1);
    assert_eq!(note_card::stats().scope_hits, 1);
}
