//! Another process of the "fleet", over a Redis Cluster, driven by `tests/tests/cluster.rs`.
//!
//! ```text
//! cluster_peer stampede URLS PREFIX THREADS AT   THREADS threads call one cold locked key at
//!                                                unix ms AT; URLS joined by `,`; prints `runs=N`
//! ```

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "cluster::hot", lock)]
fn hot_locked(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    format!("hot {n} from {}", std::process::id())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    cache_runtime::Config::new()
        .redis_cluster(arg(2).split(','))
        .prefix(arg(3))
        .install()
        .expect("install");
    match arg(1) {
        "stampede" => {
            let threads: usize = arg(4).parse().expect("THREADS");
            let at: u128 = arg(5).parse().expect("AT");
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(move || {
                        while SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .expect("clock")
                            .as_millis()
                            < at
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        hot_locked(1)
                    })
                })
                .collect();
            for handle in handles {
                assert!(handle.join().expect("caller").starts_with("hot 1"));
            }
            println!("runs={}", RUNS.load(SeqCst));
        }
        other => panic!("unknown mode {other:?}"),
    }
}
