//! The two ways the read path talks to the outside world, so that it is written once.
//!
//! The path is an `async fn` generic over [`Io`]. [`NonBlocking`] awaits Redis on the async
//! connection and waits for other callers without blocking the thread. [`Blocking`] does the
//! same work with blocking calls inside futures that are always ready, so [`block_on`] finishes
//! it in a single poll, with no runtime.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use redis::FromRedisValue;

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
        store.run(request, budget)
    }

    async fn wait(&self, waiter: Waiter) {
        waiter.wait();
    }

    async fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

impl Io for NonBlocking {
    async fn run<T: FromRedisValue>(
        &self,
        store: &RedisStore,
        request: &Request,
        budget: &Budget,
    ) -> Result<T, Failure> {
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
