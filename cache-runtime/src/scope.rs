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
//! A call asks L1, then the scope: the first call for a value the scope holds decodes it and
//! backfills L1, later calls find it in L1 (or, if L1 could not keep it, in the scope again;
//! never in Redis). A value another caller put in L1 since the MGET wins over the scope's,
//! and a key another process changed since the scope asked is read from the store again
//! (see `coherence`). A call whose key nothing touched since planning takes the slot's
//! answer without asking L1 (see `writes`).
//! A key MGET found absent is remembered as absent: the call inside the scope runs its body
//! and writes the value without asking Redis again. `invalidate` or `clear_local` of a
//! function inside a scope voids that function's answers in it: its calls then go to L1 and
//! Redis as without the scope.
//!
//! Keys of `local` functions, duplicates and keys L1 already holds are left out of the MGET.
//! The scope keeps a reference to the value of each key L1 held, so a call inside finds it
//! even if L1 evicted it in between (under load, other requests fill L1 all the time), rather
//! than making a round-trip of its own.
//! A key made by its function's companion (`f::key`, `f::key_for`, ...) is first looked up
//! in this thread's front table, the way the call will look for it: one this thread holds
//! fresh is left out without asking L1.
//! If Redis fails, the scope is empty and the calls inside behave as without it (the failure
//! is counted in each function's `l2_errors`).

use std::cell::RefCell;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::clock;
use crate::config::{self, Installed};
use crate::hash::FastHash;
use crate::key::{Held, Key, Marks, RemoteName};
use crate::store::{Budget, Failure, Op, Reply, SharedStore};
use crate::sync::off_the_runtime;

/// What a scope knows of one key.
enum Answer {
    /// Asked of the store, which has not answered (or failed).
    Pending,
    /// The store's answer: the stored bytes, `None` when it had nothing under the key.
    Stored(Option<Vec<u8>>),
    /// L1 (or, for a `preload_async` that waits for the store, this thread's front table)
    /// held the value fresh when the scope was planned, so the store was not asked; the scope
    /// keeps it for the calls inside, in case it is gone from there before they are made.
    Held(Held),
}

/// One key of a scope: asked of the store, or held in memory.
struct Slot {
    key: Key,
    /// The owner's identity (`KeyOwner::id`).
    owner: usize,
    /// The owner's epoch, read before its L1 was asked and the MGET sent: an `invalidate` or
    /// `clear_local` since then has bumped it, and voids this answer.
    epoch: u64,
    /// When the scope began planning, before the MGET was sent ([`clock::now`]): the bytes are
    /// no newer (see [`crate::coherence`]).
    asked_at: u64,
    hash: u64,
    /// The key's counts in its function, read before L1 or a front table was asked and
    /// before the MGET (`None` for a key that does not say how its call probes): a call that
    /// reads the same ones is answered by the slot before L1 (see [`SlotRef::unchanged`]).
    marks: Option<Marks>,
    answer: Answer,
}

impl Slot {
    /// Whether the slot answers a call made at `epoch`.
    fn answers(&self, epoch: u64) -> bool {
        self.epoch == epoch && !matches!(self.answer, Answer::Pending)
    }
}

/// The keys a scope asks one store for: positions in [`ScopeData::slots`].
struct Batch {
    store: Arc<dyn SharedStore>,
    slots: Vec<usize>,
}

impl Batch {
    /// The keys' names in the store, in the batch's order.
    fn names<'a>(&self, scope: &'a ScopeData, prefix: &'a str) -> Vec<RemoteName<'a>> {
        self.slots
            .iter()
            .map(|&at| scope.slots[at].key.remote_name(prefix))
            .collect()
    }
}

/// What one scope holds: a slot per fetched key, indexed by owner and arguments.
#[derive(Default)]
struct ScopeData {
    slots: Vec<Slot>,
    /// Positions in `slots`.
    index: HashTable<u32>,
    /// The slot after the one a call last found: a page usually calls its fragments in the
    /// order it named their keys, so this one is looked at before the index.
    next: AtomicUsize,
}

fn slot_hash(owner: usize, args: &str) -> u64 {
    let mut hasher = FastHash.build_hasher();
    hasher.write_usize(owner);
    hasher.write(args.as_bytes());
    hasher.finish()
}

