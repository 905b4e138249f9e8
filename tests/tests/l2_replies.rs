//! Redis answering with an error reply (OOM under `maxmemory` + `noeviction`, WRONGTYPE) is
//! not a broken connection: the call computes, the failure is counted in `l2_errors`, and the
//! connection is used again. Connections are counted by Redis itself
//! (`total_connections_received`), on one admin connection opened before the first reading.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use cache_runtime::cached;
use integration_tests::info::{command_stat, connections_received};
use integration_tests::{with_redis, RedisServer};

/// Calls made by each test.
const CALLS: u64 = 200;

/// Most connections the calls may open: one blocking connection (sync) or one multiplexed
/// connection (async), with room for one more.
const FEW: u64 = 2;

/// Makes every write fail with `OOM command not allowed when used memory > 'maxmemory'`;
/// reads still work.
fn refuse_writes(admin: &mut redis::Connection) {
    for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(admin)
            .expect("CONFIG SET");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Checks what `CALLS` calls through `call`, each of which got its write refused, left behind.
fn check_refused(
    server: &RedisServer,
    admin: &mut redis::Connection,
    before: u64,
    runs: &AtomicU64,
    l2_errors: u64,
) {
    let opened = connections_received(admin) - before;
    assert_eq!(runs.load(SeqCst), CALLS, "every call computes");
    assert_eq!(
        command_stat(admin, "set", "rejected_calls"),
        CALLS,
        "every write reached Redis and was refused"
    );
    assert_eq!(server.calls("get"), CALLS, "every call asked first");
    assert_eq!(l2_errors, CALLS, "each refused write is counted");
    assert!(
        opened <= FEW,
        "{CALLS} refused writes opened {opened} connections"
    );
}

static SYNC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60)]
fn sync_refused(n: u64) -> String {
    SYNC_RUNS.fetch_add(1, SeqCst);
    format!("sync_refused computed {n}")
}

#[test]
fn sync_refused_writes_keep_their_connection() {
    let (_guard, server) = with_redis("replies");
    let mut admin = server.connection();
    refuse_writes(&mut admin);
    let before = connections_received(&mut admin);
    for n in 0..CALLS {
        assert_eq!(sync_refused(n), format!("sync_refused computed {n}"));
    }
    check_refused(
        &server,
        &mut admin,
        before,
        &SYNC_RUNS,
        sync_refused::stats().l2_errors,
    );
}

static ASYNC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60)]
async fn async_refused(n: u64) -> String {
    ASYNC_RUNS.fetch_add(1, SeqCst);
    format!("async_refused computed {n}")
}

#[test]
fn async_refused_writes_keep_the_shared_connection() {
    let (_guard, server) = with_redis("replies");
    let rt = runtime();
    let mut admin = server.connection();
    refuse_writes(&mut admin);
    let before = connections_received(&mut admin);
    for n in 0..CALLS {
        assert_eq!(
            rt.block_on(async_refused(n)),
            format!("async_refused computed {n}")
        );
    }
    check_refused(
        &server,
        &mut admin,
        before,
        &ASYNC_RUNS,
        async_refused::stats().l2_errors,
    );
}

static WRONGTYPE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 60)]
fn sync_wrongtype(n: u64) -> String {
    WRONGTYPE_RUNS.fetch_add(1, SeqCst);
    format!("sync_wrongtype computed {n}")
}

/// A key holding a list: GET answers WRONGTYPE, the call computes and its SET replaces the
/// list; later calls are L1 hits.
#[test]
fn sync_wrongtype_reads_keep_their_connection() {
    let (_guard, server) = with_redis("replies");
    let mut admin = server.connection();
    for n in 0..CALLS {
        let _: () = redis::cmd("RPUSH")
            .arg(sync_wrongtype::key(n).to_string())
            .arg("not a value")
            .query(&mut admin)
            .expect("RPUSH");
    }
    let before = connections_received(&mut admin);
    for n in 0..CALLS {
        assert_eq!(sync_wrongtype(n), format!("sync_wrongtype computed {n}"));
    }
    let opened = connections_received(&mut admin) - before;
    assert_eq!(WRONGTYPE_RUNS.load(SeqCst), CALLS);
    assert_eq!(command_stat(&mut admin, "get", "failed_calls"), CALLS);
    assert_eq!(command_stat(&mut admin, "set", "calls"), CALLS);
    assert_eq!(sync_wrongtype::stats().l2_errors, CALLS);
    assert!(
        opened <= FEW,
        "{CALLS} WRONGTYPE replies opened {opened} connections"
    );
}
