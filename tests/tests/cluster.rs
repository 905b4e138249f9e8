//! Redis Cluster as the shared store, against a real cluster of 3 masters and 3 replicas
//! (`integration_tests::cluster`): what each path sends (Redis' own `INFO commandstats`,
//! summed over the masters), where keys and locks go, and what callers see while a master dies,
//! a node restarts, a node freezes, or slots move.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::{cached, preload, Config, Key};
use integration_tests::cluster::RedisCluster;
use integration_tests::serial;

/// Starts a cluster and installs a config over it with `prefix` (and `timeout`).
fn with_cluster(prefix: &str, timeout: Duration) -> RedisCluster {
    let cluster = RedisCluster::start();
    Config::new()
        .redis_cluster(cluster.urls())
        .prefix(prefix)
        .timeout(timeout)
        .circuit_breaker(3, Duration::from_millis(200))
        .install()
        .expect("install");
    cluster.reset_stats();
    cluster
}

const TIMEOUT: Duration = Duration::from_millis(300);

static SHARED_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::shared")]
fn shared(n: u64) -> String {
    SHARED_RUNS.fetch_add(1, SeqCst);
    format!("shared {n}")
}

#[test]
fn values_are_shared_through_the_cluster() {
    let _serial = serial();
    let cluster = with_cluster("cl-shared", TIMEOUT);

    // A miss everywhere: one GET, one SET, on the key's master.
    assert_eq!(shared(1), "shared 1");
    assert_eq!(SHARED_RUNS.load(SeqCst), 1);
    assert_eq!((cluster.calls("get"), cluster.calls("set")), (1, 1));
    let key = shared::key(1).to_string();
    let master = cluster.master_of(&key);
    assert_eq!(cluster.calls_by_master("set")[&master], 1);
    assert!(cluster.get(&key).is_some(), "the value is on its master");

    // An L1 miss (another process, say): one GET, no body.
    shared::clear_local();
    cluster.reset_stats();
    assert_eq!(shared(1), "shared 1");
    assert_eq!(SHARED_RUNS.load(SeqCst), 1);
    assert_eq!((cluster.calls("get"), cluster.calls("set")), (1, 0));
    assert_eq!(shared::stats().l2_hits, 1);

    // An L1 hit: nothing.
    cluster.reset_stats();
    assert_eq!(shared(1), "shared 1");
    assert_eq!((cluster.calls("get"), cluster.calls("set")), (0, 0));

    // Many keys land on every master.
    for n in 100..160 {
        assert_eq!(shared(n), format!("shared {n}"));
    }
    let masters: BTreeSet<u16> = (100..160)
        .map(|n| cluster.master_of(&shared::key(n).to_string()))
        .collect();
    assert_eq!(masters.len(), 3, "keys spread over the masters");
    assert_eq!(shared::stats().l2_errors, 0);
}

static ASYNC_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::async_shared")]
async fn async_shared(n: u64) -> String {
    ASYNC_RUNS.fetch_add(1, SeqCst);
    format!("async {n}")
}

#[test]
fn async_calls_and_async_preload() {
    let _serial = serial();
    let cluster = with_cluster("cl-async", TIMEOUT);
    // A runtime of the test's own, gone before the next: the store's connection does not
    // live on it.
    for round in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            assert_eq!(async_shared(round).await, format!("async {round}"));
        });
    }
    assert_eq!(ASYNC_RUNS.load(SeqCst), 2);
    assert_eq!((cluster.calls("get"), cluster.calls("set")), (2, 2));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for n in 0..50 {
            async_shared(n).await;
        }
        async_shared::clear_local();
        cluster.reset_stats();
        let runs = ASYNC_RUNS.load(SeqCst);
        let keys: Vec<Key> = (0..50).map(async_shared::key).collect();
        cache_runtime::preload_async(keys, async {
            for n in 0..50 {
                assert_eq!(async_shared(n).await, format!("async {n}"));
            }
        })
        .await;
        assert_eq!(
            ASYNC_RUNS.load(SeqCst),
            runs,
            "every value came from the preload"
        );
    });
    assert_eq!(cluster.calls("get"), 0);
    let slots: BTreeSet<u16> = (0..50)
        .map(|n| cluster.slot_of(&async_shared::key(n).to_string()))
        .collect();
    assert_eq!(cluster.calls("mget"), slots.len() as u64);
    assert_eq!(async_shared::stats().l2_errors, 0);
}

