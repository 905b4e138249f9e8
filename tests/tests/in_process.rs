//! The in-process layer (no Redis installed in this binary): TTL, capacity, what is cached,
//! single-flight, recursion, panics, cancellation, invalidation across threads, stats.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cache_runtime::cached;

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(SeqCst)
}

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = Duration::from_millis(300))]
fn short_lived(n: u32) -> u32 {
    TTL_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn an_entry_is_served_until_its_ttl_and_recomputed_after() {
    short_lived(1);
    // The entry was stored before this instant, so its 300 ms are over by `written + 300 ms`.
    let written = Instant::now();
    // Several hits on this thread: the value now sits in this thread's front table too.
    for _ in 0..5 {
        short_lived(1);
    }
    assert!(
        written.elapsed() < Duration::from_millis(250),
        "machine too slow for this test"
    );
    assert_eq!(runs(&TTL_RUNS), 1);
    thread::sleep(Duration::from_millis(300).saturating_sub(written.elapsed()));
    short_lived(1);
    assert_eq!(
        runs(&TTL_RUNS),
        2,
        "a 300 ms entry must be gone after 300 ms"
    );
}

static NO_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn forever(n: u32) -> u32 {
    NO_TTL_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn without_ttl_entries_do_not_expire() {
    forever(1);
    thread::sleep(Duration::from_millis(50));
    forever(1);
    assert_eq!(runs(&NO_TTL_RUNS), 1);
}

static CAPACITY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(capacity = 100)]
fn bounded(n: u32) -> u32 {
    CAPACITY_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn capacity_bounds_the_in_process_layer() {
    for n in 0..5_000 {
        bounded(n);
    }
    let computed = runs(&CAPACITY_RUNS);
    // From a fresh thread (its own empty front table) only L1 answers: at most about
    // `capacity` of the 5 000 keys can still be there.
    thread::spawn(|| {
        for n in 0..5_000 {
            bounded(n);
        }
    })
    .join()
    .unwrap();
    let recomputed = runs(&CAPACITY_RUNS) - computed;
    assert!(
        recomputed >= 4_500,
        "only {recomputed} of 5 000 keys were recomputed"
    );
}

static RESULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn parse(text: String) -> Result<u32, String> {
    RESULT_RUNS.fetch_add(1, SeqCst);
    text.parse().map_err(|_| format!("{text}: not a number"))
}

#[test]
fn only_ok_results_are_cached() {
    assert!(parse("x".into()).is_err());
    assert!(parse("x".into()).is_err());
    assert_eq!(runs(&RESULT_RUNS), 2);
    assert_eq!(parse("7".into()), Ok(7));
    assert_eq!(parse("7".into()), Ok(7));
    assert_eq!(runs(&RESULT_RUNS), 3);
}

static OPTION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn find(id: u32) -> Option<String> {
    OPTION_RUNS.fetch_add(1, SeqCst);
    id.is_multiple_of(2).then(|| format!("item {id}"))
}

#[test]
fn only_some_results_are_cached() {
    assert_eq!(find(1), None);
    assert_eq!(find(1), None);
    assert_eq!(runs(&OPTION_RUNS), 2);
    assert_eq!(find(2).as_deref(), Some("item 2"));
    assert_eq!(find(2).as_deref(), Some("item 2"));
    assert_eq!(runs(&OPTION_RUNS), 3);
}

static FLIGHT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn slow_square(n: u64) -> u64 {
    FLIGHT_RUNS.fetch_add(1, SeqCst);
    thread::sleep(Duration::from_millis(50));
    n * n
}

#[test]
fn sixteen_threads_on_one_cold_key_run_the_body_once() {
    let start = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                slow_square(12)
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 144);
    }
    assert_eq!(runs(&FLIGHT_RUNS), 1);
}

static ASYNC_FLIGHT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
async fn slow_lookup(id: u64) -> String {
    ASYNC_FLIGHT_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!("user {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_one_cold_key_run_the_body_once() {
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                slow_lookup(5).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "user 5");
    }
    assert_eq!(runs(&ASYNC_FLIGHT_RUNS), 1);
}

/// Holds its body until the test opens the gate.
#[cached(ttl = 60, key = key)]
fn gated(key: u32, gate: bool) -> u32 {
    if gate {
        let (lock, cond) = &*GATE_OPEN;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cond.wait(open).unwrap();
        }
    }
    key
}

static GATE_OPEN: std::sync::LazyLock<(std::sync::Mutex<bool>, std::sync::Condvar)> =
    std::sync::LazyLock::new(Default::default);

