//! Calls that skip the layers: [`bypass`] (every call inside runs its body and touches no
//! layer: for tests), and a function's `uncached` and `refresh` companions (that one call: it
//! runs the body and stores nothing, or runs it now and stores the result).
//!
//! A mode lives in a thread-local cell, set around a closure (or around each poll of a
//! future, like a preload scope). A call reads it only when some thread has a mode set (one
//! shared counter, read-only on the hit path), so calls outside any mode pay one load. The
//! per-function modes are taken by the call they are meant for: the calls its body makes run
//! as usual.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

/// What a call must do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// As usual.
    Normal,
    /// Every call runs its body and reads and stores nothing.
    Bypass,
    /// The next call of this function (by its id) runs its body and stores nothing.
    Uncached(usize),
    /// The next call of this function runs its body now and stores the result; other
    /// callers keep the current value until then.
    Refresh(usize),
}

/// Modes set on any thread right now.
static ENTERED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Normal) };
}

/// The mode of a call of function `id`; a per-function mode is taken by it.
#[inline]
pub(crate) fn for_call(id: usize) -> Mode {
    if ENTERED.load(Relaxed) == 0 {
        return Mode::Normal;
    }
    set_mode_for(id)
}

#[cold]
fn set_mode_for(id: usize) -> Mode {
    MODE.try_with(|cell| match cell.get() {
        Mode::Bypass => Mode::Bypass,
        mode @ (Mode::Uncached(f) | Mode::Refresh(f)) if f == id => {
            cell.set(Mode::Normal);
            mode
        }
        _ => Mode::Normal,
    })
    .unwrap_or(Mode::Normal)
}

/// Runs `f` with `mode` set on this thread (the previous mode is back afterwards, also if
/// `f` panics).
pub(crate) fn with<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    struct Restore(Mode);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = MODE.try_with(|cell| cell.set(self.0));
            ENTERED.fetch_sub(1, Relaxed);
        }
    }
    ENTERED.fetch_add(1, Relaxed);
    let previous = MODE
        .try_with(|cell| cell.replace(mode))
        .unwrap_or(Mode::Normal);
    let _restore = Restore(previous);
    f()
}

/// A future polled with a mode set; a per-function mode only until the call takes it.
pub(crate) struct InMode<F> {
    mode: Mode,
    future: Pin<Box<F>>,
}

impl<F: Future> InMode<F> {
    pub(crate) fn new(mode: Mode, future: F) -> Self {
        InMode {
            mode,
            future: Box::pin(future),
        }
    }
}

impl<F: Future> Future for InMode<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if this.mode == Mode::Normal {
            return this.future.as_mut().poll(cx);
        }
        let mode = this.mode;
        let (poll, left) = with(mode, || {
            let poll = this.future.as_mut().poll(cx);
            (poll, MODE.try_with(Cell::get).unwrap_or(Mode::Normal))
        });
        if left != mode {
            // Taken by the call it was for.
            this.mode = Mode::Normal;
        }
        poll
    }
}

/// Runs `body` so that every `#[cached]` call inside (on this thread) runs its function's
/// body and touches no layer: nothing is read from or stored in L1, a preload scope or the
/// shared store. For tests that must see the real function, and for code that must not use
/// a cached value.
///
/// ```
/// use cache_runtime::{bypass, cached};
///
/// #[cached(ttl = 60)]
/// fn balance(account: u32) -> u64 { account as u64 * 10 }
///
/// balance(1);
/// bypass(|| balance(1)); // the body runs again; nothing is stored
/// assert_eq!(balance::stats().misses, 1); // a bypassed call is no miss
/// ```
///
/// # Concurrency
///
/// The bypass is per thread: other threads' calls meanwhile use the layers as usual. For
/// async code use [`bypass_async`], which follows the task.
pub fn bypass<R>(body: impl FnOnce() -> R) -> R {
    with(Mode::Bypass, body)
}

/// [`bypass`] for async code: the bypass is set around each poll of `future`, so it follows
/// the task across threads and never reaches other tasks.
pub async fn bypass_async<F: Future>(future: F) -> F::Output {
    InMode::new(Mode::Bypass, future).await
}
