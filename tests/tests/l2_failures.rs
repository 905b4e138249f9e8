//! Redis is an optimisation, never a dependency: unreachable, killed or hanging, calls still
//! return computed values (counted in `l2_errors`); the circuit breaker spares calls the
//! timeout; a restarted server is used again without re-installing the config.
//!
//! Each scenario runs for a sync function (no runtime) and an async one (multi-thread runtime).

use std::net::TcpListener;
use std::process::Command;
use std::sync::{Barrier, MutexGuard};
use std::time::{Duration, Instant};

use cache_runtime::{cached, Config, Key, Stats};
use integration_tests::{serial, RedisServer};

const TIMEOUT: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_millis(200);
const FAILURES: u32 = 3;

fn install(url: &str) {
    install_with_timeout(url, TIMEOUT);
}

fn install_with_timeout(url: &str, timeout: Duration) {
    Config::new()
        .redis(url)
        .prefix("failures")
        .timeout(timeout)
        .circuit_breaker(FAILURES, COOLDOWN)
        .install()
        .expect("install");
}

/// The serial-test guard and a server, with the short timeout and breaker installed.
fn with_short_breaker() -> (MutexGuard<'static, ()>, RedisServer) {
    let guard = serial();
    let server = RedisServer::start();
    install(&server.url());
    (guard, server)
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn exists(conn: &mut redis::Connection, key: &Key) -> bool {
    redis::cmd("EXISTS")
        .arg(key.to_string())
        .query(conn)
        .expect("EXISTS")
}

/// A `#[cached]` function under test, seen the same way whether it is sync or async.
struct Subject<'a> {
    call: &'a dyn Fn(u64) -> String,
    who: &'static str,
    stats: fn() -> Stats,
    key: fn(u64) -> Key,
}

impl Subject<'_> {
    /// Calls with argument `n` and checks the body's value came back.
    fn check(&self, n: u64) {
        assert_eq!((self.call)(n), format!("{} computed {n}", self.who));
    }

    fn errors(&self) -> u64 {
        (self.stats)().l2_errors
    }
}

/// The [`Subject`] of a sync function, or of an async one called through `rt.block_on`.
macro_rules! subject {
    ($f:ident) => {
        Subject {
            call: &$f,
            who: stringify!($f),
            stats: $f::stats,
            key: $f::key,
        }
    };
    ($f:ident, on $rt:expr) => {
        Subject {
            call: &|n| $rt.block_on($f(n)),
            who: stringify!($f),
            stats: $f::stats,
            key: $f::key,
        }
    };
}

/// Stops the server process (SIGSTOP) until dropped: the kernel still accepts connections, but
/// nothing ever answers, so every request waits for the timeout.
struct Frozen(String);

impl Frozen {
    fn new(server: &RedisServer) -> Self {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut server.connection())
            .expect("INFO server");
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .expect("process_id in INFO server")
            .trim()
            .to_owned();
        assert!(signal("-STOP", &pid), "could not stop redis-server {pid}");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // No panic here (this may run while unwinding); the harness kills the server anyway.
        signal("-CONT", &self.0);
    }
}

/// Sends a signal to a process this test started (through the harness); `true` on success.
fn signal(which: &str, pid: &str) -> bool {
    let status = Command::new("kill").args([which, pid]).status();
    status.is_ok_and(|s| s.success())
}

// ---- the scenarios ---------------------------------------------------------------------------

/// Nothing listens at the configured address: every call computes, and counts the failure.
fn check_unreachable(f: &Subject) {
    for n in 0..10 {
        f.check(n);
    }
    let stats = (f.stats)();
    assert_eq!(stats.misses, 10);
    assert_eq!(stats.l2_hits, 0);
    assert!(stats.l2_errors > 0, "no failure counted: {stats:?}");
}

/// Works, then the server dies (calls compute and count errors), then it comes back on the
/// same port and a new miss is written to it, with no re-install.
fn check_kill_and_restart(server: &mut RedisServer, f: &Subject) {
    f.check(0);
    assert!(exists(&mut server.connection(), &(f.key)(0)));
    server.kill();
    let errors = f.errors();
    for n in 1..=10 {
        f.check(n);
    }
    assert!(f.errors() > errors, "no failure counted after the kill");
    server.restart();
    time_to_first_write(server, f, 100);
}

