//! Invalidation and stats in the in-process layer (no Redis in this binary): `invalidate`
//! reaches L1 and every thread's front table, spares other keys, and the counters add up
//! across threads, finished ones included.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;

use cache_runtime::cached;

fn count(runs: &AtomicUsize) -> usize {
    runs.load(SeqCst)
}

static OWN_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Returns which run of the body produced the value, so a recomputation shows in the value.
#[cached]
fn own_revision(id: u32) -> (u32, usize) {
    (id, OWN_RUNS.fetch_add(1, SeqCst) + 1)
}

#[test]
fn invalidate_makes_this_threads_next_call_recompute() {
    // Repeated calls: the value sits in this thread's front table and in L1.
    for _ in 0..3 {
        assert_eq!(own_revision(1), (1, 1));
    }
    own_revision::invalidate(1);
    assert_eq!(own_revision(1), (1, 2), "the invalidated value was served");
    assert_eq!(own_revision(1), (1, 2), "the new value is cached again");
    assert_eq!(count(&OWN_RUNS), 2);
}

static SHARED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn shared_revision(id: u32) -> (u32, usize) {
    (id, SHARED_RUNS.fetch_add(1, SeqCst) + 1)
}

#[test]
fn invalidate_reaches_another_threads_front_table() {
    let (to_b, b_inbox) = mpsc::channel::<()>();
    let (from_b, b_outbox) = mpsc::channel();
    let b = thread::spawn(move || {
        for _ in 0..3 {
            from_b.send(shared_revision(1)).unwrap();
        }
        b_inbox.recv().unwrap();
        from_b.send(shared_revision(1)).unwrap();
    });
    for _ in 0..3 {
        assert_eq!(b_outbox.recv().unwrap(), (1, 1), "B computes, then hits");
    }
    // This thread's front table holds the value too.
    assert_eq!(shared_revision(1), (1, 1));
    assert_eq!(shared_revision(1), (1, 1));

    shared_revision::invalidate(1);
    to_b.send(()).unwrap();
    assert_eq!(
        b_outbox.recv().unwrap(),
        (1, 2),
        "thread B served the invalidated value from its front table"
    );
    b.join().unwrap();
    assert_eq!(shared_revision(1), (1, 2), "B's recomputed value, from L1");
    assert_eq!(count(&SHARED_RUNS), 2);
}

static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn async_revision(id: u32) -> (u32, usize) {
    (id, ASYNC_RUNS.fetch_add(1, SeqCst) + 1)
}

#[tokio::test]
async fn async_invalidate_makes_the_next_call_recompute() {
    assert_eq!(async_revision(1).await, (1, 1));
    assert_eq!(async_revision(1).await, (1, 1));
    async_revision::invalidate(1).await;
    assert_eq!(async_revision(1).await, (1, 2));
    assert_eq!(async_revision(1).await, (1, 2));
}

static NEIGHBOUR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn neighbour(id: u32) -> (u32, usize) {
    (id, NEIGHBOUR_RUNS.fetch_add(1, SeqCst) + 1)
}

/// Calls `neighbour` for ids `1..=10` on a new thread, twice each (so its front table holds
/// them), and returns the values.
fn neighbours_from_another_thread() -> Vec<(u32, usize)> {
    thread::spawn(|| {
        (1..=10)
            .map(|id| {
                neighbour(id);
                neighbour(id)
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[test]
fn invalidating_one_key_keeps_the_other_keys_without_recomputing() {
    let before: Vec<_> = (1..=10).map(neighbour).collect();
    assert_eq!(neighbours_from_another_thread(), before);
    let (misses, hits) = (neighbour::stats().misses, neighbour::stats().l1_hits);
    assert_eq!(misses, 10);

    neighbour::invalidate(3);
    // Front tables may no longer answer for the other keys, but L1 does: same values and
    // no body run.
    for id in (1..=10).filter(|&id| id != 3) {
        assert_eq!(neighbour(id), before[id as usize - 1]);
    }
    let stats = neighbour::stats();
    assert_eq!(stats.misses, misses, "another key ran its body again");
    assert_eq!(stats.l1_hits, hits + 9);
    assert_ne!(neighbour(3), before[2], "the invalidated key recomputes");
    assert_eq!(neighbour::stats().misses, misses + 1);
}

#[cached]
fn tally(n: u32) -> u32 {
    n
}

/// Calls `tally(1)` `times` times on the current thread.
fn hit_tally(times: usize) {
    for _ in 0..times {
        assert_eq!(tally(1), 1);
    }
}

#[test]
fn l1_hits_count_every_thread_including_finished_ones() {
    tally(1);
    // A thread that hits, then stays alive while the stats are read.
    let (hits_done, on_hits_done) = mpsc::channel();
    let (finish, on_finish) = mpsc::channel::<()>();
    let alive = thread::spawn(move || {
        hit_tally(10);
        hits_done.send(()).unwrap();
        on_finish.recv().unwrap();
    });
    on_hits_done.recv().unwrap();
    assert_eq!(tally::stats().l1_hits, 10, "a live thread's hits");

    let finished: Vec<_> = (0..4).map(|_| thread::spawn(|| hit_tally(5))).collect();
    for thread in finished {
        thread.join().unwrap();
    }
    hit_tally(3);
    assert_eq!(
        tally::stats().l1_hits,
        10 + 20 + 3,
        "finished threads' hits"
    );

    finish.send(()).unwrap();
    alive.join().unwrap();
    let stats = tally::stats();
    assert_eq!(
        stats.l1_hits, 33,
        "the live thread's hits, once it finished"
    );
    assert_eq!(stats.misses, 1);
}

static PARSE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn parse_level(text: String) -> Result<u8, String> {
    PARSE_RUNS.fetch_add(1, SeqCst);
    text.parse().map_err(|_| format!("bad level `{text}`"))
}

#[test]
fn misses_count_every_run_of_the_body() {
    for text in ["3", "3", "x", "x", "4"] {
        let _ = parse_level(text.into());
    }
    thread::spawn(|| parse_level("5".into()))
        .join()
        .unwrap()
        .unwrap();
    let stats = parse_level::stats();
    assert_eq!(
        count(&PARSE_RUNS),
        5,
        "3, x twice (errors are not cached), 4, 5"
    );
    assert_eq!(stats.misses, 5);
    assert_eq!(stats.l1_hits, 1);
}