static INVALIDATED_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::invalidated")]
fn invalidated(n: u64) -> String {
    INVALIDATED_RUNS.fetch_add(1, SeqCst);
    format!("v{} of {n}", INVALIDATED_RUNS.load(SeqCst))
}

#[test]
fn invalidate_removes_the_entry_from_its_master() {
    let _serial = serial();
    let cluster = with_cluster("cl-invalidate", TIMEOUT);
    assert_eq!(invalidated(7), "v1 of 7");
    let key = invalidated::key(7).to_string();
    assert!(cluster.get(&key).is_some());
    cluster.reset_stats();
    invalidated::invalidate(7);
    assert_eq!(cluster.calls("del"), 1);
    assert_eq!(cluster.get(&key), None, "gone from the cluster");
    assert_eq!(invalidated(7), "v2 of 7", "the next call computes again");
}

static PAGE_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::fragment")]
fn fragment(n: u64) -> String {
    PAGE_RUNS.fetch_add(1, SeqCst);
    format!("fragment {n}")
}

/// One page's fragments share the hash tag `{page42}`: one slot, one MGET.
#[cached(ttl = 60, name = "cluster::tagged", key = format!("{{page{page}}}{n}"))]
fn tagged(page: u64, n: u64) -> String {
    PAGE_RUNS.fetch_add(1, SeqCst);
    format!("tagged {page}/{n}")
}

#[test]
fn preload_sends_one_mget_per_slot_and_no_get() {
    let _serial = serial();
    let cluster = with_cluster("cl-preload", TIMEOUT);
    for n in 0..50 {
        fragment(n);
        tagged(42, n);
    }
    fragment::clear_local();
    tagged::clear_local();
    let runs = PAGE_RUNS.load(SeqCst);

    // Spread keys: one MGET per slot, on the slot's master; no GET.
    cluster.reset_stats();
    let keys: Vec<Key> = (0..50).map(fragment::key).collect();
    preload(keys, || {
        for n in 0..50 {
            assert_eq!(fragment(n), format!("fragment {n}"));
        }
    });
    assert_eq!(PAGE_RUNS.load(SeqCst), runs);
    let slots: BTreeSet<u16> = (0..50)
        .map(|n| cluster.slot_of(&fragment::key(n).to_string()))
        .collect();
    assert!(slots.len() > 3, "50 keys fall in many slots");
    assert_eq!(cluster.calls("mget"), slots.len() as u64);
    assert_eq!(cluster.calls("get"), 0);
    let mgets = cluster.calls_by_master("mget");
    assert_eq!(mgets.len(), 3);
    assert!(
        mgets.values().all(|&n| n > 0),
        "every master was asked: {mgets:?}"
    );

    // Tagged keys: one slot, one MGET.
    cluster.reset_stats();
    let keys: Vec<Key> = (0..50).map(|n| tagged::key(42, n)).collect();
    let tag_slot = cluster.slot_of("page42");
    assert!(keys
        .iter()
        .all(|k| cluster.slot_of(&k.to_string()) == tag_slot));
    preload(keys, || {
        for n in 0..50 {
            assert_eq!(tagged(42, n), format!("tagged 42/{n}"));
        }
    });
    assert_eq!(PAGE_RUNS.load(SeqCst), runs);
    assert_eq!((cluster.calls("mget"), cluster.calls("get")), (1, 0));
    assert_eq!(fragment::stats().l2_errors + tagged::stats().l2_errors, 0);
}

static CLEARED_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::cleared")]
fn cleared(n: u64) -> String {
    CLEARED_RUNS.fetch_add(1, SeqCst);
    format!("cleared {n}")
}

#[cached(ttl = 60, name = "cluster::kept")]
fn kept(n: u64) -> String {
    format!("kept {n}")
}

#[test]
fn clear_removes_every_entry_from_every_master() {
    let _serial = serial();
    let cluster = with_cluster("cl-clear", TIMEOUT);
    for n in 0..300 {
        cleared(n);
    }
    for n in 0..10 {
        kept(n);
    }
    assert_eq!(cluster.key_count(), 310);
    cleared::clear();
    assert_eq!(
        cluster.key_count(),
        10,
        "only the other function's entries are left"
    );
    assert!((0..10).all(|n| cluster.get(&kept::key(n).to_string()).is_some()));
    let runs = CLEARED_RUNS.load(SeqCst);
    cleared(5);
    assert_eq!(CLEARED_RUNS.load(SeqCst), runs + 1, "gone from L1 too");
}