impl ScopeData {
    /// The scope to enter around the body, `None` when it has no slots: it would answer
    /// nothing, and the body runs as outside it.
    fn worth_entering(self) -> Option<Arc<Self>> {
        (!self.slots.is_empty()).then(|| Arc::new(self))
    }

    fn position(&self, owner: usize, args: &str, hash: u64) -> Option<usize> {
        let found = self.index.find(hash, |&at| {
            let slot = &self.slots[at as usize];
            slot.owner == owner && slot.key.args() == args
        })?;
        Some(*found as usize)
    }

    /// The position of the slot for `args` of `owner`, looked for where the last call's
    /// slot ended first (see [`ScopeData::next`]).
    fn position_for_call(&self, owner: usize, args: &str) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let next = self.next.load(Ordering::Relaxed);
        let at = match self.slots.get(next) {
            Some(slot) if slot.owner == owner && slot.key.args() == args => next,
            _ => self.position(owner, args, slot_hash(owner, args))?,
        };
        self.next.store(at + 1, Ordering::Relaxed);
        Some(at)
    }

    /// Stores a store's answer for `batch`, one value per slot in order. A failed request
    /// leaves the batch's slots unanswered (so calls for them behave as without the scope)
    /// and counts one `l2_errors` per function.
    fn fill(&mut self, batch: &Batch, answer: Result<Reply, Failure>) {
        let keys = batch.slots.len();
        match answer {
            Ok(Reply::Values(values)) if values.len() == keys => {
                for (&at, bytes) in batch.slots.iter().zip(values) {
                    self.slots[at].answer = Answer::Stored(bytes);
                }
                return;
            }
            Ok(other) => {
                let failure = format!("{other:?} for {keys} keys");
                tracing::debug!(%failure, keys, "preload failed; each call inside asks the store for its own key");
            }
            // The calls will find the breaker open too, and send nothing.
            Err(Failure::Skipped) => tracing::debug!(
                keys,
                "preload skipped: circuit breaker open; calls inside compute without the store while it is"
            ),
            Err(failure) => tracing::debug!(
                %failure,
                keys,
                "preload failed; each call inside asks the store for its own key (or computes, once the breaker opens)"
            ),
        }
        let mut counted = Vec::new();
        for &at in &batch.slots {
            let slot = &self.slots[at];
            if !counted.contains(&slot.owner) {
                counted.push(slot.owner);
                slot.key.owner().count_l2_error();
            }
        }
    }
}

thread_local! {
    static STACK: RefCell<Vec<Arc<ScopeData>>> = const { RefCell::new(Vec::new()) };
}

/// The innermost scope of this thread holding a slot for `args` of function `owner`, and
/// the slot's position. The scope is shared out of the stack, so nothing stays borrowed
/// while the caller decodes and backfills.
fn innermost(owner: usize, args: &str) -> Option<(Arc<ScopeData>, usize)> {
    STACK
        .try_with(|stack| {
            let stack = stack.try_borrow().ok()?;
            stack.iter().rev().find_map(|scope| {
                let at = scope.position_for_call(owner, args)?;
                Some((Arc::clone(scope), at))
            })
        })
        .ok()
        .flatten()
}

/// A slot of a scope this thread (or task) is in, found for a call.
pub(crate) struct SlotRef {
    scope: Arc<ScopeData>,
    at: usize,
}

/// The slot of the innermost scope of this thread for `args` of function `owner`.
#[inline]
pub(crate) fn find(owner: usize, args: &str) -> Option<SlotRef> {
    let (scope, at) = innermost(owner, args)?;
    Some(SlotRef { scope, at })
}

impl SlotRef {
    fn slot(&self) -> &Slot {
        &self.scope.slots[self.at]
    }

    /// Whether a call that reads these counts of its key sees the key as the scope planned
    /// it: nothing replaced the value since (a `put`, a refresh, another process's change)
    /// and L1 got no other value, so the slot answers before L1 and L1 is not asked again.
    /// The function's own epoch (invalidations) is checked by [`serve`](Self::serve).
    #[inline]
    pub(crate) fn unchanged(&self, now: Marks) -> bool {
        self.slot().marks == Some(now)
    }

