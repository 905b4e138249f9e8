//! A sync `#[cached]` function called from async code does not hold a tokio worker while it
//! waits for Redis: on a multi-thread runtime the worker's other tasks run meanwhile.

use std::net::TcpListener;
use std::time::Duration;

use cache_runtime::{cached, Config};
use integration_tests::serial;

#[cached(ttl = 60)]
fn page_fragment(n: u64) -> String {
    format!("fragment {n}")
}

/// A Redis that accepts connections and never answers (a frozen server).
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://{}/", listener.local_addr().expect("address"));
    (listener, url)
}

#[test]
fn a_sync_call_waiting_for_redis_does_not_hold_the_only_worker() {
    let _guard = serial();
    let (_listener, url) = silent_server();
    Config::new()
        .redis(url)
        .timeout(Duration::from_millis(300))
        .install()
        .expect("install");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (started, is_started) = tokio::sync::oneshot::channel();
    let slow = rt.spawn(async move {
        started.send(()).expect("main is waiting");
        // Blocks in Redis until the timeout.
        page_fragment(1)
    });
    let slow_done_when_other_task_ran = rt.block_on(async {
        is_started.await.expect("started");
        // Another task on the same (only) worker: with the worker held by the sync call, it
        // could only run once that call is over.
        tokio::spawn(async {}).await.expect("ran");
        slow.is_finished()
    });
    assert!(
        !slow_done_when_other_task_ran,
        "the other task waited for the sync call's Redis timeout"
    );
    assert_eq!(rt.block_on(slow).expect("no panic"), "fragment 1");
    assert!(
        page_fragment::stats().l2_errors >= 1,
        "the timeout was counted"
    );
    Config::uninstall();
}
