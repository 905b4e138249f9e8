//! The two ways the read path talks to the outside world, so that it is written once.
//!
//! The path is an `async fn` generic over [`Io`]. [`NonBlocking`] awaits the shared store's async
//! operations and waits for other callers without blocking the thread. [`Blocking`] does the
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
#[cfg(feature = "runtime")]
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[cfg(feature = "runtime")]
use tokio::runtime::Handle;

use crate::flight::Waiter;
use crate::store::{Budget, Failure, Op, Reply, SharedStore};
use crate::sync::off_the_runtime;
#[cfg(feature = "runtime")]
use crate::sync::warn_once;

/// How the read path sends store requests, waits for a leader, and sleeps.
pub(crate) trait Io {
    fn run(
        &self,
        store: &dyn SharedStore,
        op: Op<'_>,
        budget: &Budget,
    ) -> impl Future<Output = Result<Reply, Failure>>;
    fn wait(&self, waiter: Waiter) -> impl Future<Output = ()>;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// Blocking calls: for sync functions, no runtime needed.
pub(crate) struct Blocking;

/// Async calls that never block the runtime thread.
pub(crate) struct NonBlocking;

impl Io for Blocking {
    async fn run(
        &self,
        store: &dyn SharedStore,
        op: Op<'_>,
        budget: &Budget,
    ) -> Result<Reply, Failure> {
        off_the_runtime(|| store.run(op, budget))
    }

    async fn wait(&self, waiter: Waiter) {
        off_the_runtime(|| waiter.wait());
    }

    async fn sleep(&self, duration: Duration) {
        off_the_runtime(|| std::thread::sleep(duration));
    }
}

#[cfg(feature = "runtime")]
static NO_RUNTIME: AtomicBool = AtomicBool::new(false);

impl Io for NonBlocking {
    async fn run(
        &self,
        store: &dyn SharedStore,
        op: Op<'_>,
        budget: &Budget,
    ) -> Result<Reply, Failure> {
        // Without the feature there is no Redis store: the disk and in-process stores need
        // no runtime to answer.
        #[cfg(feature = "runtime")]
        if Handle::try_current().is_err() {
            warn_once(
                &NO_RUNTIME,
                "an async #[cached] function was polled outside a tokio runtime: it skips \
                 its shared store and computes (its in-process layer still works); run it on \
                 tokio",
            );
            return Err(Failure::NoRuntime);
        }
        store.run_async(op, budget).await
    }

    async fn wait(&self, waiter: Waiter) {
        waiter.wait_async().await;
    }

    async fn sleep(&self, duration: Duration) {
        #[cfg(feature = "runtime")]
        tokio::time::sleep(duration).await;
        #[cfg(not(feature = "runtime"))]
        thread_timer::Sleep::new(duration).await;
    }
}

/// Without tokio's timers (feature `runtime` off), an async wait between lock attempts sleeps
/// on a thread of its own, which wakes the task when the time is up; such waits happen only
/// while another caller holds a function's lock, so a thread each costs nothing that matters.
#[cfg(not(feature = "runtime"))]
mod thread_timer {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use crate::sync::lock;

    /// Whether the time is up, and the task to wake then.
    #[derive(Default)]
    struct Alarm {
        rung: bool,
        waker: Option<Waker>,
    }

    /// A future ready `duration` after its first poll.
    pub(super) struct Sleep {
        duration: Duration,
        alarm: Option<Arc<Mutex<Alarm>>>,
    }

    impl Sleep {
        pub(super) fn new(duration: Duration) -> Self {
            Sleep {
                duration,
                alarm: None,
            }
        }
    }

    impl Future for Sleep {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let duration = self.duration;
            let alarm = self.alarm.get_or_insert_with(|| {
                let alarm = Arc::new(Mutex::new(Alarm::default()));
                let ringer = alarm.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(duration);
                    let mut alarm = lock(&ringer);
                    alarm.rung = true;
                    if let Some(waker) = alarm.waker.take() {
                        waker.wake();
                    }
                });
                alarm
            });
            let mut alarm = lock(alarm);
            if alarm.rung {
                return Poll::Ready(());
            }
            alarm.waker = Some(cx.waker().clone());
            Poll::Pending
        }
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
