//! The arguments of `#[cached]` over the disk store (a real SQLite file in a directory of its
//! own), each as a sync and an async function: `batch`, the lifetime arguments (`idle`,
//! `local_ttl`, `expires`, `stale_if_error`, `cache_none` / `none_ttl`) and `cached_block!`.
//! Their Redis and L1 versions are in `batch.rs`, `lifetimes.rs` and `blocks.rs`.
//!
//! [`on_disk!`] writes each test once and expands it twice: in `sync`, the functions as `fn`s
//! and `call!(f(..))` as the plain call; in `asynchronous`, the same functions as `async fn`s
//! and `call!` awaiting the call on a multi-thread runtime. `elsewhere!` makes the call on a
//! thread of its own, whose empty front table lets L1 answer (or not).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{block_clear_local, block_key, cached, cached_block, Config};
use integration_tests::disk::TempDir;
use integration_tests::serial;
use integration_tests::values::Token;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
});

/// Runs an async call to its end (from any thread).
fn block_on<F: Future>(call: F) -> F::Output {
    RUNTIME.block_on(call)
}

fn wait(d: Duration) {
    std::thread::sleep(d);
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Installs the disk store in a fresh directory for one test, and takes it away after.
struct OnDisk {
    dir: TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl OnDisk {
    fn new(name: &str) -> Self {
        let serial = serial();
        let dir = TempDir::new(name);
        Config::new()
            .disk(dir.path())
            .prefix("features")
            .install()
            .expect("install");
        OnDisk {
            dir,
            _serial: serial,
        }
    }

    /// How long the row of `key` has left, in ms.
    fn left_ms(&self, key: impl std::fmt::Display) -> i64 {
        let at = self.dir.expiry_of(&key.to_string()).expect("an expiry");
        at - unix_millis()
    }
}

impl Drop for OnDisk {
    fn drop(&mut self) {
        Config::uninstall();
    }
}

/// One test, as a sync and an async variant (see the module docs).
macro_rules! on_disk {
    (
        $test:ident;
        items { $($item:item)* }
        $( $(#[$attr:meta])* fn $f:ident($($param:ident: $ty:ty),*) -> $ret:ty $body:block )*
        test |$disk:ident| $check:block
    ) => {
        mod $test {
            mod sync {
                #[allow(unused_imports)]
                use super::super::*;
                #[allow(unused_macros)]
                macro_rules! call { ($call:expr) => { $call }; }
                #[allow(unused_macros)]
                macro_rules! elsewhere {
                    ($call:expr) => { ::std::thread::spawn(move || call!($call)).join().unwrap() };
                }
                $($item)*
                $( $(#[$attr])* fn $f($($param: $ty),*) -> $ret $body )*

                #[test]
                fn on_disk() {
                    let $disk = OnDisk::new(concat!(stringify!($test), "-sync"));
                    $check
                }
            }

            mod asynchronous {
                #[allow(unused_imports)]
                use super::super::*;
                #[allow(unused_macros)]
                macro_rules! call { ($call:expr) => { block_on($call) }; }
                #[allow(unused_macros)]
                macro_rules! elsewhere {
                    ($call:expr) => { ::std::thread::spawn(move || call!($call)).join().unwrap() };
                }
                $($item)*
                $( $(#[$attr])* async fn $f($($param: $ty),*) -> $ret $body )*

                #[test]
                fn on_disk() {
                    let $disk = OnDisk::new(concat!(stringify!($test), "-async"));
                    $check
                }
            }
        }
    };
}

on_disk! {
    batch;
    items {
        static ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
    }
    #[cached(ttl = 60, batch)]
    fn users(ids: &[u64]) -> HashMap<u64, String> {
        ASKED.lock().unwrap().push(ids.to_vec());
        ids.iter().map(|&id| (id, format!("user {id}"))).collect()
    }
    test |disk| {
        assert_eq!(call!(users(&[1, 2, 3])).len(), 3);
        assert_eq!(disk.dir.rows().len(), 3, "a row per element");
        assert!(disk.left_ms(users::key_for(&2)) > 55_000, "stored for the ttl");
        // A cold L1 (another process): the three come from the file, the body gets the new one.
        users::clear_local();
        let found = call!(users(&[1, 2, 3, 4]));
        assert_eq!(found[&4], "user 4");
        assert_eq!(found[&1], "user 1");
        assert_eq!(*ASKED.lock().unwrap(), [vec![1, 2, 3], vec![4]]);
        assert_eq!(users::stats().l2_hits, 3);
        call!(users::invalidate(&[2]));
        assert!(!disk.dir.has_row(&users::key_for(&2).to_string()), "removed from the file");
        assert_eq!(disk.dir.rows().len(), 3);
    }
}

on_disk! {
    idle;
    items {
        static RUNS: AtomicU32 = AtomicU32::new(0);
    }
    #[cached(ttl = 60, idle = Duration::from_millis(1000))]
    fn session(id: u32) -> u32 {
        RUNS.fetch_add(1, SeqCst);
        id
    }
    test |disk| {
        elsewhere!(session(1));
        elsewhere!(session(2));
        for _ in 0..6 {
            wait(Duration::from_millis(250));
            elsewhere!(session(2));
        }
        assert_eq!(session::stats().l1_hits, 6, "a key read every 250 ms stays in L1");
        assert_eq!(session::stats().l2_hits, 0);
        assert_eq!(elsewhere!(session(1)), 1);
        assert_eq!(
            (RUNS.load(SeqCst), session::stats().l2_hits),
            (2, 1),
            "the idle one left L1 and was read back from the file"
        );
        assert!(disk.dir.has_row(&session::key(1).to_string()));
    }
}

on_disk! {
    local_ttl;
    items {
        static RUNS: AtomicU32 = AtomicU32::new(0);
    }
    #[cached(ttl = 60, local_ttl = Duration::from_millis(500))]
    fn profile(id: u32) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("profile {id}")
    }
    test |disk| {
        assert_eq!(elsewhere!(profile(1)), "profile 1");
        assert_eq!(elsewhere!(profile(1)), "profile 1");
        assert_eq!(profile::stats().l2_hits, 0, "an L1 hit");
        assert!(disk.left_ms(profile::key(1)) > 55_000, "the file keeps it for the ttl");
        wait(Duration::from_millis(600));
        assert_eq!(elsewhere!(profile(1)), "profile 1");
        assert_eq!(
            (RUNS.load(SeqCst), profile::stats().l2_hits),
            (1, 1),
            "past local_ttl: read from the file, where it is fresh"
        );
    }
}

on_disk! {
    expires;
    items {
        static RUNS: AtomicU32 = AtomicU32::new(0);
    }
    #[cached(ttl = 60, expires)]
    fn token(user: u32) -> Token {
        let run = RUNS.fetch_add(1, SeqCst);
        Token {
            secret: format!("t{user}-{run}"),
            valid_ms: if user == 1 { 500 } else { 600_000 },
        }
    }
    test |disk| {
        let (short, long) = (call!(token(1)), call!(token(2)));
        assert!(disk.left_ms(token::key(1)) <= 500, "its own 500 ms in the file");
        let capped = disk.left_ms(token::key(2));
        assert!((55_000..=60_000).contains(&capped), "capped at the ttl: {capped} ms");
        wait(Duration::from_millis(600));
        assert_ne!(elsewhere!(token(1)), short, "recomputed after its own lifetime");
        assert_eq!(elsewhere!(token(2)), long, "the other still cached");
    }
}

on_disk! {
    stale_if_error;
    items {
        static FAILS: AtomicBool = AtomicBool::new(false);
    }
    #[cached(ttl = Duration::from_millis(500), stale_if_error = 60)]
    fn quote(symbol: u32) -> Result<String, String> {
        if FAILS.load(SeqCst) {
            Err("upstream down".into())
        } else {
            Ok(format!("quote {symbol}"))
        }
    }
    test |disk| {
        assert_eq!(call!(quote(1)), Ok("quote 1".into()));
        let kept = disk.left_ms(quote::key(1));
        assert!(kept > 55_000, "kept for ttl + stale_if_error: {kept} ms");
        // A process whose memory is empty, past the ttl, with the backend down.
        quote::clear_local();
        wait(Duration::from_millis(600));
        FAILS.store(true, SeqCst);
        assert_eq!(call!(quote(1)), Ok("quote 1".into()), "the file's last good value");
        assert_eq!(quote::stats().stale_served, 1);
        assert!(call!(quote(2)).is_err(), "nothing to stand in: the error");
    }
}

on_disk! {
    cache_none;
    items {
        static RUNS: AtomicU32 = AtomicU32::new(0);
    }
    #[cached(ttl = 60, cache_none, none_ttl = Duration::from_millis(500))]
    fn lookup(id: u32) -> Option<u32> {
        RUNS.fetch_add(1, SeqCst);
        (id > 10).then_some(id)
    }
    test |disk| {
        assert_eq!(call!(lookup(3)), None);
        assert_eq!(call!(lookup(3)), None);
        assert_eq!(RUNS.load(SeqCst), 1, "the None was cached");
        assert!(disk.left_ms(lookup::key(3)) <= 500, "stored for none_ttl");
        assert_eq!(call!(lookup(30)), Some(30));
        assert!(disk.left_ms(lookup::key(30)) > 55_000, "a Some for the ttl");
        lookup::clear_local();
        assert_eq!(call!(lookup(3)), None);
        assert_eq!(
            (RUNS.load(SeqCst), lookup::stats().l2_hits),
            (2, 1),
            "the None read back from the file"
        );
        wait(Duration::from_millis(600));
        assert_eq!(elsewhere!(lookup(3)), None);
        assert_eq!(RUNS.load(SeqCst), 3, "past none_ttl: asked again");
    }
}

/// A block over the disk store: it runs once per key, its row is in the file, and a cold L1
/// reads the row instead of running it. `card` renders through the block; `runs` counts the
/// block's runs.
fn check_block(disk: &OnDisk, name: &str, card: impl Fn(u64) -> String, runs: &AtomicU32) {
    assert_eq!(card(1), "<aside>user 1</aside>");
    assert_eq!(card(1), "<aside>user 1</aside>");
    assert_eq!(runs.load(SeqCst), 1, "a hit in memory");
    assert!(
        disk.left_ms(block_key(name, &1_u64)) > 55_000,
        "its row, for the ttl"
    );
    block_clear_local(name);
    assert_eq!(card(1), "<aside>user 1</aside>");
    assert_eq!(runs.load(SeqCst), 1, "read back from the file");
    assert_eq!(card(2), "<aside>user 2</aside>");
    assert_eq!(runs.load(SeqCst), 2);
    assert_eq!(disk.dir.rows().len(), 2);
}

static SYNC_CARDS: AtomicU32 = AtomicU32::new(0);

fn sync_card(user: u64) -> String {
    cached_block!(
        name = "disk_features::card",
        ttl = 60,
        key = user,
        value = String,
        {
            SYNC_CARDS.fetch_add(1, SeqCst);
            format!("<aside>user {user}</aside>")
        }
    )
}

#[test]
fn a_block_keeps_its_entries_in_the_file() {
    let disk = OnDisk::new("block-sync");
    check_block(&disk, "disk_features::card", sync_card, &SYNC_CARDS);
}

static ASYNC_CARDS: AtomicU32 = AtomicU32::new(0);

async fn async_card(user: u64) -> String {
    cached_block!(async name = "disk_features::async_card", ttl = 60, key = user, value = String, {
        ASYNC_CARDS.fetch_add(1, SeqCst);
        tokio::task::yield_now().await;
        format!("<aside>user {user}</aside>")
    })
    .await
}

#[test]
fn an_async_block_keeps_its_entries_in_the_file() {
    let disk = OnDisk::new("block-async");
    let card = |user| block_on(async_card(user));
    check_block(&disk, "disk_features::async_card", card, &ASYNC_CARDS);
}