/// Calls with fresh keys from `first` on until one is written to `server` (the breaker lets a
/// request through after its cool-down); returns how long that took.
fn time_to_first_write(server: &RedisServer, f: &Subject, first: u64) -> Duration {
    let mut conn = server.connection();
    let started = Instant::now();
    for n in first.. {
        f.check(n);
        if exists(&mut conn, &(f.key)(n)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "nothing written to the restarted server within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.calls("set") >= 1);
    started.elapsed()
}

/// A server that never answers: the first calls wait for the timeout until the breaker opens;
/// after that, calls do not wait.
fn check_open_breaker_skips_the_timeout(server: &RedisServer, f: &Subject) {
    f.check(0);
    let frozen = Frozen::new(server);
    let started = Instant::now();
    // Each call makes a GET and a SET, so two calls make more than FAILURES failures.
    for n in 1..=2 {
        f.check(n);
    }
    let tripping = started.elapsed();
    assert!(
        tripping >= TIMEOUT,
        "the frozen server answered at once ({tripping:?}): nothing is shown"
    );
    assert!(f.errors() >= FAILURES as u64);
    let bound = TIMEOUT * 50 / 5;
    let started = Instant::now();
    for n in 100..150 {
        f.check(n);
        let elapsed = started.elapsed();
        assert!(
            elapsed < bound,
            "{} calls took {elapsed:?} with the breaker open (timeout {TIMEOUT:?} each)",
            n - 99
        );
    }
    drop(frozen);
}

// ---- sync ----------------------------------------------------------------------------------

#[cached(ttl = 60)]
fn sync_unreachable(n: u64) -> String {
    format!("sync_unreachable computed {n}")
}

fn unused_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("redis://127.0.0.1:{port}/")
}

#[test]
fn sync_unreachable_redis_at_install_falls_back_to_computing() {
    let _guard = serial();
    install(&unused_port_url());
    check_unreachable(&subject!(sync_unreachable));
}

#[cached(ttl = 60)]
fn sync_restart(n: u64) -> String {
    format!("sync_restart computed {n}")
}

#[test]
fn sync_killed_redis_falls_back_and_a_restarted_one_is_used_again() {
    let (_guard, mut server) = with_short_breaker();
    check_kill_and_restart(&mut server, &subject!(sync_restart));
}

#[cached(ttl = 60)]
fn sync_frozen(n: u64) -> String {
    format!("sync_frozen computed {n}")
}

#[test]
fn sync_calls_do_not_wait_for_the_timeout_once_the_breaker_is_open() {
    let (_guard, server) = with_short_breaker();
    check_open_breaker_skips_the_timeout(&server, &subject!(sync_frozen));
}

#[cached(ttl = 60)]
fn sync_crowd(n: u64) -> String {
    format!("sync_crowd computed {n}")
}

fn connected_clients(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut server.connection())
        .expect("INFO clients");
    info.lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients in INFO clients")
}

/// Sync only: blocking connections are pooled, while async calls share one multiplexed
/// connection that is replaced on its first failure.
///
/// Many threads leave many pooled connections behind; once the server restarts they are all
/// dead, yet the first request after one cool-down must reach the new server (not burn one dead
/// connection per cool-down).
#[test]
fn sync_restarted_redis_is_used_after_one_cool_down_despite_many_pooled_connections() {
    let _guard = serial();
    let mut server = RedisServer::start();
    // A timeout well above the pause below, so that no caller gives up while paused.
    install_with_timeout(&server.url(), Duration::from_secs(2));
    let callers = 12;
    // Paused, the server holds every call's connection until all callers have one.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("ALL")
        .query(&mut server.connection())
        .expect("CLIENT PAUSE");
    let start = Barrier::new(callers as usize);
    std::thread::scope(|scope| {
        for n in 0..callers {
            let start = &start;
            scope.spawn(move || {
                start.wait();
                assert_eq!(sync_crowd(n), format!("sync_crowd computed {n}"));
            });
        }
    });
    let clients = connected_clients(&server);
    assert!(clients > callers, "only {clients} connections were open");
    let f = subject!(sync_crowd);
    server.kill();
    for n in 100..110 {
        f.check(n);
    }
    server.restart();
    let took = time_to_first_write(&server, &f, 200);
    assert!(
        took < COOLDOWN * 3,
        "the restarted server was used only after {took:?} (cool-down {COOLDOWN:?})"
    );
}

// ---- async ---------------------------------------------------------------------------------

#[cached(ttl = 60)]
async fn async_unreachable(n: u64) -> String {
    format!("async_unreachable computed {n}")
}

#[test]
fn async_unreachable_redis_at_install_falls_back_to_computing() {
    let _guard = serial();
    install(&unused_port_url());
    let rt = multi_thread_runtime();
    check_unreachable(&subject!(async_unreachable, on rt));
}

#[cached(ttl = 60)]
async fn async_restart(n: u64) -> String {
    format!("async_restart computed {n}")
}

#[test]
fn async_killed_redis_falls_back_and_a_restarted_one_is_used_again() {
    let (_guard, mut server) = with_short_breaker();
    let rt = multi_thread_runtime();
    check_kill_and_restart(&mut server, &subject!(async_restart, on rt));
}

#[cached(ttl = 60)]
async fn async_frozen(n: u64) -> String {
    format!("async_frozen computed {n}")
}

#[test]
fn async_calls_do_not_wait_for_the_timeout_once_the_breaker_is_open() {
    let (_guard, server) = with_short_breaker();
    let rt = multi_thread_runtime();
    check_open_breaker_skips_the_timeout(&server, &subject!(async_frozen, on rt));
}
