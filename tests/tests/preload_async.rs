//! `preload_async(keys, future)` and `preload!(keys => async move { .. })` against a real
//! Redis: the scope follows its task from poll to poll, whichever thread polls it, and no
//! other task sees it (neither concurrent tasks nor tasks it spawns).
//!
//! As in `preload.rs`, values get into Redis through a writer function sharing the reader's
//! cache `name`, so the reader's L1 starts cold and its body never runs if Redis answers.
// The guard from `with_redis` only keeps tests that install the process-wide config apart;
// no task of a test ever waits for it.
#![allow(clippy::await_holding_lock)]

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

use cache_runtime::{cached, preload_async, Key};
use integration_tests::{with_redis, RedisServer};
use tokio::sync::Barrier;
use tokio::task::yield_now;

/// An async `$reader` and a sync `$writer` sharing the cache name `$name`; `$runs` counts
/// `$reader`'s body.
macro_rules! async_fragment {
    ($reader:ident, $writer:ident, $runs:ident, $name:literal) => {
        static $runs: AtomicUsize = AtomicUsize::new(0);

        #[cached(ttl = 60, name = $name)]
        async fn $reader(n: u64) -> String {
            $runs.fetch_add(1, SeqCst);
            format!("{} {n}", $name)
        }

        #[cached(ttl = 60, name = $name)]
        fn $writer(n: u64) -> String {
            format!("{} {n}", $name)
        }
    };
}

fn mget_and_get(server: &RedisServer) -> (u64, u64) {
    (server.calls("mget"), server.calls("get"))
}

async_fragment!(moving, write_moving, MOVING_RUNS, "preload_async::moving");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scope_follows_its_task_across_await_points() {
    let (_guard, server) = with_redis("follows");
    for n in 0..20 {
        write_moving(n);
    }
    server.reset_stats();

    let values = tokio::spawn(preload_async((0..20).map(moving::key), async {
        let mut values = Vec::new();
        for n in 0..20 {
            yield_now().await; // the task may resume on another worker
            values.push(moving(n).await);
        }
        values
    }))
    .await
    .unwrap();

    assert_eq!(values[19], "preload_async::moving 19");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(moving::stats().scope_hits, 20);
    assert_eq!(MOVING_RUNS.load(SeqCst), 0);
}

/// Wakes the thread that drives [`poll_each_time_on_a_new_thread`].
struct Wakeup(mpsc::Sender<()>);

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(());
    }
}

/// Drives `future` to completion polling it each time on a new thread (inside `rt`'s
/// context, for Redis' I/O), so every await point moves it to another thread for certain.
fn poll_each_time_on_a_new_thread<F>(rt: &tokio::runtime::Handle, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    poll_on_new_threads(rt, future, false)
}

/// [`poll_each_time_on_a_new_thread`], but the first poll runs on this thread.
fn poll_here_then_on_new_threads<F>(rt: &tokio::runtime::Handle, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    poll_on_new_threads(rt, future, true)
}

fn poll_on_new_threads<F>(rt: &tokio::runtime::Handle, future: F, first_here: bool) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let (woken, wakeups) = mpsc::channel();
    let waker = Waker::from(Arc::new(Wakeup(woken)));
    let mut future = pin!(future);
    let mut here = first_here;
    loop {
        let mut poll = || {
            let _context = rt.enter();
            future.as_mut().poll(&mut Context::from_waker(&waker))
        };
        let poll = if std::mem::take(&mut here) {
            poll()
        } else {
            std::thread::scope(|threads| threads.spawn(poll).join().expect("poll panicked"))
        };
        match poll {
            Poll::Ready(output) => return output,
            Poll::Pending => wakeups.recv().expect("the waker lives here"),
        }
    }
}

async_fragment!(
    hopping,
    write_hopping,
    HOPPING_RUNS,
    "preload_async::hopping"
);

#[test]
fn the_scope_is_seen_when_every_poll_runs_on_a_different_thread() {
    let (_guard, server) = with_redis("hopping");
    for n in 0..10 {
        write_hopping(n);
    }
    server.reset_stats();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let threads = poll_each_time_on_a_new_thread(
        rt.handle(),
        preload_async((0..10).map(hopping::key), async {
            let mut threads = HashSet::<ThreadId>::new();
            for n in 0..10 {
                yield_now().await;
                threads.insert(std::thread::current().id());
                assert_eq!(hopping(n).await, format!("preload_async::hopping {n}"));
            }
            threads
        }),
    );

    assert_eq!(threads.len(), 10, "each call ran on a thread of its own");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(hopping::stats().scope_hits, 10);
    assert_eq!(HOPPING_RUNS.load(SeqCst), 0);
}

static KEPT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// An L1 of 10 entries that lets the least recently used go.
#[cached(ttl = 60, name = "preload_async::kept", capacity = 10, policy = "lru")]
async fn kept(n: u64) -> String {
    KEPT_RUNS.fetch_add(1, SeqCst);
    format!("computed {n}")
}

#[cached(ttl = 60, name = "preload_async::kept")]
fn write_kept(n: u64) -> String {
    format!("stored {n}")
}

