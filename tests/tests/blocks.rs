//! `cached_block!` against a real Redis: a block runs once per key, its entries live for its
//! `ttl` in L1 and Redis, and a preload scope over `block_key(name, &key)` fetches them with
//! one MGET.
//!
//! Values get into Redis through a `#[cached]` writer function with the block's `name`: its
//! key for `id` is the block's key for `key = id`, so the block starts with a cold L1.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{block_key, cached, cached_block, preload, preload_async};
use integration_tests::{with_redis, RedisServer};

fn traffic(server: &RedisServer) -> [(&'static str, u64); 3] {
    ["mget", "get", "set"].map(|command| (command, server.calls(command)))
}

static CARD_RUNS: AtomicUsize = AtomicUsize::new(0);

fn card(user: u64) -> String {
    cached_block!(
        name = "blocks::card",
        ttl = 60,
        key = user,
        value = String,
        {
            CARD_RUNS.fetch_add(1, SeqCst);
            format!("<aside>user {user}</aside>")
        }
    )
}

#[cached(ttl = 60, name = "blocks::card")]
fn write_card(user: u64) -> String {
    format!("<aside>stored {user}</aside>")
}

#[test]
fn a_block_runs_once_per_key_and_reads_what_redis_holds() {
    let (_guard, server) = with_redis("blocks-hit");
    assert_eq!(block_key("blocks::card", &1_u64), write_card::key(1));

    // A miss everywhere: one GET, the block, one SET.
    assert_eq!(card(1), "<aside>user 1</aside>");
    assert_eq!(CARD_RUNS.load(SeqCst), 1);
    assert_eq!(traffic(&server), [("mget", 0), ("get", 1), ("set", 1)]);
    // A hit in memory: nothing sent, the block does not run.
    assert_eq!(card(1), "<aside>user 1</aside>");
    assert_eq!(CARD_RUNS.load(SeqCst), 1);
    assert_eq!(traffic(&server), [("mget", 0), ("get", 1), ("set", 1)]);
    // Another key is another entry.
    assert_eq!(card(2), "<aside>user 2</aside>");
    assert_eq!(CARD_RUNS.load(SeqCst), 2);

    // What another process stored is read, not recomputed.
    write_card(3);
    server.reset_stats();
    assert_eq!(card(3), "<aside>stored 3</aside>");
    assert_eq!(CARD_RUNS.load(SeqCst), 2);
    assert_eq!(traffic(&server), [("mget", 0), ("get", 1), ("set", 0)]);

    // Invalidated: gone from L1 and Redis, so the block runs again.
    cache_runtime::block_invalidate("blocks::card", &1_u64);
    assert_eq!(server.calls("del"), 1);
    assert_eq!(card(1), "<aside>user 1</aside>");
    assert_eq!(CARD_RUNS.load(SeqCst), 3);
}

static SHORT_RUNS: AtomicUsize = AtomicUsize::new(0);

fn short_lived(n: u32) -> u32 {
    cached_block!(
        name = "blocks::short",
        ttl = Duration::from_millis(300),
        key = n,
        value = u32,
        {
            SHORT_RUNS.fetch_add(1, SeqCst);
            n * 2
        }
    )
}

#[test]
fn a_block_entry_lives_for_its_ttl() {
    let (_guard, server) = with_redis("blocks-ttl");
    let before = Instant::now();
    assert_eq!(short_lived(4), 8);
    // The entry was stored before this instant, so it expires at most a ttl after it.
    let stored = Instant::now();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(block_key("blocks::short", &4_u32).to_string())
        .query(&mut server.connection())
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 300,
        "stored in Redis for the ttl, got {pttl} ms"
    );
    assert_eq!(short_lived(4), 8);
    assert!(
        before.elapsed() < Duration::from_millis(300),
        "too slow to check the hit"
    );
    assert_eq!(SHORT_RUNS.load(SeqCst), 1, "a hit within the ttl");

    // Waiting out the lifetime is the behaviour under test.
    // (Clocks count whole milliseconds: one more is waited.)
    let expired = stored + Duration::from_millis(301);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    assert_eq!(short_lived(4), 8);
    assert_eq!(SHORT_RUNS.load(SeqCst), 2, "recomputed after the ttl");
}

static COMMENT_RUNS: AtomicUsize = AtomicUsize::new(0);

fn comments(note: u64) -> String {
    cached_block!(
        name = "blocks::comments",
        ttl = 60,
        key = note,
        value = String,
        {
            COMMENT_RUNS.fetch_add(1, SeqCst);
            format!("<ul>comments of {note}</ul>")
        }
    )
}

#[cached(ttl = 60, name = "blocks::comments")]
fn write_comments(note: u64) -> String {
    format!("<ul>stored {note}</ul>")
}

#[test]
fn a_preload_scope_over_block_keys_costs_one_mget() {
    let (_guard, server) = with_redis("blocks-preload");
    for note in 0..10 {
        write_comments(note);
    }
    server.reset_stats();

    let keys = (0..10_u64).map(|note| block_key("blocks::comments", &note));
    let page = preload(keys, || (0..10).map(comments).collect::<String>());

    assert!(page.ends_with("<ul>stored 9</ul>"));
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 0)]);
    assert_eq!(
        COMMENT_RUNS.load(SeqCst),
        0,
        "every block came from the scope"
    );
}

static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

async fn teaser(note: u64) -> String {
    cached_block!(async name = "blocks::teaser", ttl = 60, key = note, value = String, {
        ASYNC_RUNS.fetch_add(1, SeqCst);
        tokio::task::yield_now().await;
        format!("<a>{note}</a>")
    })
    .await
}

#[cached(ttl = 60, name = "blocks::teaser")]
fn write_teaser(note: u64) -> String {
    format!("<a>stored {note}</a>")
}

#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_block_awaits_inside_and_follows_preload_scopes() {
    let (_guard, server) = with_redis("blocks-async");
    assert_eq!(teaser(1).await, "<a>1</a>");
    assert_eq!(teaser(1).await, "<a>1</a>");
    assert_eq!(ASYNC_RUNS.load(SeqCst), 1);
    assert_eq!(traffic(&server), [("mget", 0), ("get", 1), ("set", 1)]);

    write_teaser(2);
    server.reset_stats();
    let keys = [block_key("blocks::teaser", &2_u64)];
    assert_eq!(preload_async(keys, teaser(2)).await, "<a>stored 2</a>");
    assert_eq!(traffic(&server), [("mget", 1), ("get", 0), ("set", 0)]);
    assert_eq!(ASYNC_RUNS.load(SeqCst), 1);
}
