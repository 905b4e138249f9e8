//! An async `stale` function with owned arguments refreshes in a spawned task: the caller that
//! finds the stale value returns it at once, and the new value replaces it in the background.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 1, stale = 5)]
async fn slow_stale(n: u64) -> usize {
    tokio::time::sleep(Duration::from_millis(300)).await;
    RUNS.fetch_add(1, SeqCst) + n as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_async_value_is_returned_at_once_and_refreshed_in_the_background() {
    assert_eq!(slow_stale(0).await, 0);
    tokio::time::sleep(Duration::from_millis(1050)).await; // expired, inside the stale window
    let started = Instant::now();
    assert_eq!(slow_stale(0).await, 0, "the stale value");
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "the picked caller did not wait for the 300 ms body: {:?}",
        started.elapsed()
    );
    // The refresh runs on its own: observe it finish, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while RUNS.load(SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the background refresh never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refreshed = Instant::now() + Duration::from_secs(1);
    loop {
        let value = slow_stale(0).await;
        if value == 1 {
            break;
        }
        assert!(
            Instant::now() < refreshed,
            "the refreshed value was never served"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(RUNS.load(SeqCst), 2, "exactly one refresh");
}