/// Holds its body until told to finish.
static GATE: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);

#[cached(ttl = 60, name = "cluster::gated", lock)]
fn gated(n: u64) -> String {
    let gate = GATE.lock().unwrap().take().expect("a gate");
    gate.recv().expect("released");
    format!("gated {n}")
}

#[test]
fn a_lock_lives_on_the_slot_of_its_key() {
    let _serial = serial();
    let cluster = with_cluster("cl-lockslot", TIMEOUT);
    let (release, gate) = mpsc::channel();
    *GATE.lock().unwrap() = Some(gate);
    let caller = std::thread::spawn(|| gated(3));

    let key = gated::key(3).to_string();
    let lock = format!("{{{key}}}:lock");
    let master = cluster.master_of(&key);
    cluster.wait_for("the lock to be taken", |cluster| {
        redis::cmd("EXISTS")
            .arg(&lock)
            .query::<bool>(&mut cluster.connection(master))
            .expect("EXISTS")
    });
    assert_eq!(cluster.slot_of(&lock), cluster.slot_of(&key));
    release.send(()).unwrap();
    assert_eq!(caller.join().unwrap(), "gated 3");
    assert_eq!(cluster.get(&lock), None, "released by its owner");
    assert!(cluster.get(&key).is_some());
}

#[test]
fn a_locked_key_is_computed_once_across_processes() {
    let _serial = serial();
    let cluster = with_cluster("cl-fleet", TIMEOUT);
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1500;
    let peers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_cluster_peer"))
                .args(["stampede", &cluster.urls().join(","), "cl-fleet", "4"])
                .arg(at.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("cluster_peer")
        })
        .collect();
    let runs: u32 = peers
        .into_iter()
        .map(|peer| {
            let out = peer.wait_with_output().expect("peer output");
            assert!(out.status.success(), "a peer failed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.trim()
                .strip_prefix("runs=")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or_else(|| panic!("peer said {text:?}"))
        })
        .sum();
    assert_eq!(runs, 1, "8 callers in 2 processes, one computation");
}

static STALE_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = Duration::from_millis(300), stale = 60, name = "cluster::stale")]
fn stale_one(n: u64) -> String {
    let run = STALE_RUNS.fetch_add(1, SeqCst) + 1;
    format!("stale {n} run {run}")
}

#[test]
fn stale_values_are_served_and_refreshed_through_the_cluster() {
    let _serial = serial();
    let cluster = with_cluster("cl-stale", TIMEOUT);
    assert_eq!(stale_one(1), "stale 1 run 1");
    let key = stale_one::key(1).to_string();
    let first = cluster.get(&key).expect("stored");
    // Past the ttl, within `stale`: the stale value comes back and is refreshed in the store.
    // (Time passing is the behaviour under test: there is nothing to observe instead.)
    std::thread::sleep(Duration::from_millis(350));
    stale_one::clear_local();
    let served = stale_one(1);
    assert!(served.starts_with("stale 1 run"), "{served}");
    cluster.wait_for("the refreshed value in the cluster", |cluster| {
        cluster.get(&key).is_some_and(|now| now != first)
    });
    assert_eq!(stale_one::stats().l2_errors, 0);
}

static FAILOVER_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::failover")]
fn failing_over(n: u64) -> String {
    FAILOVER_RUNS.fetch_add(1, SeqCst);
    format!("failover {n}")
}

