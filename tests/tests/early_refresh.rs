//! `refresh = early` across threads: once one thread's refresh has returned the new value, no
//! thread serves the older one from its front table, and the process refreshes once per
//! expiry (a thread picked on its older copy does not refresh the newer entry again).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cache_runtime::cached;

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Δ = 10 ms, β = 1: never picked while more than 37 Δ (370 ms) is left, picked with a chance
/// rising towards 1 in the last few Δ.
#[cached(ttl = 1, refresh = early, local)]
fn version(key: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    let _ = key;
    RUNS.fetch_add(1, SeqCst) + 1
}

#[test]
fn after_a_refresh_no_thread_serves_the_older_value() {
    let first = version(1);
    assert_eq!(first, 1);
    let expires = Instant::now() + Duration::from_secs(1);
    let refreshed = AtomicBool::new(false);
    let older_after_refresh = AtomicU64::new(0);
    let first_new_seen = std::sync::Mutex::new(None::<Instant>);
    let threads = 4;
    let ready = Barrier::new(threads);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Each thread's front table holds the first value.
                assert_eq!(version(1), 1);
                assert_eq!(version(1), 1);
                ready.wait();
                let give_up = expires + Duration::from_millis(300);
                loop {
                    let after_refresh = refreshed.load(SeqCst);
                    let v = version(1);
                    if v == 1 && after_refresh {
                        older_after_refresh.fetch_add(1, SeqCst);
                    }
                    if v >= 2 {
                        refreshed.store(true, SeqCst);
                        first_new_seen
                            .lock()
                            .unwrap()
                            .get_or_insert_with(Instant::now);
                        break;
                    }
                    assert!(Instant::now() < give_up, "no refresh within the TTL");
                }
            });
        }
    });
    let seen = first_new_seen.lock().unwrap().expect("a refresh");
    assert!(
        seen < expires,
        "the refresh came early, before the first value expired"
    );
    assert_eq!(
        older_after_refresh.load(SeqCst),
        0,
        "calls made after a thread got the refreshed value still got the older one"
    );
    assert_eq!(RUNS.load(SeqCst), 2, "one refresh for the expiry");
    assert_eq!(version::stats().misses, 2);
}
