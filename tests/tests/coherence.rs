//! A coherent L1 across processes (`Config::coherent`): what one process invalidates, writes
//! or clears, the others forget within milliseconds; a lost invalidation connection flushes
//! L1; `coherent(false)` is the old behaviour. The other processes are `coherence_peer`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::{cached, preload, Config};
use integration_tests::{serial, with_redis, RedisServer};

/// The server the bodies read their source of truth (`truth:{n}`) from, set by each test.
static TRUTH: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn truth(n: u64) -> String {
    truth_of(&n.to_string())
}

fn truth_of(name: &str) -> String {
    let url = TRUTH.lock().unwrap().clone();
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("GET")
        .arg(format!("truth:{name}"))
        .query::<Option<String>>(&mut conn)
        .unwrap()
        .unwrap_or_else(|| "none".into())
}

/// The same function as the peers' (same name, same body).
#[cached(ttl = 600, name = "coherence::value")]
fn value(n: u64) -> String {
    truth(n)
}

/// The peers' text-keyed function: hits probe the front table with the text itself, so an
/// invalidation from another process, which names the escaped key, must find those slots.
#[cached(ttl = 600, name = "coherence::page")]
fn page(url: &str) -> String {
    truth_of(url)
}

/// Set by a test: `slow(1)` waits, after reading its source, until other processes have
/// changed keys 1 and 2 and the change of key 2 has reached this process.
static HOLD: AtomicBool = AtomicBool::new(false);
static PEER_URL: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

#[cached(ttl = 600, name = "coherence::slow")]
fn slow(n: u64) -> String {
    let read = truth(n);
    if n == 1 && HOLD.swap(false, SeqCst) {
        let url = PEER_URL.lock().unwrap().clone();
        let status = peer(&["invalidate", &url, "coh-order", "slow", "1", "2"])
            .status()
            .unwrap();
        assert!(status.success());
        // Messages arrive in order: once key 2's has removed it from L1, key 1's has come.
        poll_until("key 2's invalidation arrives", || slow::peek(2).is_none());
    }
    read
}

fn set_truth(server: &RedisServer, n: u64, value: &str) {
    set_truth_of(server, &n.to_string(), value);
}

