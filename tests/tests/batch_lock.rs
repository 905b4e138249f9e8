//! `#[cached(batch, lock)]` against a real Redis: each element missing from the layers takes
//! the fleet lock of its key (`{key}:lock`, as a one-key call does). An element whose lock
//! another process holds is not computed here: the call computes the others, releases their
//! locks, then waits for the owner's value in Redis; after two leases it computes it anyway.
//! The other process is played by the test, which takes a lock with `SET .. NX PX` and
//! writes the value through a one-argument function sharing the batch function's name.

use std::collections::HashMap;
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use cache_runtime::cached;
use integration_tests::{with_redis, RedisServer};

/// Takes `key`'s lock as another process would, for `lease_ms`.
fn lock_elsewhere(server: &RedisServer, key: impl std::fmt::Display, lease_ms: u64) -> String {
    let lock = format!("{key}:lock");
    let taken: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg("another-process")
        .arg("NX")
        .arg("PX")
        .arg(lease_ms)
        .query(&mut server.connection())
        .unwrap();
    assert!(taken.is_some(), "the lock was free");
    lock
}

fn holder(server: &RedisServer, lock: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(lock)
        .query(&mut server.connection())
        .unwrap()
}

static ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
static RAN: Mutex<Option<mpsc::Sender<()>>> = Mutex::new(None);

#[cached(ttl = 60, batch, lock, lock_timeout = 10, name = "batch_lock::users")]
fn users(ids: &[u64]) -> HashMap<u64, String> {
    ASKED.lock().unwrap().push(ids.to_vec());
    if let Some(ran) = RAN.lock().unwrap().as_ref() {
        let _ = ran.send(());
    }
    ids.iter()
        .map(|&id| (id, format!("user {id} computed here")))
        .collect()
}

#[cached(ttl = 60, name = "batch_lock::users")]
fn write_user(id: u64) -> String {
    format!("user {id} from its owner")
}

#[test]
fn an_element_locked_elsewhere_is_read_from_its_owner_and_the_rest_computed_here() {
    let (_guard, server) = with_redis("batch-lock");
    let other = lock_elsewhere(&server, users::key_for(&2), 10_000);
    let (ran, body_ran) = mpsc::channel();
    *RAN.lock().unwrap() = Some(ran);

    let call = thread::spawn(|| users(&[1, 2, 3]));
    body_ran
        .recv_timeout(Duration::from_secs(10))
        .expect("the body ran for the free elements");
    // The owner stores its value (and keeps its lock: the waiting call reads the value).
    write_user(2);
    let found = call.join().unwrap();

    assert_eq!(found[&2], "user 2 from its owner");
    assert_eq!(found[&1], "user 1 computed here");
    assert_eq!(found[&3], "user 3 computed here");
    assert_eq!(
        *ASKED.lock().unwrap(),
        [vec![1, 3]],
        "2 was not computed here"
    );
    assert_eq!(
        holder(&server, &other).as_deref(),
        Some("another-process"),
        "the owner's lock is left alone"
    );
    for id in [1, 3] {
        let lock = format!("{}:lock", users::key_for(&id));
        assert_eq!(holder(&server, &lock), None, "{lock} released");
    }
}

static SLOW_ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

#[cached(
    ttl = 60,
    batch,
    lock,
    lock_timeout = Duration::from_millis(500),
    name = "batch_lock::slow"
)]
fn slow(ids: &[u64]) -> HashMap<u64, String> {
    SLOW_ASKED.lock().unwrap().push(ids.to_vec());
    ids.iter().map(|&id| (id, format!("slow {id}"))).collect()
}

/// The owner of 2's lock never writes (it hung; its lease is longer than ours): after two of
/// this function's leases the call computes 2 itself, in a second body call.
#[test]
fn an_owner_that_takes_two_leases_is_given_up_on() {
    let (_guard, server) = with_redis("batch-lock-slow");
    lock_elsewhere(&server, slow::key_for(&2), 60_000);

    let found = slow(&[1, 2]);

    assert_eq!(found[&2], "slow 2");
    assert_eq!(*SLOW_ASKED.lock().unwrap(), [vec![1], vec![2]]);
}

static STALE_RUNS: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

#[cached(
    ttl = Duration::from_millis(500),
    stale = 60,
    batch,
    lock,
    lock_timeout = 1,
    name = "batch_lock::stale"
)]
fn stale_cards(ids: &[u64]) -> HashMap<u64, String> {
    let mut runs = STALE_RUNS.lock().unwrap();
    runs.push(ids.to_vec());
    let run = runs.len();
    ids.iter()
        .map(|&id| (id, format!("card {id} v{run}")))
        .collect()
}

/// Another process refreshes a stale element (it holds its lock): this call serves the stale
/// value at once instead of waiting, and refreshes only the element it could lock.
#[test]
fn a_stale_element_locked_elsewhere_is_served_stale() {
    let (_guard, server) = with_redis("batch-lock-stale");
    stale_cards(&[1, 2]);
    thread::sleep(Duration::from_millis(600));
    lock_elsewhere(&server, stale_cards::key_for(&1), 60_000);

    let found = thread::spawn(|| stale_cards(&[1, 2])).join().unwrap();

    assert_eq!(
        found[&1], "card 1 v1",
        "stale, while its owner refreshes it"
    );
    assert_eq!(found[&2], "card 2 v2", "refreshed here");
    assert_eq!(*STALE_RUNS.lock().unwrap(), [vec![1, 2], vec![2]]);
}

static ASYNC_ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

#[cached(
    ttl = 60,
    batch,
    lock,
    lock_timeout = Duration::from_millis(500),
    name = "batch_lock::async"
)]
async fn slow_async(ids: &[u64]) -> HashMap<u64, String> {
    ASYNC_ASKED.lock().unwrap().push(ids.to_vec());
    tokio::task::yield_now().await;
    ids.iter().map(|&id| (id, format!("async {id}"))).collect()
}

/// The async form waits for a lock owner too, and gives up on it after two leases; the element
/// it locked itself is released.
#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_batch_gives_up_on_a_lock_owner_after_two_leases() {
    let (_guard, server) = with_redis("batch-lock-async");
    lock_elsewhere(&server, slow_async::key_for(&2), 60_000);

    let found = slow_async(&[1, 2]).await;

    assert_eq!(found[&1], "async 1");
    assert_eq!(found[&2], "async 2");
    assert_eq!(*ASYNC_ASKED.lock().unwrap(), [vec![1], vec![2]]);
    let lock = format!("{}:lock", slow_async::key_for(&1));
    assert_eq!(holder(&server, &lock), None, "released");
}
