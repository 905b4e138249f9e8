//! Single flight in the in-process layer (no Redis in this binary): concurrent callers of a
//! cold key share one run of the body, other keys never wait for it, recursion does not
//! deadlock, and a leader that panics or is cancelled leaves neither a poisoned key nor a
//! stranded waiter.

use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use cache_runtime::cached;

fn count(runs: &AtomicUsize) -> usize {
    runs.load(SeqCst)
}

/// Longest a step that must not block may take before the test calls it blocked.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `work` on its own thread and returns its result, failing if it takes longer than
/// [`PATIENCE`] (so a deadlock fails the test instead of hanging it).
fn finishes<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::spawn(move || done.send(work()));
    result
        .recv_timeout(PATIENCE)
        .expect("blocked: did not finish")
}

/// Lets a test see that a body has started, and choose when it goes on.
struct Hold {
    started: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl Hold {
    /// The hold, the receiver that hears the body start, and the sender that releases it.
    fn new() -> (Hold, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (started, on_start) = mpsc::channel();
        let (release, on_release) = mpsc::channel();
        let hold = Hold {
            started,
            release: on_release,
        };
        (hold, on_start, release)
    }

    /// Called by a body: announces it runs, then waits to be released.
    fn pause(&self) {
        self.started.send(()).unwrap();
        self.release.recv().unwrap();
    }
}

/// Polls `future` once (with the task's waker), as a caller that then goes on waiting would.
async fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    let mut future = Some(future);
    poll_fn(|cx| Poll::Ready(future.take().unwrap().poll(cx))).await
}

static SQUARE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn slow_square(n: u64) -> u64 {
    SQUARE_RUNS.fetch_add(1, SeqCst);
    thread::sleep(Duration::from_millis(50));
    n * n
}

#[test]
fn sixteen_threads_on_a_cold_key_share_one_run_of_the_body() {
    let start = Arc::new(Barrier::new(16));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                slow_square(12)
            })
        })
        .collect();
    let values: Vec<u64> = finishes(|| callers.into_iter().map(|c| c.join().unwrap()).collect());
    assert_eq!(values, vec![144; 16]);
    assert_eq!(count(&SQUARE_RUNS), 1);
    let stats = slow_square::stats();
    assert_eq!((stats.misses, stats.l1_hits), (1, 15));
}

static LOOKUP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn slow_lookup(id: u64) -> String {
    LOOKUP_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!("user {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_a_cold_key_share_one_run_of_the_body() {
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                slow_lookup(5).await
            })
        })
        .collect();
    for caller in callers {
        let value = tokio::time::timeout(PATIENCE, caller).await;
        assert_eq!(value.expect("a caller was left waiting").unwrap(), "user 5");
    }
    assert_eq!(count(&LOOKUP_RUNS), 1);
    let stats = slow_lookup::stats();
    assert_eq!((stats.misses, stats.l1_hits), (1, 15));
}

#[cached(key = id)]
fn held(id: u32, hold: Option<&Hold>) -> u32 {
    if let Some(hold) = hold {
        hold.pause();
    }
    id * 2
}

#[test]
fn a_key_being_computed_does_not_block_other_keys() {
    let (hold, on_start, release) = Hold::new();
    let slow = thread::spawn(move || held(1, Some(&hold)));
    on_start.recv().unwrap();
    // Key 1's body is running (and held): key 2 of the same function still completes.
    assert_eq!(finishes(|| held(2, None)), 4);
    release.send(()).unwrap();
    assert_eq!(slow.join().unwrap(), 2);
}

static FIB_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fib(n: u64) -> u128 {
    FIB_RUNS.fetch_add(1, SeqCst);
    match n {
        0 | 1 => n.into(),
        _ => fib(n - 1) + fib(n - 2),
    }
}

#[test]
fn memoized_recursion_completes_and_runs_the_body_once_per_argument() {
    assert_eq!(finishes(|| fib(60)), 1_548_008_755_920);
    assert_eq!(count(&FIB_RUNS), 61, "fib(0..=60), once each");
    assert_eq!(finishes(|| fib(90)), 2_880_067_194_370_816_120);
    assert_eq!(count(&FIB_RUNS), 91, "fib(61..=90) added, once each");
}

static FRAGILE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fragile(n: u32) -> u32 {
    if FRAGILE_RUNS.fetch_add(1, SeqCst) == 0 {
        panic!("the first run fails");
    }
    n
}

#[test]
fn a_body_that_panicked_does_not_poison_its_key() {
    assert!(catch_unwind(|| fragile(3)).is_err());
    assert_eq!(finishes(|| fragile(3)), 3, "the second call computes");
    assert_eq!(fragile(3), 3);
    assert_eq!(count(&FRAGILE_RUNS), 2, "the third call is a hit");
}

static BRITTLE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Panics when given a hold (after being released).
#[cached(key = n)]
fn brittle(n: u32, hold: Option<&Hold>) -> u32 {
    BRITTLE_RUNS.fetch_add(1, SeqCst);
    if let Some(hold) = hold {
        hold.pause();
        panic!("the leader fails");
    }
    n
}

#[test]
fn waiters_behind_a_leader_that_panics_get_a_value() {
    let (hold, on_start, release) = Hold::new();
    let leader = thread::spawn(move || catch_unwind(AssertUnwindSafe(|| brittle(9, Some(&hold)))));
    on_start.recv().unwrap();
    let (answer, answers) = mpsc::channel();
    for _ in 0..4 {
        let answer = answer.clone();
        thread::spawn(move || answer.send(brittle(9, None)));
    }
    // While the leader runs, the other callers wait for it rather than compute. Waiting is
    // not observable from outside, so this pause also gives them time to queue behind it.
    assert!(
        answers.recv_timeout(Duration::from_millis(200)).is_err(),
        "a caller computed the key while its leader was running"
    );
    release.send(()).unwrap();
    assert!(leader.join().unwrap().is_err(), "the leader panicked");
    for _ in 0..4 {
        assert_eq!(answers.recv_timeout(PATIENCE), Ok(9));
    }
    assert_eq!(
        count(&BRITTLE_RUNS),
        2,
        "after the panic, one waiter computed for all"
    );
}

static ABANDONED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Its first run never finishes: that caller can only give up.
#[cached]
async fn abandoned(n: u32) -> u32 {
    if ABANDONED_RUNS.fetch_add(1, SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_completes_when_the_leading_task_is_aborted() {
    let mut leader = Box::pin(abandoned(4));
    assert!(poll_once(leader.as_mut()).await.is_pending());
    assert_eq!(count(&ABANDONED_RUNS), 1, "the leader is inside its body");
    let leader = tokio::spawn(leader);

    let mut waiter = Box::pin(abandoned(4));
    assert!(poll_once(waiter.as_mut()).await.is_pending());
    assert_eq!(count(&ABANDONED_RUNS), 1, "the second caller waits");
    let waiter = tokio::spawn(waiter);

    // The leading task is cancelled in the middle of the body.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());

    let value = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("the waiting task was stranded by the aborted leader");
    assert_eq!(value.unwrap(), 4);
    assert_eq!(
        count(&ABANDONED_RUNS),
        2,
        "the waiter computed in its place"
    );
}
