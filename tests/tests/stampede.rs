//! Stampede protection beyond the basics of `fleet.rs`: a waiting process takes over from a
//! killed lock owner, an owner past its lease cannot release the next owner's lock, a waiter
//! stops waiting after two leases, the lock fails open, and a stale value is refreshed once per
//! fleet (with `lock`) or once per process (without) while every other caller gets it at once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cache_runtime::cached;
use integration_tests::{serial, with_redis, RedisServer};

/// A `stampede_worker` process, killed if the test ends before it does.
struct Worker {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Worker {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stampede_worker"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stampede_worker");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Worker { child, out }
    }

    /// The next line it prints.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .expect("read the worker's output");
        assert!(!line.is_empty(), "the worker exited without answering");
        line.trim_end().to_owned()
    }

    /// Its last line, `name=N ...`, once it exited successfully.
    fn counts(mut self) -> HashMap<String, usize> {
        let line = self.line();
        assert!(self.child.wait().expect("wait").success());
        line.split(' ')
            .map(|pair| {
                let (name, n) = pair.split_once('=').expect("name=N");
                (name.to_owned(), n.parse().expect("a count"))
            })
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every millisecond for up to 10 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn get(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

#[test]
fn a_waiting_process_finishes_the_job_when_the_lock_owner_is_killed() {
    let _guard = serial();
    let server = RedisServer::start();
    let url = server.url();
    let mut owner = Worker::start(&["owner", &url, "takeover"]);
    let key = owner.line();
    let key = key.strip_prefix("computing ").expect("computing KEY");
    let lock_key = format!("{key}:lock");
    assert!(pttl(&server, &lock_key) > 0, "the owner holds {lock_key}");
    let sets_by_owner = server.calls("set");
    let mut waiter = Worker::start(&["waiter", &url, "takeover"]);
    // The waiter is waiting once Redis refused its own SET NX.
    wait_until("the waiter tries the lock", || {
        server.calls("set") > sets_by_owner
    });
    let lease_left = Duration::from_millis(pttl(&server, &lock_key).try_into().unwrap());
    owner.child.kill().unwrap();
    let killed = Instant::now();
    let value = waiter.line();
    let took = killed.elapsed();
    assert_eq!(
        value,
        format!("finished by process {} for 1", waiter.child.id())
    );
    assert_eq!(waiter.counts()["runs"], 1);
    assert!(
        took + Duration::from_millis(50) >= lease_left,
        "the waiter computed after {took:?}, before the dead owner's lease ran out ({lease_left:?})"
    );
    assert!(
        took < lease_left + Duration::from_millis(500),
        "the waiter took {took:?} to take over a lease with {lease_left:?} left"
    );
    let stored = get(&server, key).expect("the value is in Redis");
    assert!(stored.windows(value.len()).any(|w| w == value.as_bytes()));
    assert_eq!(get(&server, &lock_key), None, "the new owner released it");
}

static FIRST_STARTED: AtomicBool = AtomicBool::new(false);
static SECOND_STARTED: AtomicBool = AtomicBool::new(false);
static GATE: Mutex<()> = Mutex::new(());

#[cached(ttl = 60, name = "stampede::overrun", lock, lock_timeout = Duration::from_millis(300))]
fn overruns_its_lease(n: u64) -> u64 {
    FIRST_STARTED.store(true, SeqCst);
    std::thread::sleep(Duration::from_millis(700));
    n
}

#[cached(ttl = 60, name = "stampede::overrun", lock, lock_timeout = 10)]
fn next_owner(n: u64) -> u64 {
    SECOND_STARTED.store(true, SeqCst);
    drop(GATE.lock());
    n
}

#[test]
fn an_owner_past_its_lease_leaves_the_next_owners_lock_alone() {
    let (_guard, server) = with_redis("overrun");
    let lock_key = format!("{}:lock", next_owner::key(1));
    let gate = GATE.lock().unwrap();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| overruns_its_lease(1));
        wait_until("the first owner computes", || FIRST_STARTED.load(SeqCst));
        let second = scope.spawn(|| next_owner(1));
        wait_until("the second caller takes the expired lock", || {
            SECOND_STARTED.load(SeqCst)
        });
        let token = get(&server, &lock_key).expect("the second owner's lock");
        assert_eq!(first.join().unwrap(), 1);
        assert_eq!(
            get(&server, &lock_key),
            Some(token),
            "the first owner's release deleted a lock it no longer owned"
        );
        drop(gate);
        assert_eq!(second.join().unwrap(), 1);
    });
    assert_eq!(
        get(&server, &lock_key),
        None,
        "the second owner released it"
    );
}

