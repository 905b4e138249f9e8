//! `#[cached(batch)]` against a real Redis: each element of `fn f(ids: &[K]) -> HashMap<K, V>`
//! is an entry of its own, the elements missing from the layers are read with one MGET, the
//! body runs once with the ids still missing, and their values go back in one pipeline.
//!
//! Values get into Redis through a one-argument writer function that shares the batch
//! function's cache `name` (and so its Redis entries, since an element's key is the key of
//! a one-argument call): the batch function starts with a cold L1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use cache_runtime::{cached, preload};
use integration_tests::{with_redis, RedisServer};

/// Redis' own counts of the data commands a test cares about.
fn traffic(server: &RedisServer) -> [(&'static str, u64); 3] {
    ["mget", "get", "set"].map(|command| (command, server.calls(command)))
}

static USER_RUNS: AtomicUsize = AtomicUsize::new(0);
static USER_ASKED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[cached(ttl = 60, batch, name = "batch::users")]
fn users(ids: &[u64]) -> HashMap<u64, String> {
    USER_RUNS.fetch_add(1, SeqCst);
    USER_ASKED.lock().unwrap().extend_from_slice(ids);
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

#[cached(ttl = 60, name = "batch::users")]
fn write_user(id: u64) -> String {
    format!("user {id}")
}

#[test]
fn a_hundred_ids_in_redis_cost_one_mget_and_no_body() {
    let (_guard, server) = with_redis("batch-all");
    for id in 0..100 {
        write_user(id);
    }
    assert_eq!(users::key_for(&7), write_user::key(7));
    assert_eq!(
        users::key_for(&7).to_string(),
        write_user::key(7).to_string()
    );
    server.reset_stats();

    let ids: Vec<u64> = (0..100).collect();
    let found = users(&ids);

    assert_eq!(found.len(), 100);
    assert_eq!(found[&42], "user 42");
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 0)]);
    assert_eq!(USER_RUNS.load(SeqCst), 0, "the body never ran");
    assert_eq!(users::stats().l2_hits, 100);
    // Backfilled into L1: the same call again sends nothing.
    assert_eq!(users(&ids), found);
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 0)]);
    assert_eq!(users::stats().l1_hits, 100);
}

static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);
static PROFILE_ASKED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[cached(ttl = 60, batch, name = "batch::profiles")]
fn profiles(ids: &[u64]) -> HashMap<u64, String> {
    PROFILE_RUNS.fetch_add(1, SeqCst);
    PROFILE_ASKED.lock().unwrap().extend_from_slice(ids);
    ids.iter()
        .map(|&id| (id, format!("profile {id}")))
        .collect()
}

#[cached(ttl = 60, name = "batch::profiles")]
fn write_profile(id: u64) -> String {
    format!("profile {id}")
}

#[test]
fn forty_missing_ids_run_the_body_once_with_exactly_those_and_one_pipeline_of_sets() {
    let (_guard, server) = with_redis("batch-forty");
    // 60 ids stored, 40 not.
    let missing: Vec<u64> = (0..100).filter(|id| id % 5 < 2).collect();
    assert_eq!(missing.len(), 40);
    for id in (0..100).filter(|id| !missing.contains(id)) {
        write_profile(id);
    }
    server.reset_stats();

    let ids: Vec<u64> = (0..100).collect();
    let found = profiles(&ids);

    assert_eq!(found.len(), 100);
    assert_eq!(PROFILE_RUNS.load(SeqCst), 1, "one body run");
    let mut asked = PROFILE_ASKED.lock().unwrap().clone();
    asked.sort_unstable();
    assert_eq!(
        asked, missing,
        "the body was asked for exactly the missing ids"
    );
    // One MGET, no GET, and a SET (with its expiry) for each computed element.
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 40)]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(profiles::key_for(&0).to_string())
        .query(&mut server.connection())
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "stored with the ttl, got {ttl}");
    assert_eq!(profiles::stats().misses, 40);
    assert_eq!(profiles::stats().l2_hits, 60);

    // Another process (a cold L1) finds all 100 in Redis now.
    profiles::clear_local();
    server.reset_stats();
    assert_eq!(profiles(&ids), found);
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 0)]);
    assert_eq!(PROFILE_RUNS.load(SeqCst), 1);
}

