//! One process of a fleet, driven by the `stampede` tests.
//!
//! ```text
//! stampede_worker owner  URL PREFIX       takes the lock of takeover(1), prints `computing KEY`,
//!                                         then computes forever
//! stampede_worker waiter URL PREFIX       calls takeover(1); prints its value, then `runs=N`
//! stampede_worker seed   URL PREFIX LOCK  computes the value of a stale-window function once and
//!                                         prints it (LOCK: `lock` or `plain`)
//! stampede_worker stale  URL PREFIX LOCK WARM THREADS STALE
//!     WARM = `warm`: read the value once first (L1 then holds it), `cold`: do not.
//!     Prints `ready`, waits for the key `stampede:go` to appear in Redis, then THREADS threads
//!     call the function once, together. Prints `runs=R slow=S stale=K`: body runs here, calls
//!     that took longer than half the body, calls that got the value STALE.
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_runtime::cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);
static HANG: AtomicBool = AtomicBool::new(false);

/// How long a stale-window refresh takes.
const REFRESH: Duration = Duration::from_millis(300);

#[cached(ttl = 60, name = "stampede::takeover", lock, lock_timeout = 1)]
fn takeover(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    if HANG.load(SeqCst) {
        println!("computing {}", takeover::key(n));
        std::thread::sleep(Duration::from_secs(3600));
    }
    format!("finished by process {} for {n}", std::process::id())
}

fn refreshed(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(REFRESH);
    format!("computed by process {} for {n}", std::process::id())
}

#[cached(ttl = 1, stale = 2, lock, name = "stampede::stale_locked")]
fn stale_locked(n: u64) -> String {
    refreshed(n)
}

#[cached(ttl = 1, stale = 2, name = "stampede::stale_plain")]
fn stale_plain(n: u64) -> String {
    refreshed(n)
}

fn stale_fn(lock: &str) -> fn(u64) -> String {
    match lock {
        "lock" => stale_locked,
        "plain" => stale_plain,
        other => panic!("LOCK is `lock` or `plain`, not {other:?}"),
    }
}

/// Blocks until the test sets `stampede:go` (at most 10 s).
fn wait_for_go(url: &str) {
    let mut conn = redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .expect("a connection to wait for the go key");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let go: bool = redis::cmd("EXISTS")
            .arg("stampede:go")
            .query(&mut conn)
            .expect("EXISTS");
        if go {
            return;
        }
        assert!(Instant::now() < deadline, "no go key within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn stale(url: &str, f: fn(u64) -> String, warm: bool, threads: usize, stale_value: &str) {
    if warm {
        assert_eq!(f(1), stale_value, "warmed before expiry");
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let start = Arc::new(Barrier::new(threads + 1));
    let callers: Vec<_> = (0..threads)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let value = f(1);
                (began.elapsed(), value)
            })
        })
        .collect();
    wait_for_go(url);
    start.wait();
    let (mut slow, mut stale) = (0, 0);
    for caller in callers {
        let (took, value) = caller.join().expect("caller");
        slow += usize::from(took > REFRESH / 2);
        stale += usize::from(value == stale_value);
    }
    println!("runs={} slow={slow} stale={stale}", RUNS.load(SeqCst));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut next = move || args.next().unwrap_or_default();
    let (mode, url, prefix) = (next(), next(), next());
    cache_runtime::Config::new()
        .redis(url.as_str())
        .prefix(prefix)
        .install()
        .expect("install");
    match mode.as_str() {
        "owner" => {
            HANG.store(true, SeqCst);
            takeover(1);
        }
        "waiter" => {
            println!("{}", takeover(1));
            println!("runs={}", RUNS.load(SeqCst));
        }
        "seed" => println!("{}", stale_fn(&next())(1)),
        "stale" => {
            let f = stale_fn(&next());
            let warm = next() == "warm";
            let threads = next().parse().expect("THREADS");
            stale(&url, f, warm, threads, &next());
        }
        other => panic!("unknown mode {other:?}; see the usage at the top of stampede_worker.rs"),
    }
}
