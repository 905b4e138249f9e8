//! Small helpers for blocking work, shared by the read path and the stores: a poison-free
//! mutex lock, and running a blocking step without holding a tokio worker.

#[cfg(feature = "runtime")]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

#[cfg(feature = "runtime")]
use tokio::runtime::{Handle, RuntimeFlavor};

/// Locks `mutex`, taking over a poisoned one (nothing we keep behind a mutex is left
/// half-updated by a panic).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a blocking step (a Redis request, a disk read, waiting for another caller) so that it
/// holds no tokio worker: on a multi-thread runtime inside [`tokio::task::block_in_place`],
/// which first hands the worker's other tasks to another thread; on a current-thread runtime
/// nothing can take them over, and a warning says so once; outside tokio, as it is. Without
/// the `runtime` feature there is no tokio scheduler to hand anything to: as it is.
#[cfg(feature = "runtime")]
pub(crate) fn off_the_runtime<T>(step: impl FnOnce() -> T) -> T {
    let Ok(runtime) = Handle::try_current() else {
        return step();
    };
    match runtime.runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(step),
        _ => {
            warn_once(
                &BLOCKS_CURRENT_THREAD,
                "a sync #[cached] function waits for its shared store on a current-thread \
                 tokio runtime, which runs nothing else meanwhile (up to the timeout per \
                 request): make the function async, or call it from a multi-thread runtime or \
                 spawn_blocking",
            );
            step()
        }
    }
}

/// Without the `runtime` feature: runs `step` as it is (see the function of the feature).
#[cfg(not(feature = "runtime"))]
pub(crate) fn off_the_runtime<T>(step: impl FnOnce() -> T) -> T {
    step()
}

#[cfg(feature = "runtime")]
static BLOCKS_CURRENT_THREAD: AtomicBool = AtomicBool::new(false);

/// The caller's tokio runtime, for work that goes on after the call returns (an async
/// function's background refresh). `None` outside tokio, and always without the `runtime`
/// feature (the refresh then runs in the foreground).
pub(crate) fn background() -> Option<Background> {
    #[cfg(feature = "runtime")]
    return Handle::try_current().ok().map(Background);
    #[cfg(not(feature = "runtime"))]
    None
}

/// A runtime to [`spawn`](Background::spawn) on; see [`background`].
#[cfg(feature = "runtime")]
pub(crate) struct Background(Handle);

/// Without the `runtime` feature there is none.
#[cfg(not(feature = "runtime"))]
pub(crate) enum Background {}

impl Background {
    /// Runs `task` to its end on this runtime, detached from the caller.
    #[cfg(feature = "runtime")]
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        drop(self.0.spawn(task));
    }

    /// Without the `runtime` feature there is no runtime to spawn on.
    #[cfg(not(feature = "runtime"))]
    pub(crate) fn spawn(&self, _task: impl std::future::Future<Output = ()> + Send + 'static) {
        match *self {}
    }
}

/// Logs `message` at warn level the first time `said` is passed.
#[cfg(feature = "runtime")]
pub(crate) fn warn_once(said: &AtomicBool, message: &str) {
    if !said.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}