#[test]
fn a_killed_master_fails_over_and_callers_always_get_values() {
    let _serial = serial();
    let mut cluster = with_cluster("cl-failover", TIMEOUT);
    for n in 0..30 {
        failing_over(n);
    }
    let victim_key = failing_over::key(0).to_string();
    let victim = cluster.master_of(&victim_key);
    let slot = cluster.slot_of(&victim_key);
    cluster.synced_replica_of(victim);
    cluster.kill(victim);

    // While the replica is not yet promoted: values always, errors counted.
    let mut round = 0;
    let promoted = loop {
        failing_over::clear_local();
        for n in 0..30 {
            assert_eq!(failing_over(n), format!("failover {n}"));
        }
        round += 1;
        let nodes = cluster.nodes();
        if let Some(node) = nodes.iter().find(|n| {
            n.master
                && !n.failing
                && n.port != victim
                && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
        }) {
            break node.port;
        }
        assert!(round < 10_000, "no failover");
    };
    assert!(
        failing_over::stats().l2_errors > 0,
        "the dead master was noticed"
    );
    assert_ne!(promoted, victim);

    // Once promoted, the cluster is used again for the dead master's slots: the value (which
    // the replica had) is read from the new master.
    cluster.wait_for("a read from the promoted master", |_| {
        failing_over::clear_local();
        let hits = failing_over::stats().l2_hits;
        assert_eq!(failing_over(0), "failover 0");
        failing_over::stats().l2_hits > hits
    });
    assert_eq!(cluster.master_of(&victim_key), promoted);
    let errors = failing_over::stats().l2_errors;
    failing_over::clear_local();
    let hits = failing_over::stats().l2_hits;
    assert_eq!(failing_over(0), "failover 0");
    assert_eq!(failing_over::stats().l2_hits, hits + 1);
    assert_eq!(failing_over::stats().l2_errors, errors);
}

static RESTART_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::restarted")]
fn restarted(n: u64) -> String {
    RESTART_RUNS.fetch_add(1, SeqCst);
    format!("restarted {n}")
}

#[test]
fn a_restarted_node_is_used_again() {
    let _serial = serial();
    let mut cluster = with_cluster("cl-restart", TIMEOUT);
    assert_eq!(restarted(1), "restarted 1");
    let key = restarted::key(1).to_string();
    let node = cluster.master_of(&key);
    cluster.restart(node);
    // Whether it came back as the master (empty) or its replica took over, the key's slot is
    // served again, and calls reach it.
    cluster.wait_until_ok();
    cluster.wait_for("the key's master to be used again", |_| {
        restarted::clear_local();
        let hits = restarted::stats().l2_hits;
        assert_eq!(restarted(1), "restarted 1");
        restarted::stats().l2_hits > hits
    });
    assert!(cluster.get(&key).is_some());
}

#[cached(ttl = 60, name = "cluster::frozen")]
fn frozen(n: u64) -> String {
    format!("frozen {n}")
}

#[cached(ttl = 60, name = "cluster::frozen_async")]
async fn frozen_async(n: u64) -> String {
    format!("frozen async {n}")
}

#[test]
fn a_frozen_node_holds_a_call_no_longer_than_its_budget() {
    let _serial = serial();
    let timeout = Duration::from_millis(150);
    let cluster = with_cluster("cl-frozen", timeout);
    // No circuit breaker in the way: every request below is sent.
    Config::new()
        .redis_cluster(cluster.urls())
        .prefix("cl-frozen")
        .timeout(timeout)
        .circuit_breaker(1000, Duration::from_millis(1))
        .install()
        .expect("install");
    // Connections to every master, opened before the freeze.
    for n in 0..30 {
        frozen(n);
    }
    frozen::clear_local();
    let master = cluster.master_of(&frozen::key(0).to_string());
    let on_frozen = (0..)
        .find(|&n| cluster.master_of(&frozen_async::key(n).to_string()) == master)
        .expect("a key on the frozen master");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    cluster.freeze(master);

    let timed = |what: &str, f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        let took = started.elapsed();
        eprintln!("frozen master: {what} took {took:?}");
        took
    };
    // One request (a DEL): cut at one timeout.
    let one_sync = timed("a sync invalidate", &mut || frozen::invalidate(0));
    let one_async = timed("an async invalidate", &mut || {
        runtime.block_on(frozen_async::invalidate(on_frozen))
    });
    // A call (a GET, then a SET): cut at the call's budget, two timeouts.
    let call_sync = timed("a sync call", &mut || assert_eq!(frozen(0), "frozen 0"));
    let call_async = timed("an async call", &mut || {
        let value = runtime.block_on(frozen_async(on_frozen));
        assert_eq!(value, format!("frozen async {on_frozen}"));
    });
    cluster.thaw(master);

    let slack = Duration::from_millis(100);
    for (took, bound) in [
        (one_sync, timeout + slack),
        (one_async, timeout + slack),
        (call_sync, timeout * 2 + slack),
        (call_async, timeout * 2 + slack),
    ] {
        assert!(took < bound, "took {took:?}, more than {bound:?}");
        assert!(took >= timeout, "the frozen master was asked ({took:?})");
    }
    assert!(frozen::stats().l2_errors >= 1);
}

