//! Bad bytes and a bad Redis: undecodable values, an unreachable server, a server killed and
//! restarted mid-run. Callers always get a correct value and nothing panics.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{cached, Config};
use integration_tests::{serial, RedisServer};

fn install(server_url: &str, prefix: &str) {
    Config::new()
        .redis(server_url)
        .prefix(prefix)
        .timeout(Duration::from_millis(200))
        .circuit_breaker(3, Duration::from_millis(200))
        .install()
        .unwrap();
}

fn set_raw(server: &RedisServer, key: &str, bytes: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(bytes)
        .query(&mut server.connection())
        .unwrap();
}

#[cached(ttl = 60, name = "faults::decode")]
fn decoded(n: u64) -> String {
    format!("fresh {n}")
}

#[cached(ttl = 60, name = "faults::decode")]
fn decoded_again(n: u64) -> String {
    format!("again {n}")
}

#[cached(ttl = 60, name = "faults::decode")]
fn another_type(n: u64) -> u64 {
    n
}

#[test]
fn undecodable_bytes_are_a_counted_miss_and_are_overwritten() {
    let _guard = serial();
    let server = RedisServer::start();
    install(&server.url(), "codec");
    // Foreign bytes.
    set_raw(&server, &decoded::key(1).to_string(), b"garbage");
    assert_eq!(decoded(1), "fresh 1");
    // A truncated envelope: take a real value and cut it.
    decoded(2);
    let key2 = decoded::key(2).to_string();
    let real: Vec<u8> = redis::cmd("GET")
        .arg(&key2)
        .query(&mut server.connection())
        .unwrap();
    decoded(3);
    set_raw(
        &server,
        &decoded::key(3).to_string(),
        &real[..real.len() - 2],
    );
    // Bytes written for another return type under the same name.
    another_type(4);
    assert_eq!(decoded(4), "fresh 4");
    assert_eq!(decoded::stats().decode_errors, 2);
    assert_eq!(decoded_again(3), "again 3"); // the truncated one
    assert_eq!(decoded_again::stats().decode_errors, 1);
    // Each undecodable value was overwritten: a cold reader now gets a clean L2 hit.
    assert_eq!(decoded_again(1), "fresh 1");
    assert_eq!(decoded_again(4), "fresh 4");
    assert_eq!(decoded_again::stats().l2_hits, 2);
    assert_eq!(decoded_again::stats().decode_errors, 1);
}

#[cached(ttl = 60, name = "faults::versioned", version = 1)]
fn old_version(n: u64) -> String {
    format!("v1 {n}")
}

#[cached(ttl = 60, name = "faults::versioned", version = 2)]
fn new_version(n: u64) -> String {
    format!("v2 {n}")
}

#[test]
fn another_version_is_another_key_not_a_decode_error() {
    let _guard = serial();
    let server = RedisServer::start();
    install(&server.url(), "versions");
    old_version(1);
    assert_eq!(new_version(1), "v2 1");
    assert_eq!(new_version::stats().decode_errors, 0);
    assert_eq!(new_version::stats().misses, 1);
}

static DEAD_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn with_dead_redis(n: u64) -> u64 {
    DEAD_RUNS.fetch_add(1, SeqCst);
    n * 2
}

#[test]
fn an_unreachable_redis_at_install_costs_values_nothing() {
    let _guard = serial();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // nothing listens there any more
    install(&format!("redis://127.0.0.1:{port}/"), "dead");
    let started = Instant::now();
    for n in 0..50 {
        assert_eq!(with_dead_redis(n), n * 2);
    }
    let stats = with_dead_redis::stats();
    assert_eq!(stats.misses, 50);
    assert!(stats.l2_errors >= 50, "{stats:?}");
    // Refused connections fail fast, and the breaker skips Redis after 3 failures: 50 calls
    // (2 requests each) take nowhere near 100 timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

static RESTART_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn through_restarts(n: u64) -> u64 {
    RESTART_RUNS.fetch_add(1, SeqCst);
    n + 100
}

/// Calls fresh keys until one is written to `server`, within `limit`.
fn until_written(server: &RedisServer, mut next: impl FnMut() -> u64, limit: Duration) {
    let started = Instant::now();
    loop {
        let n = next();
        assert_eq!(through_restarts(n), n + 100);
        let key = through_restarts::key(n).to_string();
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut server.connection())
            .unwrap();
        if exists {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "Redis was not used again within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_then_restarted_redis_is_survived_and_used_again() {
    let _guard = serial();
    let mut server = RedisServer::start();
    install(&server.url(), "restart");
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        n
    };
    until_written(&server, &mut fresh, Duration::from_secs(1));
    server.kill();
    let errors_before = through_restarts::stats().l2_errors;
    for _ in 0..20 {
        let k = fresh();
        assert_eq!(through_restarts(k), k + 100);
    }
    assert!(through_restarts::stats().l2_errors > errors_before);
    server.restart();
    // Same process, same config: once the breaker's cool-down is over, writes reach Redis.
    until_written(&server, &mut fresh, Duration::from_secs(5));
}

static ASYNC_DEAD_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
async fn async_through_restarts(n: u64) -> u64 {
    ASYNC_DEAD_RUNS.fetch_add(1, SeqCst);
    n + 7
}

#[test]
fn async_callers_survive_a_dead_redis_and_come_back() {
    let _guard = serial();
    let mut server = RedisServer::start();
    install(&server.url(), "async-restart");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(async_through_restarts(1).await, 8);
        server.kill();
        for n in 2..30 {
            assert_eq!(async_through_restarts(n).await, n + 7);
        }
        assert!(async_through_restarts::stats().l2_errors > 0);
        server.restart();
        let started = Instant::now();
        let mut n = 100;
        loop {
            n += 1;
            async_through_restarts(n).await;
            let key = async_through_restarts::key(n).to_string();
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query(&mut server.connection())
                .unwrap();
            if exists {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "Redis not used again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

static HUNG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn with_hung_redis(n: u64) -> u64 {
    HUNG_RUNS.fetch_add(1, SeqCst);
    n * 3
}

#[test]
fn a_hung_redis_costs_a_few_timeouts_then_nothing() {
    let _guard = serial();
    let server = RedisServer::start();
    Config::new()
        .redis(server.url())
        .prefix("hung")
        .timeout(Duration::from_millis(200))
        .circuit_breaker(3, Duration::from_secs(30))
        .install()
        .unwrap();
    with_hung_redis(0); // opens a connection while the server answers
    server.freeze();
    let started = Instant::now();
    for n in 1..=40 {
        assert_eq!(with_hung_redis(n), n * 3);
    }
    let elapsed = started.elapsed();
    server.thaw();
    // Three requests time out (200 ms each), then the breaker skips Redis: 40 calls cost about
    // 0.6 s, not the 16 s that 80 timeouts would.
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(with_hung_redis::stats().l2_errors >= 40);
    assert_eq!(HUNG_RUNS.load(SeqCst), 41);
}
