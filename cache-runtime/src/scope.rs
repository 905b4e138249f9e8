//! Preload scopes: one MGET for every key a piece of work will need.
//!
//! [`preload`](fn@preload) (sync) and [`preload_async`] fetch, in one round-trip, every given key that
//! L1 does not already hold, and make the answers visible to `#[cached]` calls made inside:
//!
//! - sync code: a thread-local stack of scopes; nested scopes see the outer ones.
//! - async code: the scope is pushed around each `poll` of the wrapped future (the way
//!   `tracing`'s `Instrumented` enters its span), so it follows the task across worker
//!   threads and never leaks into another task polled on the same thread.
//!
//! A key MGET found absent is remembered as absent: the call inside the scope runs its body
//! and writes the value without asking Redis again. Keys of `local` functions, duplicates and
//! keys L1 already holds are left out of the MGET. If Redis fails, the scope is empty and the
//! calls inside behave as without it (the failure is counted in each function's `l2_errors`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::config::{self, Installed};
use crate::key::Key;
use crate::store::redis::{self as l2, Failure};

/// What one scope holds: per function, per encoded arguments, the bytes MGET found (or
/// `None` when it found nothing).
#[derive(Default)]
struct ScopeData {
    entries: HashMap<usize, HashMap<Box<str>, Option<Vec<u8>>>>,
}

thread_local! {
    static STACK: RefCell<Vec<Arc<ScopeData>>> = const { RefCell::new(Vec::new()) };
}

/// What the innermost scope that knows a key says about it.
pub(crate) enum Preloaded {
    Present(Vec<u8>),
    Absent,
}

/// Looks `args` of function `owner` up in the scopes of this thread, innermost first.
pub(crate) fn find(owner: usize, args: &str) -> Option<Preloaded> {
    STACK
        .try_with(|stack| {
            let stack = stack.try_borrow().ok()?;
            stack.iter().rev().find_map(|scope| {
                let found = scope.entries.get(&owner)?.get(args)?;
                Some(match found {
                    Some(bytes) => Preloaded::Present(bytes.clone()),
                    None => Preloaded::Absent,
                })
            })
        })
        .ok()
        .flatten()
}

/// The keys that need fetching: deduplicated, not `local`, not already in L1, not already in
/// an enclosing scope.
struct Wanted {
    keys: Vec<Key>,
    remote_keys: Vec<String>,
}

fn wanted(keys: impl IntoIterator<Item = Key>, installed: &Installed) -> Wanted {
    let mut seen = std::collections::HashSet::new();
    let mut wanted = Wanted {
        keys: Vec::new(),
        remote_keys: Vec::new(),
    };
    for key in keys {
        let owner = key.owner();
        if owner.is_local() || owner.holds(key.args()) || find(owner.id(), key.args()).is_some() {
            continue;
        }
        if seen.insert(key.clone()) {
            wanted.remote_keys.push(key.remote(&installed.prefix));
            wanted.keys.push(key);
        }
    }
    wanted
}

fn into_scope(wanted: Wanted, answer: Result<Vec<Vec<Option<Vec<u8>>>>, Failure>) -> ScopeData {
    let mut scope = ScopeData::default();
    match answer {
        Ok(batches) => {
            for (key, value) in wanted.keys.iter().zip(batches.into_iter().flatten()) {
                scope
                    .entries
                    .entry(key.owner().id())
                    .or_default()
                    .insert(key.args().into(), value);
            }
        }
        Err(failure) => {
            tracing::debug!(%failure, keys = wanted.keys.len(), "preload failed; calls go to redis one by one");
            let mut counted = std::collections::HashSet::new();
            for key in &wanted.keys {
                if counted.insert(key.owner().id()) {
                    key.owner().count_l2_error();
                }
            }
        }
    }
    scope
}

fn fetch(keys: impl IntoIterator<Item = Key>) -> ScopeData {
    let installed = config::current();
    let Some((store, wanted)) = plan(keys, installed.as_deref()) else {
        return ScopeData::default();
    };
    let answer = store.run(&l2::mget(&wanted.remote_keys));
    into_scope(wanted, answer)
}

