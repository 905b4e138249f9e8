//! Stampede protection across processes: the fleet-wide lock, a killed lock owner, jitter,
//! early refresh and stale-while-revalidate.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::{cached, Config};
use integration_tests::{serial, with_redis, RedisServer};

fn peer(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleet_peer"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Runs 4 peer processes × 16 threads on one cold key, all starting at the same instant, and
/// returns how many times each process ran the body.
fn stampede(server: &RedisServer, mode: &str) -> Vec<usize> {
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1500;
    let url = server.url();
    let children: Vec<Child> = (0..4)
        .map(|_| {
            peer(&["stampede", &url, "fleet", mode, "16", &start_at.to_string()])
                .spawn()
                .expect("start a peer")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            let text = String::from_utf8(output.stdout).unwrap();
            text.trim()
                .strip_prefix("runs=")
                .expect("runs=N")
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn with_lock_the_body_runs_once_across_four_processes() {
    let _guard = serial();
    let server = RedisServer::start();
    let runs = stampede(&server, "lock");
    assert_eq!(
        runs.iter().sum::<usize>(),
        1,
        "body runs per process: {runs:?}"
    );
}

#[test]
fn without_lock_the_body_runs_at_most_once_per_process() {
    let _guard = serial();
    let server = RedisServer::start();
    let runs = stampede(&server, "plain");
    assert!(
        runs.iter().all(|&r| r <= 1),
        "body runs per process: {runs:?}"
    );
    assert!(runs.iter().sum::<usize>() >= 1);
}

#[cached(ttl = 60, name = "fleet::slow_locked", lock, lock_timeout = 1)]
fn slow_locked(n: u64) -> String {
    format!("finished by the survivor {n}")
}

#[test]
fn when_the_lock_owner_dies_another_process_finishes_the_job() {
    let _guard = serial();
    let server = RedisServer::start();
    let mut owner = peer(&["owner", &server.url(), "fleet"]).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(owner.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "computing",
        "the owner took the lock and started"
    );
    Config::new()
        .redis(server.url())
        .prefix("fleet")
        .install()
        .unwrap();
    let lock_key = format!("{}:lock", slow_locked::key(1));
    let held: bool = redis::cmd("EXISTS")
        .arg(&lock_key)
        .query(&mut server.connection())
        .unwrap();
    assert!(held, "the owner holds {lock_key}");
    owner.kill().unwrap();
    owner.wait().unwrap();
    Config::new()
        .redis(server.url())
        .prefix("fleet")
        .install()
        .unwrap();
    let started = Instant::now();
    assert_eq!(slow_locked(1), "finished by the survivor 1");
    // It waited for the dead owner's lease (1 s) to run out, not for two leases.
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow_locked::stats().misses, 1);
    let stored: bool = redis::cmd("EXISTS")
        .arg(slow_locked::key(1).to_string())
        .query(&mut server.connection())
        .unwrap();
    assert!(stored);
}

#[cached(ttl = 100, jitter = 0.1)]
fn jittered(n: u64) -> u64 {
    n
}

#[test]
fn jitter_spreads_the_written_lifetimes() {
    let (_guard, server) = with_redis("jitter");
    let ttls: Vec<i64> = (0..200)
        .map(|n| {
            jittered(n);
            redis::cmd("PTTL")
                .arg(jittered::key(n).to_string())
                .query(&mut server.connection())
                .unwrap()
        })
        .collect();
    let (min, max) = (*ttls.iter().min().unwrap(), *ttls.iter().max().unwrap());
    assert!(
        min >= 89_000 && max <= 110_000,
        "PTTLs within ±10 %: {min}..{max}"
    );
    assert!(max - min > 10_000, "PTTLs spread: {min}..{max}");
}

static EARLY_RUNS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

#[cached(ttl = 1, refresh = early)]
fn hot_early(n: u64) -> u64 {
    EARLY_RUNS.lock().unwrap().push(Instant::now());
    std::thread::sleep(Duration::from_millis(30));
    n
}

#[test]
fn early_refresh_keeps_a_hot_key_from_ever_expiring() {
    let (_guard, _server) = with_redis("early");
    let stop = Instant::now() + Duration::from_millis(4500);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while Instant::now() < stop {
                    assert_eq!(hot_early(1), 1);
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });
    let runs = EARLY_RUNS.lock().unwrap().clone();
    // A refresh before every expiry: consecutive body starts are less than a TTL apart (the
    // first run's value expires 1 s after it was stored, i.e. after its 30 ms body).
    let gaps: Vec<Duration> = runs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&gap| gap < Duration::from_millis(1030)),
        "a refresh came after expiry: {gaps:?}"
    );
    // ...about one per TTL, not one per caller.
    assert!(
        (4..=12).contains(&runs.len()),
        "{} body runs in 4.5 s",
        runs.len()
    );
    assert_eq!(hot_early::stats().misses as usize, runs.len());
}

static STALE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 1, stale = 2)]
fn stale_ok(n: u64) -> usize {
    std::thread::sleep(Duration::from_millis(200));
    STALE_RUNS.fetch_add(1, SeqCst) + n as usize
}

#[test]
fn stale_values_are_served_at_once_while_one_caller_refreshes() {
    let (_guard, _server) = with_redis("stale");
    assert_eq!(stale_ok(0), 0);
    std::thread::sleep(Duration::from_millis(1100)); // expired, inside the stale window
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let values = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (latencies, values) = (latencies.clone(), values.clone());
            scope.spawn(move || {
                let started = Instant::now();
                let value = stale_ok(0);
                latencies.lock().unwrap().push(started.elapsed());
                values.lock().unwrap().push(value);
            });
        }
    });
    assert_eq!(STALE_RUNS.load(SeqCst), 2, "exactly one refresh");
    let slow = latencies
        .lock()
        .unwrap()
        .iter()
        .filter(|&&l| l >= Duration::from_millis(150))
        .count();
    assert!(
        slow <= 1,
        "only the refreshing caller waits for the body ({slow} waited)"
    );
    let stale_served = values.lock().unwrap().iter().filter(|&&v| v == 0).count();
    assert!(stale_served >= 7, "the others got the stale value at once");
    assert_eq!(stale_ok(0), 1, "the refreshed value is served afterwards");
    std::thread::sleep(Duration::from_millis(3100)); // past ttl + stale: a plain miss
    assert_eq!(stale_ok(0), 2);
}