static PAGE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, batch, name = "batch::pages")]
fn pages(ids: &[u64]) -> HashMap<u64, String> {
    PAGE_RUNS.fetch_add(1, SeqCst);
    ids.iter().map(|&id| (id, format!("page {id}"))).collect()
}

#[cached(ttl = 60, name = "batch::pages")]
fn write_page(id: u64) -> String {
    format!("page {id}")
}

#[test]
fn inside_a_preload_scope_elements_come_from_the_scope_without_another_mget() {
    let (_guard, server) = with_redis("batch-scope");
    for id in 0..20 {
        write_page(id);
    }
    server.reset_stats();
    let ids: Vec<u64> = (0..20).collect();

    let found = preload(pages::keys(&ids), || pages(&ids));

    assert_eq!(found.len(), 20);
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 0)]);
    assert_eq!(pages::stats().scope_hits, 20);
    assert_eq!(PAGE_RUNS.load(SeqCst), 0);
}

static CARD_ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

#[cached(ttl = 60, batch, name = "batch::cards")]
fn cards(ids: &[u64]) -> HashMap<u64, String> {
    CARD_ASKED.lock().unwrap().push(ids.to_vec());
    ids.iter().map(|&id| (id, format!("card {id}"))).collect()
}

#[test]
fn invalidating_one_element_recomputes_only_that_one() {
    let (_guard, server) = with_redis("batch-invalidate");
    cards(&[1, 2, 3]);
    let stored = |id: u64| -> bool {
        redis::cmd("EXISTS")
            .arg(cards::key_for(&id).to_string())
            .query(&mut server.connection())
            .unwrap()
    };
    assert!(stored(2));

    cards::invalidate(&[2]);

    assert!(!stored(2), "removed from Redis");
    assert!(stored(1) && stored(3), "the others stay");
    server.reset_stats();
    assert_eq!(cards(&[1, 2, 3]).len(), 3);
    assert_eq!(*CARD_ASKED.lock().unwrap(), [vec![1, 2, 3], vec![2]]);
    // 1 and 3 from L1; 2 asked of Redis (absent), computed, stored.
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 1)]);
}

static LOCAL_ASKED: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());

#[cached(local, batch)]
fn squares(ns: &[u32]) -> HashMap<u32, u64> {
    LOCAL_ASKED.lock().unwrap().push(ns.to_vec());
    ns.iter()
        .map(|&n| (n, u64::from(n) * u64::from(n)))
        .collect()
}

#[test]
fn a_local_batch_function_keeps_its_elements_in_memory() {
    let (_guard, server) = with_redis("batch-local");

    assert_eq!(squares(&[1, 2, 3])[&3], 9);
    // Duplicates are asked once; 2 and 3 are in L1.
    let found = squares(&[2, 3, 4, 4]);
    assert_eq!(found, HashMap::from([(2, 4), (3, 9), (4, 16)]));
    assert_eq!(*LOCAL_ASKED.lock().unwrap(), [vec![1, 2, 3], vec![4]]);
    assert_eq!(squares::peek(&4), Some(16));
    assert_eq!(squares::stats().l1_hits, 2);
    assert_eq!(traffic(&server), [("mget", 0), ("get", 0), ("set", 0)]);
}

static SHARED_COUNTS: [AtomicUsize; 100] = [const { AtomicUsize::new(0) }; 100];
static SHARED_BODIES: Barrier = Barrier::new(2);

#[cached(ttl = 60, batch, name = "batch::overlapping")]
fn overlapping(ids: &[usize]) -> HashMap<usize, usize> {
    for &id in ids {
        SHARED_COUNTS[id].fetch_add(1, SeqCst);
    }
    // Both calls' bodies run at once: each call joined the flights of all its ids before
    // its body started, so the ids they share are led by one and waited for by the other.
    SHARED_BODIES.wait();
    ids.iter().map(|&id| (id, id * 10)).collect()
}

