//! A disk-only build without the `runtime` feature (no tokio scheduler or timers compiled):
//! async functions still read and fill the disk store on an executor that is not tokio,
//! wait for another process's lock on a timer thread, and refresh a stale value in the
//! foreground. Run by `.ci/run`:
//!
//! ```text
//! cargo test -p cache-runtime --no-default-features --features disk,testing --test without_runtime
//! ```
#![cfg(all(feature = "disk", feature = "testing", not(feature = "runtime")))]

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use cache_runtime::{cached, testing, Config};

/// The smallest executor: polls on this thread, parks until woken. No tokio anywhere.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// One test at a time: they share the installed configuration.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A disk store in a directory of its own, removed on drop.
struct DiskConfig(PathBuf);

impl DiskConfig {
    fn install(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cache-without-runtime-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Config::new()
            .disk(&dir)
            .prefix("nort")
            .install()
            .expect("install");
        DiskConfig(dir)
    }
}

impl Drop for DiskConfig {
    fn drop(&mut self) {
        Config::uninstall();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static PAGE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 600)]
async fn page(n: u64) -> String {
    PAGE_RUNS.fetch_add(1, SeqCst);
    format!("page {n}")
}

#[test]
fn an_async_function_fills_and_reads_its_disk_store_without_tokio() {
    let _serial = serial();
    let _config = DiskConfig::install("page");
    assert_eq!(block_on(page(1)), "page 1");
    page::clear_local();
    assert_eq!(block_on(page(1)), "page 1");
    assert_eq!(
        PAGE_RUNS.load(SeqCst),
        1,
        "the second call was answered from disk"
    );
    let stats = page::stats();
    assert_eq!((stats.l2_hits, stats.l2_errors), (1, 0));
}

static RATE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 10, stale = 300)]
async fn rate(currency: String) -> String {
    let run = RATE_RUNS.fetch_add(1, SeqCst) + 1;
    format!("{currency} #{run}")
}

#[test]
fn a_stale_value_is_refreshed_in_the_foreground() {
    let _serial = serial();
    let _config = DiskConfig::install("rate");
    assert_eq!(block_on(rate("EUR".into())), "EUR #1");
    testing::advance(Duration::from_secs(11));
    // With tokio's scheduler a spawned task would refresh it while this call got "EUR #1";
    // without one, the caller refreshes it itself.
    assert_eq!(block_on(rate("EUR".into())), "EUR #2");
    assert_eq!(block_on(rate("EUR".into())), "EUR #2");
    assert_eq!(RATE_RUNS.load(SeqCst), 2);
}

static REPORT_RUNS: AtomicU64 = AtomicU64::new(0);

const LEASE: Duration = Duration::from_millis(200);

#[cached(ttl = 600, lock, lock_timeout = LEASE)]
async fn report(month: u32) -> String {
    REPORT_RUNS.fetch_add(1, SeqCst);
    format!("report {month}")
}

#[test]
fn a_lock_held_elsewhere_is_waited_for_on_a_timer_thread() {
    let _serial = serial();
    let config = DiskConfig::install("report");
    // Another process holds the lock of this key and never writes the value.
    let conn = rusqlite::Connection::open(config.0.join("cache.sqlite3")).expect("open");
    let far = 4_000_000_000_000i64; // milliseconds since 1970: year 2096
    conn.execute(
        "INSERT INTO locks (key, token, expires_at) VALUES (?1, 'elsewhere', ?2)",
        rusqlite::params![format!("{}:lock", report::key(11)), far],
    )
    .expect("a lock row");
    let started = Instant::now();
    assert_eq!(block_on(report(11)), "report 11");
    let waited = started.elapsed();
    assert_eq!(REPORT_RUNS.load(SeqCst), 1);
    // A waiter computes after two leases without a value: it slept between its tries, and
    // each sleep ended (the timer thread woke the task).
    assert!(waited >= LEASE * 2, "waited {waited:?}");
}