    /// What the slot says about the call's key, lending what it holds to `serve`. `epoch`
    /// is the function's epoch as the call read it before any lookup.
    pub(crate) fn serve<T>(&self, epoch: u64, serve: impl FnOnce(Found<'_>) -> T) -> Preloaded<T> {
        let slot = self.slot();
        if !slot.answers(epoch) {
            return Preloaded::Unknown;
        }
        match &slot.answer {
            Answer::Pending => Preloaded::Unknown,
            Answer::Stored(None) => Preloaded::Absent,
            Answer::Stored(Some(bytes)) => Preloaded::Served(serve(Found::Stored {
                bytes,
                asked_at: slot.asked_at,
            })),
            Answer::Held(held) => Preloaded::Served(serve(Found::Held {
                held,
                asked_at: slot.asked_at,
            })),
        }
    }
}

/// What a scope holds for a call's key, lent to [`SlotRef::serve`]'s function.
pub(crate) enum Found<'a> {
    /// The store's bytes, and when they were asked for.
    Stored { bytes: &'a [u8], asked_at: u64 },
    /// The value L1 (or a front table) held when the scope began planning, at `asked_at`.
    Held { held: &'a Held, asked_at: u64 },
}

/// What the scopes of this thread (or task) say about one call's key.
pub(crate) enum Preloaded<T> {
    /// A scope held the value: the result of `serve` on it.
    Served(T),
    /// A scope's MGET found nothing under the key: compute without asking Redis again.
    Absent,
    /// No scope can answer: none asked for the key, or the function was invalidated since.
    Unknown,
}

/// Whether a scope of this thread holds any slot (one that [`known`] may find).
fn any_enclosing() -> bool {
    STACK
        .try_with(|stack| {
            stack
                .try_borrow()
                .is_ok_and(|stack| stack.iter().any(|scope| !scope.slots.is_empty()))
        })
        .unwrap_or(false)
}

/// Whether an enclosing scope already answered for `args` of `owner` at this `epoch`.
fn known(owner: usize, epoch: u64, args: &str) -> bool {
    innermost(owner, args).is_some_and(|(scope, at)| scope.slots[at].answers(epoch))
}

/// The slots of a new scope and, per store, the keys to ask it for: a slot for every key that
/// is not `local` and not known to an enclosing scope, once; the store is asked for those L1
/// does not hold fresh (the slot keeps L1's value for the others). A key this thread's front
/// table holds fresh gets a slot only if the work may move to another thread while the scope
/// waits for the store (`may_move`: an async task may; see `layered::warm`). `None` when no
/// key needs a slot.
fn plan(
    keys: impl IntoIterator<Item = Key>,
    installed: &Installed,
    may_move: bool,
) -> Option<(ScopeData, Vec<Batch>)> {
    let keys = keys.into_iter();
    let mut planning = Planning {
        expected: keys.size_hint().0,
        scope: ScopeData::default(),
        batches: Vec::new(),
        // Asked once: enclosing scopes do not change while this one is planned.
        enclosing: any_enclosing(),
        // One reading for every key: earlier than each key's own, still before the MGET, so
        // the bytes are no newer (an earlier time only keeps fewer values, see `coherence`).
        asked_at: clock::now(),
        installed,
    };
    // Keys the calls will find in this thread's front table, as long as they run on it.
    let mut in_front: Vec<Key> = Vec::new();
    for key in keys {
        if key.owner().is_local() {
            continue;
        }
        if key.fresh_in_front() {
            if may_move {
                if in_front.capacity() == 0 {
                    in_front.reserve(planning.expected);
                }
                in_front.push(key);
            }
            continue;
        }
        planning.add(key, false);
    }
    // Waiting for the store, an async task may resume on another thread, whose front table
    // does not hold these, while L1 may have let them go: keep their values.
    if !planning.batches.is_empty() {
        for key in in_front {
            planning.add(key, true);
        }
    }
    let Planning { scope, batches, .. } = planning;
    (!scope.slots.is_empty()).then_some((scope, batches))
}

/// A scope being planned (see [`plan`]).
struct Planning<'a> {
    expected: usize,
    scope: ScopeData,
    batches: Vec<Batch>,
    enclosing: bool,
    asked_at: u64,
    installed: &'a Installed,
}

impl Planning<'_> {
    /// Gives `key` a slot unless it is a duplicate, its store is not installed or an
    /// enclosing scope knows it: holding this thread's front-table value (`in_front`), else
    /// L1's, else asked of the key's store.
    fn add(&mut self, key: Key, in_front: bool) {
        let owner = key.owner();
        let Some(store) = self.installed.store(owner.store_name()) else {
            return;
        };
        let (id, args) = (owner.id(), key.args());
        let hash = slot_hash(id, args);
        let (scope, expected) = (&mut self.scope, self.expected);
        // Allocated for the first key to ask about: a warm page needs neither.
        if scope.slots.capacity() == 0 {
            scope.slots.reserve(expected);
            let slots = &scope.slots;
            scope.index.reserve(expected, |&at| slots[at as usize].hash);
        }
        let slots = &scope.slots;
        let Entry::Vacant(vacant) = scope.index.entry(
            hash,
            |&at| slots[at as usize].owner == id && slots[at as usize].key.args() == args,
            |&at| slots[at as usize].hash,
        ) else {
            // A duplicate.
            return;
        };
        // Read before L1 is asked (see `Slot::epoch`).
        let epoch = owner.epoch();
        if self.enclosing && known(id, epoch, args) {
            return;
        }
        // Read before the value is looked for (see `Slot::marks`).
        let marks = key.marks();
        let at = scope.slots.len();
        vacant.insert(at as u32);
        let held = if in_front { key.front_value() } else { None };
        // A call the slot answers first does not look in L1, so the read moka counts is made
        // here instead.
        let read = marks.is_some();
        let answer = match held.or_else(|| owner.held(args, read)) {
            Some(held) => Answer::Held(held),
            None => {
                let same = |batch: &&mut Batch| {
                    Arc::as_ptr(&batch.store) as *const () == Arc::as_ptr(store) as *const ()
                };
                match self.batches.iter_mut().find(same) {
                    Some(batch) => batch.slots.push(at),
                    None => {
                        let mut slots = Vec::with_capacity(expected);
                        slots.push(at);
                        self.batches.push(Batch {
                            store: Arc::clone(store),
                            slots,
                        });
                    }
                }
                Answer::Pending
            }
        };
        scope.slots.push(Slot {
            key,
            owner: id,
            epoch,
            asked_at: self.asked_at,
            hash,
            marks,
            answer,
        });
    }
}