#[test]
fn overlapping_concurrent_calls_compute_each_id_once() {
    let (_guard, server) = with_redis("batch-overlap");
    let first: Vec<usize> = (0..60).collect();
    let second: Vec<usize> = (30..100).collect();

    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| overlapping(&first));
        let b = s.spawn(|| overlapping(&second));
        (a.join().unwrap(), b.join().unwrap())
    });

    assert_eq!(a.len(), 60);
    assert_eq!(b.len(), 70);
    assert_eq!(a[&45], 450);
    assert_eq!(b[&45], 450);
    let counts: Vec<usize> = SHARED_COUNTS.iter().map(|c| c.load(SeqCst)).collect();
    assert_eq!(counts, vec![1; 100], "each id computed once");
    assert_eq!(server.calls("set"), 100);
}

static ASYNC_ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

#[derive(Debug, PartialEq)]
struct NotFound;

/// Even ids exist; odd ones are left out of the map (and not cached); id 13 fails the call.
#[cached(ttl = 60, batch, name = "batch::accounts")]
async fn accounts(ids: &[u64]) -> Result<HashMap<u64, String>, NotFound> {
    ASYNC_ASKED.lock().unwrap().push(ids.to_vec());
    tokio::task::yield_now().await;
    if ids.contains(&13) {
        return Err(NotFound);
    }
    Ok(ids
        .iter()
        .filter(|&&id| id % 2 == 0)
        .map(|&id| (id, format!("account {id}")))
        .collect())
}

#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_batch_function_caches_the_elements_it_returned() {
    let (_guard, server) = with_redis("batch-async");

    let found = accounts(&[1, 2, 3, 4]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&4], "account 4");
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 2)]);

    // 2 and 4 are cached; 1 and 3, which the body did not return, are asked again.
    let again = accounts(&[1, 2, 3, 4]).await.unwrap();
    assert_eq!(again, found);
    assert_eq!(accounts(&[13, 2]).await, Err(NotFound));
    assert_eq!(accounts::peek(&13).await, None, "an Err caches nothing");
    assert_eq!(
        *ASYNC_ASKED.lock().unwrap(),
        [vec![1, 2, 3, 4], vec![1, 3], vec![13]]
    );
    accounts::invalidate(&[2]).await;
    assert_eq!(accounts::peek(&2).await, None);
}

/// The ids of each body run, and the run number (from 1) of the one just recorded.
fn record(runs: &Mutex<Vec<Vec<u64>>>, ids: &[u64]) -> usize {
    let mut runs = runs.lock().unwrap();
    runs.push(ids.to_vec());
    runs.len()
}

static STALE_ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
static STALE_STARTED: Barrier = Barrier::new(2);
static STALE_RELEASE: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);

/// The second run (the refresh) waits, once started, until the test lets it go (10 s at most,
/// so that a call that waits for it instead of serving the stale value fails the test rather
/// than hang it).
#[cached(ttl = Duration::from_millis(500), stale = 60, batch, name = "batch::stale")]
fn stale_names(ids: &[u64]) -> HashMap<u64, String> {
    let run = record(&STALE_ASKED, ids);
    if run == 2 {
        let release = STALE_RELEASE
            .lock()
            .unwrap()
            .take()
            .expect("a release channel");
        STALE_STARTED.wait();
        let _ = release.recv_timeout(Duration::from_secs(10));
    }
    ids.iter()
        .map(|&id| (id, format!("name {id} v{run}")))
        .collect()
}

