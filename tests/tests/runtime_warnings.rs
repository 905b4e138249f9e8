//! The two ways of calling that the runtime cannot serve well are said once, at `warn`: a
//! sync function waiting for Redis on a current-thread runtime (which runs nothing else
//! meanwhile), and an `async fn` polled outside tokio (which skips Redis).

use std::future::Future;
use std::net::TcpListener;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cache_runtime::{cached, Config};
use integration_tests::{logs::Logs, serial, with_redis};

#[cached(ttl = 60)]
fn sync_fragment(n: u64) -> u64 {
    n
}

#[test]
fn a_sync_call_waiting_on_a_current_thread_runtime_warns_once() {
    let logs = Logs::capture();
    let _guard = serial();
    // A Redis that accepts and never answers: each call waits for the timeout.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    Config::new()
        .redis(format!("redis://{}/", listener.local_addr().unwrap()))
        .timeout(Duration::from_millis(50))
        .install()
        .expect("install");
    logs.take();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for n in 0..3 {
            assert_eq!(sync_fragment(n), n);
        }
    });
    let warnings: Vec<String> = logs
        .take()
        .into_iter()
        .filter(|l| l.starts_with("WARN") && l.contains("current-thread"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    Config::uninstall();
}

#[cached(ttl = 60)]
async fn async_fragment(n: u64) -> u64 {
    n
}

/// Polls a future to completion on this thread, without any runtime.
fn poll_outside_tokio<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn an_async_call_outside_tokio_warns_once_and_computes() {
    let logs = Logs::capture();
    let (_guard, server) = with_redis("outside-tokio");
    logs.take();
    for n in 0..3 {
        assert_eq!(poll_outside_tokio(async_fragment(n)), n);
    }
    let warnings: Vec<String> = logs
        .take()
        .into_iter()
        .filter(|l| l.starts_with("WARN") && l.contains("outside a tokio runtime"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        server.calls("get") + server.calls("set"),
        0,
        "Redis was skipped"
    );
    assert_eq!(async_fragment::stats().misses, 3);
}
