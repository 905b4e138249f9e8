//! Lifetimes in the in-process layer (no Redis in this binary): a TTL is exact whether the hit
//! comes from this thread's front table or from L1, an integer TTL counts seconds, no TTL means
//! no expiry, `capacity` bounds what is kept, and only `Ok` / `Some` results are kept at all.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use cache_runtime::cached;

fn count(runs: &AtomicUsize) -> usize {
    runs.load(SeqCst)
}

fn sleep_until(moment: Instant) {
    thread::sleep(moment.saturating_duration_since(Instant::now()));
}

/// Calls `call` on a new thread, whose front table is empty: any hit comes from L1.
fn on_fresh_thread<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    thread::spawn(call).join().unwrap()
}

/// Proves that the entry left by `call` (one call of a cached function, whose body `runs`
/// counts) is served three quarters into `ttl` and recomputed once `ttl` has passed.
fn assert_expires_exactly_after(ttl: Duration, runs: &AtomicUsize, call: impl Fn()) {
    // The entry is stored between these two instants, so its deadline lies in
    // `[before + ttl, stored + ttl]`.
    let before = Instant::now();
    call();
    let stored = Instant::now();
    assert_eq!(count(runs), 1, "the first call computes");

    sleep_until(before + ttl * 3 / 4);
    for _ in 0..3 {
        call();
    }
    assert!(
        before.elapsed() < ttl,
        "the machine is too slow to check hits within a {ttl:?} ttl"
    );
    assert_eq!(count(runs), 1, "the entry was dropped before its ttl");

    sleep_until(stored + ttl);
    call();
    assert_eq!(count(runs), 2, "the entry was served after its ttl");
}

static FRONT_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = Duration::from_millis(300))]
fn quote_of_the_moment(n: u32) -> u32 {
    FRONT_TTL_RUNS.fetch_add(1, SeqCst);
    n * 10
}

#[test]
fn a_duration_ttl_holds_in_this_threads_front_table() {
    // Every call is on this thread, so from the first hit on the front table answers.
    assert_expires_exactly_after(Duration::from_millis(300), &FRONT_TTL_RUNS, || {
        assert_eq!(quote_of_the_moment(4), 40);
    });
}

static L1_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = Duration::from_millis(300))]
fn weather(n: u32) -> u32 {
    L1_TTL_RUNS.fetch_add(1, SeqCst);
    n + 1
}

#[test]
fn a_duration_ttl_holds_in_l1() {
    assert_expires_exactly_after(Duration::from_millis(300), &L1_TTL_RUNS, || {
        assert_eq!(on_fresh_thread(|| weather(7)), 8);
    });
}

static SECONDS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 1)]
fn greeting(name: &str) -> String {
    SECONDS_RUNS.fetch_add(1, SeqCst);
    format!("hello {name}")
}

#[test]
fn an_integer_ttl_counts_seconds() {
    assert_expires_exactly_after(Duration::from_secs(1), &SECONDS_RUNS, || {
        assert_eq!(greeting("ada"), "hello ada");
    });
}

static UNTIMED_RUNS: AtomicUsize = AtomicUsize::new(0);
static TIMED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn untimed(n: u32) -> u32 {
    UNTIMED_RUNS.fetch_add(1, SeqCst);
    n
}

#[cached(ttl = Duration::from_millis(100))]
fn timed(n: u32) -> u32 {
    TIMED_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn without_a_ttl_entries_outlive_one_that_expired() {
    untimed(1);
    timed(1);
    let stored = Instant::now();
    sleep_until(stored + Duration::from_millis(150));
    untimed(1);
    timed(1);
    on_fresh_thread(|| untimed(1));
    assert_eq!(count(&TIMED_RUNS), 2, "the 100 ms entry expired meanwhile");
    assert_eq!(
        count(&UNTIMED_RUNS),
        1,
        "an entry without ttl expired, in the front table or in L1"
    );
}

static BOUNDED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(capacity = 100)]
fn bounded(n: u32) -> u32 {
    BOUNDED_RUNS.fetch_add(1, SeqCst);
    n
}

const KEYS: u32 = 5_000;

/// How many of the keys `0..keys` of `bounded` a pass over them has to recompute.
fn recomputed_in_a_pass(keys: u32) -> usize {
    let before = count(&BOUNDED_RUNS);
    for n in 0..keys {
        assert_eq!(bounded(n), n);
    }
    count(&BOUNDED_RUNS) - before
}

#[test]
fn capacity_bounds_l1_and_the_front_table() {
    // Fewer keys than the capacity all stay in L1 (a new thread sees only L1).
    assert_eq!(recomputed_in_a_pass(50), 50);
    assert_eq!(on_fresh_thread(|| recomputed_in_a_pass(50)), 0);

    assert_eq!(recomputed_in_a_pass(KEYS), KEYS as usize - 50);
    // L1 keeps about 100 of them (moka may briefly hold a few more until its housekeeping).
    let from_l1 = KEYS as usize - on_fresh_thread(|| recomputed_in_a_pass(KEYS));
    assert!(
        from_l1 <= 200,
        "L1 of capacity 100 still served {from_l1} of {KEYS} keys"
    );
    // This thread also has its front table, bounded by twice the capacity (256 slots).
    let from_front_or_l1 = KEYS as usize - recomputed_in_a_pass(KEYS);
    assert!(
        from_front_or_l1 <= 256 + 200,
        "front table and L1 of capacity 100 still served {from_front_or_l1} of {KEYS} keys"
    );
}

static RESULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn parse_port(text: String) -> Result<u16, String> {
    RESULT_RUNS.fetch_add(1, SeqCst);
    text.parse().map_err(|_| format!("`{text}` is not a port"))
}

#[test]
fn an_err_is_not_cached_and_an_ok_is() {
    for _ in 0..2 {
        assert_eq!(
            parse_port("http".into()),
            Err("`http` is not a port".into())
        );
    }
    assert_eq!(count(&RESULT_RUNS), 2, "each Err ran the body");
    for _ in 0..2 {
        assert_eq!(parse_port("8080".into()), Ok(8080));
    }
    assert_eq!(count(&RESULT_RUNS), 3, "the Ok was cached");
}

static OPTION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn even_half(n: u32) -> Option<u32> {
    OPTION_RUNS.fetch_add(1, SeqCst);
    n.is_multiple_of(2).then_some(n / 2)
}

#[test]
fn none_is_not_cached_and_some_is() {
    for _ in 0..2 {
        assert_eq!(even_half(3), None);
    }
    assert_eq!(count(&OPTION_RUNS), 2, "each None ran the body");
    for _ in 0..2 {
        assert_eq!(even_half(8), Some(4));
    }
    assert_eq!(count(&OPTION_RUNS), 3, "the Some was cached");
}
