//! `reset_stats()` zeroes every called function's counters, hits counted in other threads'
//! front tables included, and counting goes on from 0; `Stats::since` gives a test its own
//! counts without resetting anyone's.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;

use cache_runtime::{cached, reset_stats, Stats};
use integration_tests::serial;

static RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(local)]
fn counted(n: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    n
}

#[cached(local)]
fn other(n: u64) -> u64 {
    n
}

fn counts(stats: Stats) -> (u64, u64) {
    (stats.misses, stats.l1_hits)
}

#[test]
fn reset_stats_zeroes_every_function_and_counting_goes_on() {
    let _serial = serial();
    // A thread that stays alive holds its front-table hits in a cell of its own.
    let (go, wait) = mpsc::channel::<()>();
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        counted(1);
        counted(1);
        done.send(()).unwrap();
        wait.recv().unwrap();
        counted(1);
        done.send(()).unwrap();
    });
    finished.recv().unwrap();
    counted(1);
    other(5);
    other(5);
    assert_eq!(counts(counted::stats()), (1, 2));
    assert_eq!(counts(other::stats()), (1, 1));

    reset_stats();
    assert_eq!(counted::stats(), Stats::default());
    assert_eq!(other::stats(), Stats::default());

    go.send(()).unwrap();
    finished.recv().unwrap();
    worker.join().unwrap();
    counted(2);
    assert_eq!(counts(counted::stats()), (1, 1), "counted on from 0");
    assert_eq!(RUNS.load(SeqCst), 2, "the cache itself was kept");
}

#[test]
fn since_counts_only_what_came_after_a_snapshot() {
    // The other test's reset_stats() would zero `own` under it.
    let _serial = serial();
    #[cached(local)]
    fn own(n: u64) -> u64 {
        n
    }
    own(1);
    let before = own::stats();
    own(1);
    own(2);
    assert_eq!(counts(own::stats().since(&before)), (1, 1));
}