fn set_truth_of(server: &RedisServer, name: &str, value: &str) {
    *TRUTH.lock().unwrap() = server.url();
    let _: () = redis::cmd("SET")
        .arg(format!("truth:{name}"))
        .arg(value)
        .query(&mut server.connection())
        .unwrap();
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn peer(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coherence_peer"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Polls `done` until it holds, for at most 10 s.
fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `coherence_peer watch` process and the lines it prints.
struct Watcher {
    child: Child,
    lines: Receiver<String>,
}

impl Watcher {
    fn start(server: &RedisServer, prefix: &str, rounds: usize) -> Self {
        let mut child = peer(&["watch", &server.url(), prefix, &rounds.to_string()])
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if send.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next line, within `within`.
    fn line(&self, within: Duration) -> String {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("the peer said nothing within {within:?}"))
    }

    /// Waits for `seen VALUE LATENCY_US` and returns the latency.
    fn seen(&self, value: &str) -> u64 {
        let line = self.line(Duration::from_secs(5));
        let rest = line
            .strip_prefix("seen ")
            .unwrap_or_else(|| panic!("expected `seen {value}`, got {line:?}"));
        let (seen, latency) = rest.rsplit_once(' ').unwrap();
        assert_eq!(seen, value, "the peer saw another value");
        latency.parse().unwrap()
    }

    fn finish(mut self) -> String {
        let stats = self.line(Duration::from_secs(5));
        assert!(self.child.wait().unwrap().success());
        stats
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn an_invalidation_reaches_four_processes_within_milliseconds() {
    let (_guard, server) = with_redis("coh-four");
    value::clear_local();
    set_truth(&server, 1, "v0");
    const ROUNDS: usize = 20;
    let watchers: Vec<Watcher> = (0..4)
        .map(|_| Watcher::start(&server, "coh-four", ROUNDS))
        .collect();
    for watcher in &watchers {
        assert_eq!(watcher.line(Duration::from_secs(10)), "ready v0");
    }
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let next = format!("v{round}@{}", unix_nanos());
        set_truth(&server, 1, &next);
        value::invalidate(1);
        for watcher in &watchers {
            latencies.push(watcher.seen(&next));
        }
    }
    for watcher in watchers {
        let stats = watcher.finish();
        assert!(stats.contains("coherence_flushes=0"), "{stats}");
    }
    latencies.sort_unstable();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    eprintln!(
        "propagation over {} observations (4 processes): p50 {p50} us, p99 {p99} us, max {} us",
        latencies.len(),
        latencies.last().unwrap()
    );
    assert!(p99 < 1_000_000, "p99 {p99} us");
}

#[test]
fn a_recompute_or_a_put_in_one_process_replaces_the_copies_of_the_others() {
    let (_guard, server) = with_redis("coh-write");
    value::clear_local();
    set_truth(&server, 1, "v0");
    let watchers: Vec<Watcher> = (0..2)
        .map(|_| Watcher::start(&server, "coh-write", 2))
        .collect();
    for watcher in &watchers {
        assert_eq!(watcher.line(Duration::from_secs(10)), "ready v0");
    }
    // The shared copy expires (as if its TTL ran out in Redis) while the others keep theirs;
    // this process computes the new value and writes it.
    let recomputed = format!("v1@{}", unix_nanos());
    set_truth(&server, 1, &recomputed);
    let _: () = redis::cmd("DEL")
        .arg(value::key(1).to_string())
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(value(1), recomputed);
    for watcher in &watchers {
        watcher.seen(&recomputed);
    }
    let put = format!("v2@{}", unix_nanos());
    value::put(1, put.clone());
    for watcher in &watchers {
        watcher.seen(&put);
    }
    for watcher in watchers {
        watcher.finish();
    }
}

#[test]
fn a_lost_invalidation_connection_flushes_l1_and_later_invalidations_still_arrive() {
    let (_guard, server) = with_redis("coh-lost");
    value::clear_local();
    set_truth(&server, 1, "v0");
    assert_eq!(value(1), "v0");
    let before = value::stats();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(
        killed, 1,
        "this process' listener was the one pub/sub client"
    );
    poll_until("the listener is back and has flushed L1", || {
        value::stats().coherence_flushes == before.coherence_flushes + 1
    });
    // L1 was emptied: the value comes from Redis again.
    assert_eq!(value(1), "v0");
    let after = value::stats();
    assert_eq!(after.l2_hits, before.l2_hits + 1);
    assert_eq!(after.misses, before.misses);
    let status = peer(&["invalidate", &server.url(), "coh-lost", "value", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    poll_until("the peer's invalidation arrives", || value(1) != "v0");
    assert!(value(1).starts_with("v-from-"), "{}", value(1));
}

#[test]
fn with_coherent_false_nothing_is_subscribed_or_published_and_copies_live_their_ttl() {
    let _guard = serial();
    let server = RedisServer::start();
    Config::new()
        .redis(server.url())
        .prefix("coh-off")
        .coherent(false)
        .install()
        .unwrap();
    value::clear_local();
    server.reset_stats();
    let subscribers: (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("cache-runtime:coherence:coh-off")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(subscribers.1, 0);
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.connection())
        .unwrap();
    assert!(!clients.contains("cache-coherence-"), "{clients}");
    set_truth(&server, 1, "v0");
    assert_eq!(value(1), "v0");
    value::invalidate(3);
    value::put(4, "four".into());
    value(5);
    assert_eq!(server.calls("publish"), 0);
    let status = peer(&["invalidate", &server.url(), "coh-off", "value", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    // The peer has published (to no one here): the old copy stays.
    assert_eq!(server.calls("publish"), 1);
    assert_eq!(value(1), "v0");
}

#[test]
fn a_value_read_before_another_process_changed_it_is_returned_but_not_kept() {
    let (_guard, server) = with_redis("coh-order");
    *PEER_URL.lock().unwrap() = server.url();
    slow::clear_local();
    set_truth(&server, 1, "a");
    set_truth(&server, 2, "b");
    assert_eq!(slow(2), "b");
    HOLD.store(true, SeqCst);
    // Its body read "a", then the change of key 1 arrived before it returned.
    assert_eq!(slow(1), "a");
    let misses = slow::stats().misses;
    let now = slow(1);
    assert!(now.starts_with("v-from-"), "the old value was kept: {now}");
    assert_eq!(slow::stats().misses, misses + 1);
}

#[test]
fn a_process_ignores_its_own_messages() {
    let (_guard, server) = with_redis("coh-own");
    value::clear_local();
    set_truth(&server, 2, "b");
    assert_eq!(value(2), "b");
    value::put(1, "mine".into());
    // A later change by another process: once it has arrived, so has this process' own
    // message about key 1 (messages arrive in order).
    let status = peer(&["invalidate", &server.url(), "coh-own", "value", "2"])
        .status()
        .unwrap();
    assert!(status.success());
    poll_until("the peer's invalidation arrives", || {
        value::peek(2).is_none()
    });
    let before = value::stats();
    assert_eq!(value(1), "mine");
    let after = value::stats();
    assert_eq!(after.l2_hits, before.l2_hits, "key 1 was forgotten");
    assert_eq!(after.misses, before.misses);
}

#[test]
fn another_process_invalidating_a_text_key_voids_this_processs_front_slots() {
    let (_guard, server) = with_redis("coh-text");
    page::clear_local();
    // Longer than a front slot's inline head, with bytes the key encoding escapes (`:`).
    for url in ["https://example.com/notes:42/comments?page=7", "a:b"] {
        set_truth_of(&server, url, "old");
        assert_eq!(page(url), "old");
        // Answered by this thread's front table from now on.
        let misses = page::stats().misses;
        assert_eq!(page(url), "old");
        assert_eq!(page::stats().misses, misses);
        let status = peer(&["invalidate-page", &server.url(), "coh-text", url])
            .status()
            .unwrap();
        assert!(status.success());
        poll_until("the peer's invalidation voids the front slot", || {
            page(url).starts_with("v-from-")
        });
    }
}

#[test]
fn a_key_another_process_invalidated_is_fetched_by_this_processs_next_preload_scope() {
    let (_guard, server) = with_redis("coh-scope");
    value::clear_local();
    for n in [1, 2] {
        set_truth(&server, n, "old");
    }
    // Computed, then answered by this thread's front table.
    for _ in 0..2 {
        assert_eq!((value(1), value(2)), ("old".into(), "old".into()));
    }
    let keys = || [value::key(1), value::key(2)];
    server.reset_stats();
    preload(keys(), || ());
    assert_eq!(server.calls("mget"), 0, "both held in the front table");

    let status = peer(&["invalidate", &server.url(), "coh-scope", "value", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    // The message voids 1's front slots and L1 entry (then Redis, emptied by the peer,
    // has nothing either).
    poll_until("the peer's invalidation arrives", || {
        value::peek(1).is_none()
    });
    let misses = value::stats().misses;
    server.reset_stats();
    let (one, two) = preload(keys(), || (value(1), value(2)));
    assert_eq!(server.calls("mget"), 1, "the scope asks Redis for 1");
    assert!(one.starts_with("v-from-"), "1 is computed anew: {one}");
    assert_eq!(two, "old", "2 is still held");
    assert_eq!(value::stats().misses, misses + 1);
}

#[test]
fn a_value_another_process_changes_while_a_scope_holds_it_is_read_again_inside() {
    let (_guard, server) = with_redis("coh-held");
    value::clear_local();
    for n in [1, 2, 3] {
        set_truth(&server, n, "old");
    }
    // All three computed into Redis; then only 1 and 3 back in L1, read by another thread
    // (this thread's front table holds none of them).
    std::thread::spawn(|| (value(1), value(2), value(3)))
        .join()
        .unwrap();
    value::clear_local();
    std::thread::spawn(|| (value(1), value(3))).join().unwrap();

    let (one, two) = preload([value::key(1), value::key(2)], || {
        // The scope holds L1's value of 1 and the MGET's bytes of 2. Another process puts new
        // values, 3 last: its messages arrive in order, so once 3's has, all have.
        for n in [2, 1, 3] {
            let value = format!("new {n}");
            let put = peer(&["put", &server.url(), "coh-held", &n.to_string(), &value])
                .status()
                .unwrap();
            assert!(put.success());
        }
        // Outside the scope (another thread), L1 no longer answers 3 with its old copy.
        poll_until("the peer's changes arrive", || {
            std::thread::spawn(|| value::peek(3)).join().unwrap() == Some("new 3".into())
        });
        (value(1), value(2))
    });

    assert_eq!(
        (one.as_str(), two.as_str()),
        ("new 1", "new 2"),
        "read from Redis again, not the scope's older copies"
    );
}
