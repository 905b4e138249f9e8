//! `#[cached(max_bytes = N)]`: L1 bounded by what its entries weigh — each value's encoded
//! length (the envelope the shared store would hold) plus its key's — instead of by their
//! count. Sizes are read from `functions()` (`l1_bytes`, `entries`), which lets moka apply its
//! pending evictions first.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::Config;
use cache_runtime::{cached, functions, FunctionInfo};
use integration_tests::disk::TempDir;
use integration_tests::{serial, with_redis};

/// A value of about a kilobyte (1 000 characters: 1 033 bytes encoded).
fn kilobyte(n: u32) -> String {
    format!("{n:0>1000}")
}

fn info(name: &str) -> FunctionInfo {
    functions()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is listed"))
}

/// On a thread of its own, so that no front table answers instead of L1.
fn elsewhere<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(call).join().unwrap()
}

const BOUND: u64 = 64 << 10;

static FILLED: AtomicU32 = AtomicU32::new(0);

#[cached(local, max_bytes = BOUND, policy = "lru", name = "l1_bytes::filled")]
fn filled(n: u32) -> String {
    FILLED.fetch_add(1, SeqCst);
    kilobyte(n)
}

/// 500 values of a kilobyte (half a megabyte) through an L1 of 64 KiB: it holds what fits,
/// each entry weighed by its size (an L1 bounded by count would hold all 500).
#[test]
fn values_far_past_max_bytes_keep_l1_within_it() {
    let _guard = serial();
    elsewhere(|| {
        for n in 0..500 {
            filled(n);
        }
    });
    let held = info("l1_bytes::filled");
    assert!(
        held.l1_bytes <= BOUND,
        "{} bytes held, bound {BOUND}",
        held.l1_bytes
    );
    assert!(
        (30..=64).contains(&held.entries),
        "{} entries of ~1 KiB held in 64 KiB",
        held.entries
    );
    assert!(
        held.l1_bytes >= held.entries * 1_033,
        "each entry weighs its encoded length: {} bytes for {} entries",
        held.l1_bytes,
        held.entries
    );
    // The latest ones are still served from L1 (`lru` admits each new key).
    let runs = FILLED.load(SeqCst);
    assert_eq!(elsewhere(|| filled(499)), kilobyte(499));
    assert_eq!(FILLED.load(SeqCst), runs, "a hit, no body run");
}

static SHARED: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, max_bytes = 1_000_000, name = "l1_bytes::shared")]
fn shared(n: u32) -> String {
    SHARED.fetch_add(1, SeqCst);
    kilobyte(n)
}

/// A shared function weighs a value by the bytes the store holds for it plus its key: the
/// same whether the body computed it or it was read back from Redis.
#[test]
fn an_entry_weighs_its_stored_bytes_and_hits_are_served() {
    let (_guard, server) = with_redis("l1-bytes");
    assert_eq!(elsewhere(|| shared(7)), kilobyte(7));
    assert_eq!(elsewhere(|| shared(7)), kilobyte(7));
    assert_eq!(SHARED.load(SeqCst), 1, "the second call was a hit");
    assert_eq!(server.calls("get"), 1, "from L1: no second GET");
    let stored: u64 = redis::cmd("STRLEN")
        .arg(shared::key(7).to_string())
        .query(&mut server.connection())
        .unwrap();
    let key_len = "7".len() as u64;
    assert_eq!(info("l1_bytes::shared").l1_bytes, stored + key_len);

    shared::clear_local();
    assert_eq!(elsewhere(|| shared(7)), kilobyte(7));
    assert_eq!(shared::stats().l2_hits, 1, "read back from Redis");
    assert_eq!(
        info("l1_bytes::shared").l1_bytes,
        stored + key_len,
        "weighed by the bytes read"
    );
}

static PAGED: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, max_bytes = BOUND, policy = "lru", name = "l1_bytes::paged")]
async fn paged(n: u32) -> String {
    PAGED.fetch_add(1, SeqCst);
    kilobyte(n)
}

/// The same bound for an `async fn` over the disk store: L1 stays within it, and a value read
/// back from the SQLite file after L1 was emptied is weighed and served like a computed one.
#[test]
fn an_async_function_over_the_disk_store_keeps_l1_within_max_bytes() {
    let _guard = serial();
    let dir = TempDir::new("l1-bytes");
    Config::new().disk(dir.path()).install().expect("install");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for n in 0..200 {
            assert_eq!(paged(n).await, kilobyte(n));
        }
    });
    let held = info("l1_bytes::paged");
    assert!(
        held.l1_bytes <= BOUND && held.entries <= 64,
        "{} bytes in {} entries held, bound {BOUND}",
        held.l1_bytes,
        held.entries
    );
    assert!(
        dir.has_row(&paged::key(0).to_string()),
        "every value is on disk"
    );

    paged::clear_local();
    let runs = PAGED.load(SeqCst);
    assert_eq!(runtime.block_on(paged(3)), kilobyte(3));
    assert_eq!(
        PAGED.load(SeqCst),
        runs,
        "read back from disk, not computed"
    );
    assert_eq!(paged::stats().l2_hits, 1);
    let held = info("l1_bytes::paged");
    assert_eq!(held.entries, 1);
    assert!(
        (1_033..=1_100).contains(&held.l1_bytes),
        "weighed by its stored bytes: {}",
        held.l1_bytes
    );
    Config::uninstall();
}