#[test]
fn a_scope_that_waits_for_redis_keeps_the_values_its_threads_front_table_held() {
    let (_guard, server) = with_redis("kept");
    for n in 0..11 {
        write_kept(n);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Read from Redis into L1, then hit in L1, which fills this thread's front table.
    rt.block_on(async {
        for _ in 0..2 {
            for n in 0..10 {
                kept(n).await;
            }
        }
    });
    // Another thread computes 300 other keys: L1 (10 entries, LRU) lets the ten go, and only
    // this thread's front table still holds them.
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        handle.block_on(async {
            for n in 100..400 {
                kept(n).await;
            }
        })
    })
    .join()
    .unwrap();
    server.reset_stats();

    // Planned here (key 10 is fetched, so the scope waits for Redis), resumed elsewhere.
    let values = poll_here_then_on_new_threads(
        rt.handle(),
        preload_async((0..11).map(kept::key), async {
            let mut values = Vec::new();
            for n in 0..11 {
                values.push(kept(n).await);
            }
            values
        }),
    );

    assert_eq!(values[0], "stored 0");
    assert_eq!(values[10], "stored 10");
    assert_eq!(
        mget_and_get(&server),
        (1, 0),
        "key 10 in the MGET; the ten this thread's front table held, from the scope"
    );
    assert_eq!(
        KEPT_RUNS.load(SeqCst),
        300,
        "only the other keys were computed"
    );
    // L1 had let them go: another thread reads them with GETs.
    let handle = rt.handle().clone();
    std::thread::spawn(move || handle.block_on(async { kept(0).await }))
        .join()
        .unwrap();
    assert_eq!(
        server.calls("get"),
        1,
        "L1 still held key 0, so this test showed nothing"
    );
}

async_fragment!(shared, write_shared, SHARED_RUNS, "preload_async::shared");

const TASKS: u64 = 32;
const OWN_KEYS: u64 = 4;

/// Task `t`'s scope: keys it calls itself, a key only task `t - 1` calls, and a key only the
/// task without a scope calls.
fn own_keys(t: u64) -> impl Iterator<Item = u64> {
    (0..OWN_KEYS).map(move |i| t * 100 + i)
}
fn neighbours_key(t: u64) -> u64 {
    t * 100 + 50
}
fn unscoped_key(t: u64) -> u64 {
    t * 100 + 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_see_only_their_own_scopes() {
    let (_guard, server) = with_redis("concurrent");
    for t in 0..TASKS {
        for n in own_keys(t).chain([neighbours_key(t), unscoped_key(t)]) {
            write_shared(n);
        }
    }
    server.reset_stats();
    // Every call below happens while all 32 scopes are open.
    let all_open = Arc::new(Barrier::new(TASKS as usize + 1));
    let all_done = Arc::new(Barrier::new(TASKS as usize + 1));

    let scoped: Vec<_> = (0..TASKS)
        .map(|t| {
            let (all_open, all_done) = (all_open.clone(), all_done.clone());
            let keys: Vec<Key> = own_keys(t)
                .chain([neighbours_key(t), unscoped_key(t)])
                .map(shared::key)
                .collect();
            tokio::spawn(preload_async(keys, async move {
                all_open.wait().await;
                let mut values = Vec::new();
                for n in own_keys(t).chain([neighbours_key((t + 1) % TASKS)]) {
                    yield_now().await;
                    values.push(shared(n).await);
                }
                all_done.wait().await;
                values
            }))
        })
        .collect();
    let unscoped = tokio::spawn(async move {
        all_open.wait().await;
        let mut values = Vec::new();
        for t in 0..TASKS {
            yield_now().await;
            values.push(shared(unscoped_key(t)).await);
        }
        all_done.wait().await;
        values
    });

    for (t, task) in (0..TASKS).zip(scoped) {
        let values = task.await.unwrap();
        let neighbours = format!("preload_async::shared {}", neighbours_key((t + 1) % TASKS));
        assert_eq!(values.last(), Some(&neighbours));
    }
    assert_eq!(unscoped.await.unwrap().len(), TASKS as usize);
    assert_eq!(server.calls("mget"), TASKS, "one per scope");
    assert_eq!(shared::stats().scope_hits, TASKS * OWN_KEYS);
    assert_eq!(
        server.calls("get"),
        2 * TASKS,
        "a key in another task's scope is read from Redis, by scoped and unscoped tasks alike"
    );
    assert_eq!(SHARED_RUNS.load(SeqCst), 0);
}

async_fragment!(
    spawned,
    write_spawned,
    SPAWNED_RUNS,
    "preload_async::spawned"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_spawned_inside_a_scope_does_not_inherit_it() {
    let (_guard, server) = with_redis("spawned");
    write_spawned(1);
    write_spawned(2);
    server.reset_stats();

    let (from_child, from_scope) = preload_async([spawned::key(1), spawned::key(2)], async {
        let child = tokio::spawn(spawned(1)).await.unwrap();
        (child, spawned(2).await)
    })
    .await;

    assert_eq!(from_child, "preload_async::spawned 1");
    assert_eq!(from_scope, "preload_async::spawned 2");
    assert_eq!(mget_and_get(&server), (1, 1), "the child asked Redis");
    assert_eq!(spawned::stats().scope_hits, 1);
    assert_eq!(spawned::stats().l2_hits, 1);
    assert_eq!(SPAWNED_RUNS.load(SeqCst), 0);
}

async_fragment!(
    by_macro,
    write_by_macro,
    BY_MACRO_RUNS,
    "preload_async::by_macro"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_preload_macro_runs_an_async_block_in_a_scope() {
    let (_guard, server) = with_redis("macro");
    write_by_macro(1);
    write_by_macro(2);
    server.reset_stats();

    let value = cache_runtime::preload!([by_macro::key(1), by_macro::key(2)] => async move {
        let first = by_macro(1).await;
        yield_now().await;
        first + "|" + &by_macro(2).await
    })
    .await;

    assert_eq!(value, "preload_async::by_macro 1|preload_async::by_macro 2");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(by_macro::stats().scope_hits, 2);
    assert_eq!(BY_MACRO_RUNS.load(SeqCst), 0);
}
