//! Another process of the "fleet", driven by the multi-process tests.
//!
//! ```text
//! fleet_peer stampede URL PREFIX MODE THREADS AT THREADS threads call one cold key at unix ms AT;
//!                                                MODE is `lock` or `plain`; prints `runs=N`
//! fleet_peer owner    URL PREFIX                 take the lock of slow_locked(1) and compute forever
//! ```

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "fleet::hot", lock)]
fn hot_locked(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    format!("hot {n} from {}", std::process::id())
}

#[cached(ttl = 60, name = "fleet::hot_plain")]
fn hot_plain(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    format!("hot {n} from {}", std::process::id())
}

#[cached(ttl = 60, name = "fleet::slow_locked", lock, lock_timeout = 1)]
fn slow_locked(n: u64) -> String {
    println!("computing");
    std::thread::sleep(Duration::from_secs(3600));
    format!("never {n}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    cache_runtime::Config::new()
        .redis(arg(2))
        .prefix(arg(3))
        .install()
        .expect("install");
    match arg(1) {
        "stampede" => {
            let locked = arg(4) == "lock";
            let threads: usize = arg(5).parse().expect("THREADS");
            let at: u128 = arg(6).parse().expect("AT");
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(move || {
                        while SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_millis()
                            < at
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if locked {
                            hot_locked(1)
                        } else {
                            hot_plain(1)
                        }
                    })
                })
                .collect();
            for handle in handles {
                assert!(handle.join().expect("caller").starts_with("hot 1"));
            }
            println!("runs={}", RUNS.load(SeqCst));
        }
        "owner" => {
            slow_locked(1);
        }
        other => panic!("unknown mode {other:?}"),
    }
}