fn fetch(keys: impl IntoIterator<Item = Key>) -> ScopeData {
    let Some(installed) = config::current() else {
        return ScopeData::default();
    };
    // Sync work stays on this thread, and finds in its front table what the plan found.
    let Some((mut scope, batches)) = plan(keys, &installed, false) else {
        return ScopeData::default();
    };
    // An empty list when L1 held every key: the slots keep L1's values, and nothing is sent.
    for batch in &batches {
        let answer = {
            let names = batch.names(&scope, &installed.prefix);
            off_the_runtime(|| batch.store.run(Op::GetMany(&names), &Budget::default()))
        };
        scope.fill(batch, answer);
    }
    scope
}

async fn fetch_async(keys: impl IntoIterator<Item = Key>) -> ScopeData {
    let Some(installed) = config::current() else {
        return ScopeData::default();
    };
    let Some((mut scope, batches)) = plan(keys, &installed, true) else {
        return ScopeData::default();
    };
    for batch in &batches {
        let budget = Budget::default();
        let answer = {
            let names = batch.names(&scope, &installed.prefix);
            batch.store.run_async(Op::GetMany(&names), &budget).await
        };
        scope.fill(batch, answer);
    }
    scope
}

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
    let _entered = fetch(keys).worth_entering().map(Entered::push);
    body()
}

/// Awaits `future` inside a preload scope over `keys` (see [`preload`](fn@preload)).
///
/// The scope is entered around every poll of `future`, so it follows the task across the
/// threads of a multi-thread runtime and is invisible to other tasks (including tasks that
/// `future` spawns).
pub async fn preload_async<F: Future>(keys: impl IntoIterator<Item = Key>, future: F) -> F::Output {
    Scoped {
        scope: fetch_async(keys).await.worth_entering(),
        future: Box::pin(future),
    }
    .await
}

/// A future that enters its scope around each poll.
struct Scoped<F> {
    scope: Option<Arc<ScopeData>>,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _entered = self.scope.clone().map(Entered::push);
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