#[test]
fn stale_elements_are_served_at_once_while_one_call_refreshes_them_in_one_body_call() {
    let (_guard, server) = with_redis("batch-stale");
    assert_eq!(stale_names(&[1, 2])[&1], "name 1 v1");
    // Past the ttl, inside the stale window.
    thread::sleep(Duration::from_millis(600));
    server.reset_stats();
    let (release, released) = mpsc::channel();
    *STALE_RELEASE.lock().unwrap() = Some(released);

    let (served, refreshed) = thread::scope(|s| {
        let refresher = s.spawn(|| stale_names(&[1, 2, 3]));
        STALE_STARTED.wait();
        // The refresh is running: another call gets the stale values without waiting.
        let served = stale_names(&[1, 2]);
        let _ = release.send(());
        (served, refresher.join().unwrap())
    });

    let stale = |id: u64| (id, format!("name {id} v1"));
    assert_eq!(served, HashMap::from([stale(1), stale(2)]));
    assert_eq!(
        refreshed[&1], "name 1 v2",
        "the refreshing call answers anew"
    );
    assert_eq!(refreshed[&3], "name 3 v2");
    assert_eq!(
        *STALE_ASKED.lock().unwrap(),
        [vec![1, 2], vec![1, 2, 3]],
        "stale and missing ids in one body call, the other call ran none"
    );
    assert_eq!(stale_names(&[1, 2])[&2], "name 2 v2", "refreshed in L1");
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 3)]);
}

static EARLY_ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

/// Δ (2 ms of compute) × β (10⁹) is far longer than the 60 s ttl: every read of an element
/// is picked for early refresh (short of a chance in 30 000).
#[cached(ttl = 60, refresh = early, beta = 1e9, batch, name = "batch::early")]
fn early_rates(ids: &[u64]) -> HashMap<u64, String> {
    let run = record(&EARLY_ASKED, ids);
    thread::sleep(Duration::from_millis(2));
    ids.iter()
        .map(|&id| (id, format!("rate {id} v{run}")))
        .collect()
}

#[test]
fn elements_picked_for_early_refresh_are_recomputed_in_one_body_call() {
    let (_guard, server) = with_redis("batch-early");
    assert_eq!(early_rates(&[1, 2])[&1], "rate 1 v1");

    let again = thread::spawn(|| early_rates(&[1, 2, 3])).join().unwrap();

    assert_eq!(
        again,
        HashMap::from([1, 2, 3].map(|id| (id, format!("rate {id} v2"))))
    );
    assert_eq!(*EARLY_ASKED.lock().unwrap(), [vec![1, 2], vec![1, 2, 3]]);
    assert_eq!(early_rates::peek(&2).as_deref(), Some("rate 2 v2"));
    assert_eq!(server.calls("set"), 5, "the refreshed values are stored");
}

static RATES_FAIL: AtomicBool = AtomicBool::new(false);

#[cached(ttl = Duration::from_millis(500), stale_if_error = 60, batch, name = "batch::rates")]
fn rates(ids: &[u64]) -> Result<HashMap<u64, String>, String> {
    if RATES_FAIL.load(SeqCst) {
        return Err("rates down".into());
    }
    Ok(ids.iter().map(|&id| (id, format!("rate {id}"))).collect())
}

/// A cold process past the ttl, its backend down: each element's last good value comes from
/// Redis (which keeps it for `ttl + stale_if_error`) instead of the error, unless one of the
/// elements has none.
#[test]
fn a_failed_body_is_answered_with_each_elements_last_good_value() {
    let (_guard, server) = with_redis("batch-stale-if-error");
    assert_eq!(rates(&[1, 2]).map(|found| found.len()), Ok(2));
    rates::clear_local();
    thread::sleep(Duration::from_millis(600));
    RATES_FAIL.store(true, SeqCst);

    let last_good = |id: u64| (id, format!("rate {id}"));
    assert_eq!(
        rates(&[1, 2]),
        Ok(HashMap::from([last_good(1), last_good(2)]))
    );
    assert_eq!(rates::stats().stale_served, 2);
    assert_eq!(server.calls("mget"), 2, "read from Redis");
    assert_eq!(
        rates(&[2, 3]),
        Err("rates down".into()),
        "3 has no last good value"
    );
    RATES_FAIL.store(false, SeqCst);
}