static RESHARD_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, name = "cluster::resharded")]
fn resharded(n: u64) -> String {
    RESHARD_RUNS.fetch_add(1, SeqCst);
    format!("resharded {n}")
}

#[cached(ttl = 60, name = "cluster::resharded_async")]
async fn resharded_async(n: u64) -> String {
    RESHARD_RUNS.fetch_add(1, SeqCst);
    format!("resharded async {n}")
}

/// Calls, sync preloads and async preloads over 2 000 keys, round after round until `done`.
fn reshard_caller(kind: u64, done: Arc<AtomicBool>) -> u32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rounds = 0u32;
    while !done.load(SeqCst) || rounds == 0 {
        for page in (0..2000).step_by(50) {
            let args = page..page + 50;
            match kind {
                0 => {
                    for n in args {
                        assert_eq!(resharded(n), format!("resharded {n}"));
                    }
                }
                1 => preload(args.clone().map(resharded::key), || {
                    for n in args {
                        assert_eq!(resharded(n), format!("resharded {n}"));
                    }
                }),
                _ => runtime.block_on(cache_runtime::preload_async(
                    args.clone().map(resharded_async::key),
                    async {
                        for n in args {
                            assert_eq!(resharded_async(n).await, format!("resharded async {n}"));
                        }
                    },
                )),
            }
        }
        resharded::clear_local();
        resharded_async::clear_local();
        rounds += 1;
    }
    rounds
}

#[test]
fn calls_during_a_resharding_get_correct_values() {
    let _serial = serial();
    let cluster = with_cluster("cl-reshard", Duration::from_millis(500));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for n in 0..2000 {
        resharded(n);
        runtime.block_on(resharded_async(n));
    }
    let computed = RESHARD_RUNS.load(SeqCst);
    let masters = cluster.masters();
    let (from, to) = (masters[0], masters[1]);
    let moved_before: usize = cluster
        .nodes()
        .iter()
        .find(|n| n.port == to)
        .map(|n| n.slots.iter().map(|&(a, b)| (b - a + 1) as usize).sum())
        .unwrap();
    cluster.reset_stats();
    let mut reshard = cluster.reshard(from, to, 600);
    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|kind| {
            let done = done.clone();
            std::thread::spawn(move || reshard_caller(kind, done))
        })
        .collect();
    let status = reshard.wait().expect("redis-cli --cluster reshard");
    done.store(true, SeqCst);
    let rounds: u32 = callers
        .into_iter()
        .map(|c| c.join().expect("a caller"))
        .sum();
    assert!(status.success(), "the resharding failed");
    assert!(rounds >= 3);
    let moved_after: usize = cluster
        .nodes()
        .iter()
        .find(|n| n.port == to)
        .map(|n| n.slots.iter().map(|&(a, b)| (b - a + 1) as usize).sum())
        .unwrap();
    assert_eq!(moved_after, moved_before + 600, "slots moved");
    let (moved, ask) = (cluster.errors("MOVED"), cluster.errors("ASK"));
    let again = cluster.errors("TRYAGAIN");
    eprintln!(
        "{rounds} rounds of 2000 calls; the nodes answered MOVED {moved}, ASK {ask}, TRYAGAIN \
         {again} times"
    );
    assert_eq!(resharded_async::stats().l2_errors, 0);
    assert!(moved + ask > 0, "calls ran while slots moved");
    // `MOVED` and `ASK` were followed: no call failed over to computing, none missed.
    assert_eq!(resharded::stats().l2_errors, 0);
    assert_eq!(
        RESHARD_RUNS.load(SeqCst),
        computed,
        "every value was read from the cluster"
    );
    // And read back after the move.
    resharded::clear_local();
    for n in 0..2000 {
        assert_eq!(resharded(n), format!("resharded {n}"));
    }
    assert_eq!(
        RESHARD_RUNS.load(SeqCst),
        computed,
        "values survive a resharding"
    );
}