async fn fetch_async(keys: impl IntoIterator<Item = Key>) -> ScopeData {
    let installed = config::current();
    let Some((store, wanted)) = plan(keys, installed.as_deref()) else {
        return ScopeData::default();
    };
    let answer = store.run_async(&l2::mget(&wanted.remote_keys)).await;
    into_scope(wanted, answer)
}

/// The store to ask and the keys to ask it for; `None` when there is nothing to send.
fn plan(
    keys: impl IntoIterator<Item = Key>,
    installed: Option<&Installed>,
) -> Option<(&l2::RedisStore, Wanted)> {
    let installed = installed?;
    let store = installed.remote.as_ref()?;
    let wanted = wanted(keys, installed);
    (!wanted.keys.is_empty()).then_some((store, wanted))
}

/// Pops the scope it pushed when dropped (also on unwind).
struct Entered;

impl Entered {
    fn push(scope: Arc<ScopeData>) -> Self {
        let _ = STACK.try_with(|stack| stack.borrow_mut().push(scope));
        Entered
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = STACK.try_with(|stack| stack.borrow_mut().pop());
    }
}

/// Runs `body` inside a preload scope over `keys`.
///
/// Every key whose value L1 lacks is fetched with one MGET (in batches of 256 keys, all in one
/// round-trip) before `body` runs; `#[cached]` calls inside `body` for those keys are answered
/// from memory.
///
/// ```
/// use cache_runtime::{cached, preload};
///
/// #[cached(ttl = 60)]
/// fn markup(note_id: u64) -> String { format!("<p>note {note_id}</p>") }
///
/// #[cached(ttl = 60)]
/// fn comments(note_id: u64) -> Vec<String> { vec![format!("first comment on {note_id}")] }
///
/// let page = preload([markup::key(7), comments::key(7)], || {
///     format!("{}{:?}", markup(7), comments(7))
/// });
/// assert!(page.contains("note 7"));
/// ```
///
/// Without Redis configured, or if Redis fails, `body` simply runs with normal calls.
pub fn preload<R>(keys: impl IntoIterator<Item = Key>, body: impl FnOnce() -> R) -> R {
    let scope = Arc::new(fetch(keys));
    let _entered = Entered::push(scope);
    body()
}

/// Awaits `future` inside a preload scope over `keys` (see [`preload`](fn@preload)).
///
/// The scope is entered around every poll of `future`, so it follows the task across the
/// threads of a multi-thread runtime and is invisible to other tasks (including tasks that
/// `future` spawns).
pub async fn preload_async<F: Future>(keys: impl IntoIterator<Item = Key>, future: F) -> F::Output {
    let scope = Arc::new(fetch_async(keys).await);
    Scoped {
        scope,
        future: Box::pin(future),
    }
    .await
}

/// A future that enters its scope around each poll.
struct Scoped<F> {
    scope: Arc<ScopeData>,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _entered = Entered::push(self.scope.clone());
        self.future.as_mut().poll(cx)
    }
}

/// `preload!(keys => expr)` runs `expr` in a preload scope;
/// `preload!(keys => async move { .. })` is a future that runs the block in one.
///
/// ```
/// use cache_runtime::{cached, preload};
///
/// #[cached(ttl = 60)]
/// fn title(id: u32) -> String { format!("title {id}") }
///
/// let t = preload!([title::key(1)] => title(1));
/// assert_eq!(t, "title 1");
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let later = preload!([title::key(2)] => async move { title(2) });
/// assert_eq!(rt.block_on(later), "title 2");
/// ```
#[macro_export]
macro_rules! preload {
    ($keys:expr => async $($body:tt)*) => {
        $crate::preload_async($keys, async $($body)*)
    };
    ($keys:expr => $body:expr) => {
        $crate::preload($keys, || $body)
    };
}