static BEHIND_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, lock, lock_timeout = Duration::from_millis(250))]
fn behind_a_stuck_lock(n: u64) -> u64 {
    BEHIND_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn a_waiter_computes_after_two_leases_when_the_lock_is_never_released() {
    let (_guard, server) = with_redis("stuck");
    let key = behind_a_stuck_lock::key(1).to_string();
    let lock_key = format!("{key}:lock");
    let _: () = redis::cmd("SET")
        .arg(&lock_key)
        .arg("another process")
        .arg("PX")
        .arg(60_000)
        .query(&mut server.connection())
        .unwrap();
    let started = Instant::now();
    assert_eq!(behind_a_stuck_lock(1), 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "waited {took:?} instead of two leases (500 ms)"
    );
    assert_eq!(BEHIND_RUNS.load(SeqCst), 1);
    assert!(get(&server, &key).is_some(), "the value is written");
    assert_eq!(
        get(&server, &lock_key).as_deref(),
        Some(&b"another process"[..]),
        "a lock it never owned is left alone"
    );
}

#[cached(ttl = 60, lock)]
fn locked_without_redis(n: u64) -> u64 {
    n + 1
}

#[test]
fn the_lock_falls_back_to_computing_when_redis_is_down() {
    let (_guard, mut server) = with_redis("down");
    server.kill();
    let started = Instant::now();
    assert_eq!(locked_without_redis(1), 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no lease was waited for: {:?}",
        started.elapsed()
    );
    let stats = locked_without_redis::stats();
    assert_eq!(stats.misses, 1);
    assert!(stats.l2_errors >= 1);
}

/// Per process of a 4 × 16 fleet whose value of a `ttl = 1, stale = 2` function has just
/// expired: how many times it ran the body, how many of its calls waited (more than half the
/// body) and how many got the stale value. `lock` is `lock` or `plain`; `warm` is `warm` (each
/// process read the value before it expired) or `cold`.
fn stale_window(lock: &str, warm: &str) -> Vec<HashMap<String, usize>> {
    let _guard = serial();
    let server = RedisServer::start();
    let url = server.url();
    let mut seed = Worker::start(&["seed", &url, "stale", lock]);
    let stale_value = seed.line();
    let seeded = Instant::now();
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| Worker::start(&["stale", &url, "stale", lock, warm, "16", &stale_value]))
        .collect();
    for worker in &mut workers {
        assert_eq!(worker.line(), "ready");
    }
    assert!(
        seeded.elapsed() < Duration::from_millis(900),
        "the workers were ready only {:?} after the value was written",
        seeded.elapsed()
    );
    // Time is the behaviour here: wait out the 1 s TTL (the stale window lasts 2 s more).
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(seeded.elapsed()));
    let _: () = redis::cmd("SET")
        .arg("stampede:go")
        .arg(1)
        .query(&mut server.connection())
        .unwrap();
    workers.into_iter().map(Worker::counts).collect()
}

fn total(per_process: &[HashMap<String, usize>], count: &str) -> usize {
    per_process.iter().map(|counts| counts[count]).sum()
}

#[test]
fn with_lock_a_stale_value_is_refreshed_once_across_the_fleet_and_served_meanwhile() {
    let per_process = stale_window("lock", "warm");
    assert_eq!(total(&per_process, "runs"), 1, "{per_process:?}");
    assert!(total(&per_process, "slow") <= 1, "{per_process:?}");
    assert!(total(&per_process, "stale") >= 63, "{per_process:?}");
}

#[test]
fn with_lock_cold_processes_serve_the_stale_value_they_find_in_redis_while_another_refreshes() {
    let per_process = stale_window("lock", "cold");
    assert_eq!(total(&per_process, "runs"), 1, "{per_process:?}");
    // In the refreshing process, the callers that came before its first read of Redis wait
    // for that refresh (nothing was known there yet); the other processes never wait.
    for counts in per_process.iter().filter(|counts| counts["runs"] == 0) {
        assert_eq!(counts["slow"], 0, "{per_process:?}");
        assert_eq!(counts["stale"], 16, "{per_process:?}");
    }
}

#[test]
fn without_lock_a_stale_value_is_refreshed_once_per_process() {
    let per_process = stale_window("plain", "warm");
    for counts in &per_process {
        assert_eq!(counts["runs"], 1, "{per_process:?}");
        assert!(counts["slow"] <= 1, "{per_process:?}");
        assert!(counts["stale"] >= 15, "{per_process:?}");
    }
}