#[test]
fn a_slow_key_does_not_block_other_keys() {
    let (started, started_rx) = mpsc::channel();
    let slow = thread::spawn(move || {
        started.send(()).unwrap();
        gated(1, true)
    });
    started_rx.recv().unwrap();
    // The first key's body is blocked on the gate; another key completes meanwhile.
    assert_eq!(gated(2, false), 2);
    let (lock, cond) = &*GATE_OPEN;
    *lock.lock().unwrap() = true;
    cond.notify_all();
    assert_eq!(slow.join().unwrap(), 1);
}

static FIB_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(local)]
fn fib(n: u64) -> u128 {
    FIB_RUNS.fetch_add(1, SeqCst);
    if n < 2 {
        n as u128
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn memoized_recursion_finishes_and_computes_each_n_once() {
    assert_eq!(fib(60), 1_548_008_755_920);
    assert_eq!(runs(&FIB_RUNS), 61);
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
    assert_eq!(runs(&FIB_RUNS), 91);
}

static PANIC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn fragile(n: u32) -> u32 {
    if PANIC_RUNS.fetch_add(1, SeqCst) == 0 {
        panic!("first call fails");
    }
    n
}

#[test]
fn a_panicking_body_does_not_poison_the_key() {
    let first = std::panic::catch_unwind(|| fragile(3));
    assert!(first.is_err());
    assert_eq!(fragile(3), 3);
    assert_eq!(fragile(3), 3);
    assert_eq!(runs(&PANIC_RUNS), 2);
}

static LEADER_PANIC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn panics_while_others_wait(n: u32) -> u32 {
    if LEADER_PANIC_RUNS.fetch_add(1, SeqCst) == 0 {
        thread::sleep(Duration::from_millis(100));
        panic!("the leader fails");
    }
    n
}

#[test]
fn waiters_behind_a_panicking_leader_get_a_value() {
    let leader = thread::spawn(|| std::panic::catch_unwind(|| panics_while_others_wait(9)));
    // Let the leader start its body first, then queue behind it.
    while runs(&LEADER_PANIC_RUNS) == 0 {
        thread::yield_now();
    }
    let waiter = thread::spawn(|| panics_while_others_wait(9));
    assert!(leader.join().unwrap().is_err());
    assert_eq!(waiter.join().unwrap(), 9);
    assert_eq!(runs(&LEADER_PANIC_RUNS), 2);
}

static CANCEL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
async fn cancellable(n: u32) -> u32 {
    CANCEL_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_async_leader_does_not_strand_its_waiters() {
    let leader = tokio::spawn(cancellable(4));
    while runs(&CANCEL_RUNS) == 0 {
        tokio::task::yield_now().await;
    }
    let waiter = tokio::spawn(cancellable(4));
    tokio::task::yield_now().await;
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was left stuck")
        .unwrap();
    assert_eq!(value, 4);
    assert!(runs(&CANCEL_RUNS) <= 2);
}

static INVALIDATE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn profile(id: u32) -> String {
    INVALIDATE_RUNS.fetch_add(1, SeqCst);
    format!("profile {id} #{}", runs(&INVALIDATE_RUNS))
}

#[test]
fn invalidate_reaches_every_threads_front_table() {
    let (to_b, b_inbox) = mpsc::channel::<()>();
    let (to_main, main_inbox) = mpsc::channel::<String>();
    let b = thread::spawn(move || {
        // Warm this thread's front table with several hits.
        for _ in 0..3 {
            profile(1);
        }
        to_main.send(profile(1)).unwrap();
        b_inbox.recv().unwrap();
        to_main.send(profile(1)).unwrap();
    });
    let before = main_inbox.recv().unwrap();
    profile(2);
    profile(1); // in this thread's front table too
    let misses = profile::stats().misses;
    profile::invalidate(1);
    to_b.send(()).unwrap();
    let after_in_b = main_inbox.recv().unwrap();
    b.join().unwrap();
    assert_ne!(
        before, after_in_b,
        "thread B still served the invalidated value"
    );
    assert_eq!(profile(1), after_in_b);
    // Another key survives invalidation without recomputing.
    let misses_after = profile::stats().misses;
    profile(2);
    assert_eq!(profile::stats().misses, misses_after);
    assert_eq!(misses_after, misses + 1);
}

#[cached(ttl = 60)]
fn counted(n: u32) -> u32 {
    n
}

#[test]
fn stats_count_hits_from_every_thread_including_finished_ones() {
    counted(1);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                for _ in 0..10 {
                    counted(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = counted::stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.l1_hits, 40);
}
