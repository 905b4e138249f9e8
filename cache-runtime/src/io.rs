//! The two ways the read path talks to the outside world, so that it is written once.
//!
//! The path is an `async fn` generic over [`Io`]. [`NonBlocking`] awaits Redis on the async
//! connection and waits for other callers without blocking the thread. [`Blocking`] does the
//! same work with blocking calls inside futures that are always ready, so [`block_on`] finishes
//! it in a single poll, with no runtime.
//!
//! A sync function may still be called from async code (an axum handler calling a sync
//! `#[cached]` function). Its blocking steps (a Redis request, waiting for another caller's
//! computation, a lock's pause) would then hold a tokio worker, and every task queued behind
//! it would wait up to the Redis timeout. On a multi-thread runtime they run inside
//! [`tokio::task::block_in_place`], which first hands the worker's other tasks to another
//! thread; on a current-thread runtime nothing can take them over, and a warning says so once.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use redis::FromRedisValue;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::flight::Waiter;
use crate::store::redis::{Budget, Failure, RedisStore, Request};

/// How the read path sends Redis requests, waits for a leader, and sleeps.
pub(crate) trait Io {
    fn run<T: FromRedisValue>(
        &self,
        store: &RedisStore,
        request: &Request,
        budget: &Budget,
    ) -> impl Future<Output = Result<T, Failure>>;
    fn wait(&self, waiter: Waiter) -> impl Future<Output = ()>;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// Blocking calls: for sync functions, no runtime needed.
pub(crate) struct Blocking;

/// Async calls that never block the runtime thread.
pub(crate) struct NonBlocking;

impl Io for Blocking {
    async fn run<T: FromRedisValue>(
        &self,
        store: &RedisStore,
        request: &Request,
        budget: &Budget,
    ) -> Result<T, Failure> {
        off_the_runtime(|| store.run(request, budget))
    }

    async fn wait(&self, waiter: Waiter) {
        off_the_runtime(|| waiter.wait());
    }

    async fn sleep(&self, duration: Duration) {
        off_the_runtime(|| std::thread::sleep(duration));
    }
}

/// Runs a blocking step so that it holds no tokio worker (see the module docs).
fn off_the_runtime<T>(step: impl FnOnce() -> T) -> T {
    let Ok(runtime) = Handle::try_current() else {
        return step();
    };
    match runtime.runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(step),
        _ => {
            warn_once(
                &BLOCKS_CURRENT_THREAD,
                "a sync #[cached] function waits for Redis on a current-thread tokio runtime, \
                 which runs nothing else meanwhile (up to the timeout per request): make the \
                 function async, or call it from a multi-thread runtime or spawn_blocking",
            );
            step()
        }
    }
}

static BLOCKS_CURRENT_THREAD: AtomicBool = AtomicBool::new(false);
static NO_RUNTIME: AtomicBool = AtomicBool::new(false);

fn warn_once(said: &AtomicBool, message: &str) {
    if !said.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

impl Io for NonBlocking {
    async fn run<T: FromRedisValue>(
        &self,
        store: &RedisStore,
        request: &Request,
        budget: &Budget,
    ) -> Result<T, Failure> {
        if Handle::try_current().is_err() {
            warn_once(
                &NO_RUNTIME,
                "an async #[cached] function was polled outside a tokio runtime: it skips \
                 Redis and computes (its in-process layer still works); run it on tokio",
            );
        }
        store.run_async(request, budget).await
    }

    async fn wait(&self, waiter: Waiter) {
        waiter.wait_async().await;
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Runs a future built only from [`Blocking`] steps (or the user's sync body), which is ready
/// at its first poll.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            // Cannot happen with blocking steps; yield rather than spin hard if it ever does.
            Poll::Pending => std::thread::yield_now(),
        }
    }
}
