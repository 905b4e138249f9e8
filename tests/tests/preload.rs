//! `preload(keys, || ..)` and `preload!(keys => expr)` against a real Redis: one MGET per
//! scope, no GET for the keys inside it, and every awkward input (empty, duplicate, local,
//! unused and already-cached keys, nested scopes, a dead Redis, a thousand keys).
//!
//! Each test has its own functions, so their counters start at zero. Values get into Redis
//! through a writer function that shares the reader's cache `name` (and so its Redis
//! entries) but not its L1: the reader starts cold, and its body never runs if Redis answers.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::MutexGuard;
use std::thread;
use std::time::{Duration, Instant};

use cache_runtime::{cached, preload, Key};
use integration_tests::{with_redis, RedisServer};

/// `$reader` and `$writer` share the cache name `$name`; `$runs` counts `$reader`'s body.
macro_rules! fragment {
    ($reader:ident, $writer:ident, $runs:ident, $name:literal) => {
        static $runs: AtomicUsize = AtomicUsize::new(0);

        #[cached(ttl = 60, name = $name)]
        fn $reader(n: u64) -> String {
            $runs.fetch_add(1, SeqCst);
            format!("{} {n}", $name)
        }

        #[cached(ttl = 60, name = $name)]
        fn $writer(n: u64) -> String {
            format!("{} {n}", $name)
        }
    };
}

/// Like [`fragment!`], but `$reader`'s body says "computed" where `$writer` stores "stored":
/// a value tells where it came from. `$arg = $value` pairs go to `$reader`'s attribute.
macro_rules! told_apart {
    ($reader:ident, $writer:ident, $runs:ident, $name:literal $(, $arg:ident = $value:literal)*) => {
        static $runs: AtomicUsize = AtomicUsize::new(0);

        #[cached(ttl = 600, name = $name $(, $arg = $value)*)]
        fn $reader(n: u64) -> String {
            $runs.fetch_add(1, SeqCst);
            format!("computed {n}")
        }

        #[cached(ttl = 600, name = $name)]
        fn $writer(n: u64) -> String {
            format!("stored {n}")
        }
    };
}

/// Keys Redis looked up (found or not) since the last reset, from `INFO stats`: an MGET of
/// k keys adds k. Shows which keys a scope asked for, not only how many MGETs it sent.
fn keys_looked_up(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut server.connection())
        .expect("INFO stats");
    ["keyspace_hits:", "keyspace_misses:"]
        .iter()
        .map(|field| {
            info.lines()
                .find_map(|line| line.strip_prefix(field)?.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {field} in INFO stats"))
        })
        .sum()
}

/// A fresh Redis (see [`with_redis`]) holding what `write` stores for each of `ns`, with its
/// command counters zeroed afterwards.
fn redis_holding<T>(
    prefix: &str,
    ns: impl IntoIterator<Item = u64>,
    write: impl Fn(u64) -> T,
) -> (MutexGuard<'static, ()>, RedisServer) {
    let (guard, server) = with_redis(prefix);
    for n in ns {
        write(n);
    }
    server.reset_stats();
    (guard, server)
}

fn mget_and_get(server: &RedisServer) -> (u64, u64) {
    (server.calls("mget"), server.calls("get"))
}

fragment!(part, write_part, PART_RUNS, "preload::part");

#[test]
fn fifty_keys_in_redis_cost_one_mget_and_no_get() {
    let (_guard, server) = redis_holding("fifty", 0..50, write_part);

    let values = preload((0..50).map(part::key), || {
        (0..50).map(part).collect::<Vec<_>>()
    });

    assert_eq!(values[49], "preload::part 49");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(part::stats().scope_hits, 50);
    assert_eq!(PART_RUNS.load(SeqCst), 0, "no body ran");
    // The scope backfilled L1: the same calls after it send nothing.
    for n in 0..50 {
        part(n);
    }
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(part::stats().scope_hits, 50);
}

fragment!(markup, write_markup, MARKUP_RUNS, "preload::markup");
fragment!(card, write_card, CARD_RUNS, "preload::card");
fragment!(teaser, write_teaser, TEASER_RUNS, "preload::teaser");

#[test]
fn keys_of_several_functions_share_one_mget() {
    let (_guard, server) = redis_holding("several", 0..5, |n| {
        (write_markup(n), write_card(n), write_teaser(n))
    });
    let keys = (0..5)
        .flat_map(|n| [markup::key(n), card::key(n), teaser::key(n)])
        .collect::<Vec<Key>>();

    let page = preload(keys, || {
        (0..5)
            .map(|n| markup(n) + &card(n) + &teaser(n))
            .collect::<String>()
    });

    assert!(page.ends_with("preload::markup 4preload::card 4preload::teaser 4"));
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(keys_looked_up(&server), 15);
    let hits = [markup::stats(), card::stats(), teaser::stats()].map(|s| s.scope_hits);
    assert_eq!(hits, [5, 5, 5]);
    let runs = [&MARKUP_RUNS, &CARD_RUNS, &TEASER_RUNS].map(|runs| runs.load(SeqCst));
    assert_eq!(runs, [0, 0, 0]);
}

fragment!(left, write_left, LEFT_RUNS, "preload::left");
fragment!(right, write_right, RIGHT_RUNS, "preload::right");

#[test]
fn calls_in_another_order_than_the_keys_are_answered_from_the_scope() {
    // A scope looks first at the slot after the last one a call found (pages usually call in
    // the order they named the keys): calls out of that order, and a slot with the same
    // arguments but another function, must still find their own slots.
    let (_guard, server) = redis_holding("order", 0..6, |n| (write_left(n), write_right(n)));
    let keys = (0..6)
        .flat_map(|n| [left::key(n), right::key(n)])
        .collect::<Vec<Key>>();

    let page = preload(keys, || {
        let mut page = String::new();
        for n in [5, 0, 3] {
            page += &right(n);
            page += &left(n);
        }
        for n in [1, 2, 4] {
            page += &left(n);
            page += &right(n);
        }
        page
    });

    assert!(page.starts_with("preload::right 5preload::left 5preload::right 0"));
    assert!(page.ends_with("preload::left 4preload::right 4"));
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(
        (left::stats().scope_hits, right::stats().scope_hits),
        (6, 6)
    );
    assert_eq!((LEFT_RUNS.load(SeqCst), RIGHT_RUNS.load(SeqCst)), (0, 0));
}

static WARM_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "preload::warm")]
fn warm(n: u64) -> u64 {
    WARM_RUNS.fetch_add(1, SeqCst);
    n * 10
}

#[test]
fn only_the_keys_l1_lacks_are_fetched_and_none_when_it_holds_them_all() {
    let (_guard, server) = redis_holding("warm", 0..4, warm);

    assert_eq!(preload((0..4).map(warm::key), || warm(3)), 30);
    assert_eq!(server.calls("mget"), 0, "L1 holds every key: no MGET");

    assert_eq!(preload((0..6).map(warm::key), || warm(5)), 50);
    assert_eq!(server.calls("mget"), 1);
    assert_eq!(
        keys_looked_up(&server),
        2,
        "the MGET asks for keys 4 and 5 only"
    );
    assert_eq!(server.calls("get"), 0);
    assert_eq!(
        WARM_RUNS.load(SeqCst),
        5,
        "4 to fill Redis, then key 5 (absent) inside"
    );
}

const SHORT_TTL: Duration = Duration::from_millis(200);

#[cached(ttl = SHORT_TTL, name = "preload::short")]
fn short(n: u64) -> u64 {
    n
}

#[cached(ttl = SHORT_TTL, stale = 60, name = "preload::short_stale")]
fn short_stale(n: u64) -> u64 {
    n
}

#[test]
fn an_l1_entry_past_its_deadline_is_fetched_again_even_while_kept_stale() {
    let (_guard, server) = with_redis("expired");
    let stored = Instant::now();
    short(1);
    short_stale(1);
    server.reset_stats();
    let keys = || [short::key(1), short_stale::key(1)];

    preload(keys(), || ());
    assert_eq!(server.calls("mget"), 0, "both fresh in L1");

    // Past both deadlines (the margin covers the millisecond rounding of expiry times): one
    // entry is gone, the other is kept in L1 for its stale window, yet no longer fresh.
    let expired = stored + SHORT_TTL + Duration::from_millis(50);
    thread::sleep(expired.saturating_duration_since(Instant::now()));
    preload(keys(), || ());
    assert_eq!(server.calls("mget"), 1);
    assert_eq!(keys_looked_up(&server), 2, "both keys are asked for");
}

static ABSENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "preload::absent")]
fn absent(n: u64) -> String {
    ABSENT_RUNS.fetch_add(1, SeqCst);
    format!("preload::absent {n}")
}

#[test]
fn a_key_the_mget_found_absent_runs_its_body_once_with_no_get_and_one_set() {
    let (_guard, server) = with_redis("absent");

    let (first, second) = preload([absent::key(1)], || (absent(1), absent(1)));

    assert_eq!(
        (first.as_str(), second.as_str()),
        ("preload::absent 1", "preload::absent 1")
    );
    assert_eq!(ABSENT_RUNS.load(SeqCst), 1);
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(server.calls("set"), 1, "the computed value is written");
    assert_eq!(absent::stats().misses, 1);
}

told_apart!(revoked, write_revoked, REVOKED_RUNS, "preload::revoked");

#[test]
fn invalidating_inside_a_scope_voids_the_functions_preloaded_values() {
    let (_guard, server) = redis_holding("revoked", [1, 2], write_revoked);

    let (first, second) = preload([revoked::key(1), revoked::key(2)], || {
        revoked::invalidate(1);
        (revoked(1), revoked(2))
    });

    assert_eq!(first, "computed 1", "the invalidated value is not served");
    assert_eq!(second, "stored 2", "the function's other key is read again");
    assert_eq!(revoked::stats().scope_hits, 0);
    assert_eq!(REVOKED_RUNS.load(SeqCst), 1);
    assert_eq!(
        mget_and_get(&server),
        (1, 2),
        "both calls ask Redis, as without the scope"
    );
}

static EXPIRING_RUNS: AtomicUsize = AtomicUsize::new(0);
static EXPIRING_WRITES: AtomicUsize = AtomicUsize::new(0);

const EXPIRING_TTL: Duration = Duration::from_millis(300);

#[cached(ttl = EXPIRING_TTL, name = "preload::expiring")]
fn expiring(n: u64) -> String {
    EXPIRING_RUNS.fetch_add(1, SeqCst);
    format!("computed {n}")
}

/// Numbers what it stores: `stored 1 #2` is the second value written.
#[cached(ttl = EXPIRING_TTL, name = "preload::expiring")]
fn write_expiring(n: u64) -> String {
    format!("stored {n} #{}", EXPIRING_WRITES.fetch_add(1, SeqCst) + 1)
}

#[test]
fn a_value_that_expires_inside_its_scope_is_read_from_redis_again() {
    let (_guard, server) = with_redis("expiring");
    let written = Instant::now();
    write_expiring(1);
    server.reset_stats();

    let (first, again, later) = preload([expiring::key(1)], || {
        let first = expiring(1);
        let again = expiring(1);
        // Every copy of the first value expires (the margin covers the millisecond rounding
        // of expiry times); then a newer value is written to Redis.
        let expired = written + EXPIRING_TTL + Duration::from_millis(50);
        thread::sleep(expired.saturating_duration_since(Instant::now()));
        write_expiring::invalidate(1);
        write_expiring(1);
        (first, again, expiring(1))
    });

    assert_eq!(
        (first.as_str(), again.as_str()),
        ("stored 1 #1", "stored 1 #1")
    );
    assert_eq!(later, "stored 1 #2", "the newer value, from Redis");
    let stats = expiring::stats();
    assert_eq!(
        (stats.scope_hits, stats.l1_hits, stats.l2_hits),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(EXPIRING_RUNS.load(SeqCst), 0, "no body ran");
    assert_eq!(
        mget_and_get(&server),
        (1, 2),
        "the writer's GET (a miss) and the last call's"
    );
}

/// Entries the L1 of `by_scope` and `by_get` keeps.
const SMALL: u64 = 100;

/// Two functions with a 100-entry L1, over the same values in Redis: the test reads them in a
/// preload scope with `by_scope` and with a GET each with `by_get`.
#[cached(ttl = 600, name = "preload::small", capacity = 100)]
fn by_scope(n: u64) -> String {
    format!("computed {n}")
}

#[cached(ttl = 600, name = "preload::small", capacity = 100)]
fn by_get(n: u64) -> String {
    format!("computed {n}")
}

#[cached(ttl = 600, name = "preload::small")]
fn write_small(n: u64) -> String {
    format!("stored {n}")
}

/// How many of `ns` a fresh thread finds in L1 (its front table is empty).
fn l1_holds(call: fn(u64) -> String, stats: fn() -> cache_runtime::Stats, ns: Range<u64>) -> u64 {
    let before = stats().l1_hits;
    thread::spawn(move || ns.for_each(|n| drop(call(n))))
        .join()
        .unwrap();
    stats().l1_hits - before
}

told_apart!(tiny, write_tiny, TINY_RUNS, "preload::tiny", capacity = 10);

#[test]
fn a_key_l1_cannot_keep_is_served_from_the_scope_again_not_from_redis() {
    let (_guard, server) = redis_holding("tiny", 0..300, write_tiny);

    let (first, again) = preload((0..300).map(tiny::key), || {
        let pass = || (0..300).map(tiny).collect::<Vec<_>>();
        (pass(), pass())
    });

    assert!(first == again && again[299] == "stored 299");
    assert_eq!(TINY_RUNS.load(SeqCst), 0);
    assert_eq!(
        mget_and_get(&server),
        (2, 0),
        "300 keys in 2 MGET batches, no GET: {:?}",
        tiny::stats()
    );
}

#[test]
fn values_from_a_scope_enter_a_full_l1_as_readily_as_values_read_with_get() {
    let (_guard, _server) = redis_holding("admission", 0..1000, write_small);
    let (fresh, old) = (500..550, 0..SMALL);
    for (call, stats) in [
        (by_scope as fn(u64) -> String, by_scope::stats as fn() -> _),
        (by_get, by_get::stats),
    ] {
        // A full L1 of entries read once.
        l1_holds(call, stats, old.clone());
    }

    // A full L1 keeps a scope's value only on its key's second sighting (see `doorkeeper`):
    // two pages name the new keys, and each is read with GET twice.
    for _ in 0..2 {
        preload(fresh.clone().map(by_scope::key), || {
            fresh.clone().for_each(|n| drop(by_scope(n)))
        });
        fresh.clone().for_each(|n| drop(by_get(n)));
    }
    // moka admits or rejects new entries when it applies its write log: 100 more writes after
    // the 50 insertions make it do so (while L1 is still full) without waiting.
    for n in old {
        by_scope::invalidate(n);
        by_get::invalidate(n);
    }

    let kept_from_scope = l1_holds(by_scope, by_scope::stats, fresh.clone());
    let kept_from_get = l1_holds(by_get, by_get::stats, fresh);
    assert!(kept_from_get > 0, "the full L1 admits new entries at all");
    // moka's admission compares popularity, which only reads count: here 48 of 50 against 50,
    // and none at all when the scope's lookups are not counted as reads.
    assert!(
        kept_from_scope * 5 >= kept_from_get * 4,
        "from the scope {kept_from_scope} of 50, read with GET {kept_from_get}"
    );
}

static NEWER_WRITES: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "preload::newer")]
fn newer(n: u64) -> String {
    format!("computed {n}")
}

/// Numbers what it stores: `stored 1 #2` is the second value written.
#[cached(ttl = 60, name = "preload::newer")]
fn write_newer(n: u64) -> String {
    format!("stored {n} #{}", NEWER_WRITES.fetch_add(1, SeqCst) + 1)
}

#[test]
fn a_value_put_in_l1_after_the_mget_wins_over_the_scopes() {
    let (_guard, _server) = redis_holding("newer", [1], write_newer);

    let inside = preload([newer::key(1)], || {
        write_newer::invalidate(1);
        write_newer(1);
        // Another thread (outside the scope) reads the newer value into L1.
        let elsewhere = thread::spawn(|| newer(1)).join().unwrap();
        assert_eq!(elsewhere, "stored 1 #2");
        newer(1)
    });

    assert_eq!(inside, "stored 1 #2");
    assert_eq!(thread::spawn(|| newer(1)).join().unwrap(), "stored 1 #2");
}

fragment!(twice, write_twice, TWICE_RUNS, "preload::twice");

#[test]
fn duplicate_keys_are_fetched_once() {
    let (_guard, server) = redis_holding("duplicates", [1, 2], write_twice);
    let keys = [1, 1, 2, 1, 2].map(twice::key);

    assert_eq!(
        preload(keys, || twice(1) + &twice(2)),
        "preload::twice 1preload::twice 2"
    );
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(keys_looked_up(&server), 2, "each key once in the MGET");
    assert_eq!(twice::stats().scope_hits, 2);
    assert_eq!(TWICE_RUNS.load(SeqCst), 0);
}

static EMPTY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, name = "preload::empty")]
fn empty_scope_call(n: u64) -> u64 {
    EMPTY_RUNS.fetch_add(1, SeqCst);
    n + 1
}

#[test]
fn an_empty_key_list_sends_no_mget_and_runs_the_body() {
    let (_guard, server) = with_redis("empty");

    assert_eq!(preload(Vec::<Key>::new(), || empty_scope_call(1)), 2);

    assert_eq!(server.calls("mget"), 0);
    assert_eq!(EMPTY_RUNS.load(SeqCst), 1);
    assert_eq!(
        server.calls("get"),
        1,
        "the call inside goes to Redis as usual"
    );
}

#[cached(ttl = 60, local)]
fn local_only(n: u64) -> u64 {
    n * 2
}

fragment!(
    remote_beside_local,
    write_remote_beside_local,
    REMOTE_RUNS,
    "preload::remote"
);

#[test]
fn keys_of_local_functions_are_left_out_of_the_mget() {
    let (_guard, server) = redis_holding("local", [1], write_remote_beside_local);

    assert_eq!(
        preload([local_only::key(1), local_only::key(2)], || local_only(2)),
        4
    );
    assert_eq!(server.calls("mget"), 0, "only local keys: no MGET");

    let keys = [local_only::key(3), remote_beside_local::key(1)];
    let value = preload(keys, || remote_beside_local(1) + &local_only(3).to_string());
    assert_eq!(value, "preload::remote 16");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(keys_looked_up(&server), 1, "the local key is not asked for");
    assert_eq!(REMOTE_RUNS.load(SeqCst), 0);
}

fragment!(unused, write_unused, UNUSED_RUNS, "preload::unused");

#[test]
fn keys_the_body_never_uses_are_harmless() {
    let (_guard, server) = redis_holding("unused", [1], write_unused);

    let value = preload([unused::key(1), unused::key(2)], || {
        "the body calls nothing"
    });

    assert_eq!(value, "the body calls nothing");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(server.calls("set"), 0);
    assert_eq!(UNUSED_RUNS.load(SeqCst), 0);
    // Nothing was backfilled for unused keys: a call after the scope asks Redis.
    assert_eq!(unused(1), "preload::unused 1");
    assert_eq!(server.calls("get"), 1);
}

fragment!(outer, write_outer, OUTER_RUNS, "preload::outer");
fragment!(inner, write_inner, INNER_RUNS, "preload::inner");

#[test]
fn an_inner_scope_sees_the_outer_scopes_keys() {
    let (_guard, server) = redis_holding("nested", [1], |n| (write_outer(n), write_inner(n)));

    let (from_outer, from_inner) = preload([outer::key(1)], || {
        // Over the outer scope's key again: nothing to fetch.
        preload([outer::key(1)], || ());
        preload([inner::key(1)], || (outer(1), inner(1)))
    });

    assert_eq!(
        (from_outer.as_str(), from_inner.as_str()),
        ("preload::outer 1", "preload::inner 1")
    );
    assert_eq!(
        mget_and_get(&server),
        (2, 0),
        "one MGET per scope with keys to fetch"
    );
    assert_eq!(
        (outer::stats().scope_hits, inner::stats().scope_hits),
        (1, 1)
    );
    assert_eq!(OUTER_RUNS.load(SeqCst) + INNER_RUNS.load(SeqCst), 0);
}

fragment!(down, write_down, DOWN_RUNS, "preload::down");

#[test]
fn with_redis_dead_the_body_still_returns_correct_values() {
    let (_guard, mut server) = redis_holding("down", [1], write_down);
    server.kill();

    let value = preload([down::key(1), down::key(2)], || down(1) + "|" + &down(2));

    assert_eq!(value, "preload::down 1|preload::down 2");
    assert_eq!(
        DOWN_RUNS.load(SeqCst),
        2,
        "both computed: Redis could not answer"
    );
    assert_eq!(down::stats().scope_hits, 0);
    assert!(down::stats().l2_errors >= 1, "{:?}", down::stats());
}

fragment!(many, write_many, MANY_RUNS, "preload::many");

#[test]
fn a_thousand_keys_are_fetched_in_four_mget_batches() {
    let (_guard, server) = redis_holding("many", 0..1000, write_many);

    let values = preload((0..1000).map(many::key), || {
        (0..1000).map(many).collect::<Vec<_>>()
    });

    assert_eq!(values.len(), 1000);
    assert!(values
        .iter()
        .zip(0..)
        .all(|(v, n)| *v == format!("preload::many {n}")));
    assert_eq!(server.calls("mget"), 4, "ceil(1000 / 256) batches");
    assert_eq!(keys_looked_up(&server), 1000);
    assert_eq!(server.calls("get"), 0);
    assert_eq!(many::stats().scope_hits, 1000);
    assert_eq!(MANY_RUNS.load(SeqCst), 0);
}

fragment!(by_macro, write_by_macro, BY_MACRO_RUNS, "preload::by_macro");

#[test]
fn the_preload_macro_runs_an_expression_in_a_scope() {
    let (_guard, server) = redis_holding("macro", [1], write_by_macro);

    let value = cache_runtime::preload!([by_macro::key(1)] => by_macro(1));

    assert_eq!(value, "preload::by_macro 1");
    assert_eq!(mget_and_get(&server), (1, 0));
    assert_eq!(by_macro::stats().scope_hits, 1);
    assert_eq!(BY_MACRO_RUNS.load(SeqCst), 0);
}

told_apart!(
    admitted,
    write_admitted,
    ADMITTED_RUNS,
    "preload::admitted",
    capacity = 10,
    policy = "lru"
);

/// Lets moka apply its pending writes, so that L1 knows how full it is.
fn settle() {
    let _ = cache_runtime::functions();
}

#[test]
fn a_full_l1_takes_a_scopes_value_on_its_second_sighting() {
    // L1 has room for 10 and holds 10; Redis also holds 100 and 101. (LRU: moka admits every
    // insert, so what L1 keeps is the doorkeeper's choice alone.)
    let (_guard, server) = redis_holding("admitted", [100, 101], write_admitted);
    for n in 0..10 {
        admitted(n);
    }
    settle();
    server.reset_stats();

    // 100 is seen once by a scope: served from it, not kept in the full L1.
    assert_eq!(
        preload([admitted::key(100)], || admitted(100)),
        "stored 100"
    );
    // 101 is seen twice: kept the second time.
    assert_eq!(
        preload([admitted::key(101)], || admitted(101)),
        "stored 101"
    );
    settle();
    assert_eq!(
        preload([admitted::key(101)], || admitted(101)),
        "stored 101"
    );
    settle();
    assert_eq!(mget_and_get(&server), (3, 0));

    assert_eq!(admitted(101), "stored 101");
    assert_eq!(mget_and_get(&server), (3, 0), "101 was in L1");
    assert_eq!(admitted(100), "stored 100");
    assert_eq!(mget_and_get(&server), (3, 1), "100 was not: one GET");
    assert_eq!(
        ADMITTED_RUNS.load(SeqCst),
        10,
        "only the first ten computed"
    );
}

// A scope asks this thread's front table first, the way the calls will: keys made by the
// companions carry the call's front-table probe. These tests show the front table answers
// (no MGET for keys only it holds), that it never hides an invalidated or expired value,
// and that keys without a probe get the same answers from L1.

/// `key` without the call's front-table probe: built from its encoded arguments by the
/// function's cache (as every key was before the companions gave one), so that a scope asks
/// L1 alone about it.
fn bare<V: Clone + Send + Sync + 'static>(
    cache: &'static cache_runtime::__private::CachedFn<V>,
    key: &Key,
) -> Key {
    use cache_runtime::__private::{Cache, CacheCalls as _, KeyBuf};
    let mut args = KeyBuf::new();
    args.push_raw(key.args());
    (&Cache(cache)).key(args)
}

/// L1 forgets an entry no call has read for this long; a front-table hit reads no L1 entry.
const IDLE: Duration = Duration::from_millis(300);

#[cached(ttl = 60, idle = IDLE, name = "preload::idle_int")]
fn idle_int(n: u64) -> String {
    format!("int {n}")
}

#[cached(ttl = 60, idle = IDLE, name = "preload::idle_pair")]
fn idle_pair(a: u64, b: u32) -> String {
    format!("pair {a} {b}")
}

#[cached(ttl = 60, idle = IDLE, name = "preload::idle_text")]
fn idle_text(url: &str) -> String {
    format!("text {url}")
}

#[cached(ttl = 60, idle = IDLE, name = "preload::idle_mixed")]
fn idle_mixed(a: u64, tag: &str, on: bool) -> String {
    format!("mixed {a} {tag} {on}")
}

struct Note {
    id: u64,
}

#[cached(ttl = 60, idle = IDLE, key = note.id, name = "preload::idle_note")]
fn idle_note(note: &Note) -> String {
    format!("note {}", note.id)
}

#[cached(ttl = 60, idle = IDLE, batch, name = "preload::idle_users")]
fn idle_users(ids: &[u64]) -> std::collections::HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

/// Short and long texts, with and without bytes the key encoding escapes.
const URLS: [&str; 3] = [
    "a",
    "https://example.com/notes/42?x=1",
    "https://example.com/a:b,c[d]~e+f\\g/long-enough",
];

/// One key of every shape a call probes its front table by: an integer, two integers, a
/// text (escaped or not, within the front table's inline bytes or past them), encoded
/// arguments, a `key = ..` expression named with `key_for`, and a batch's elements.
fn idle_keys() -> Vec<Key> {
    let mut keys = vec![idle_int::key(7), idle_pair::key(7, 3)];
    keys.extend(URLS.map(idle_text::key));
    keys.push(idle_mixed::key(7, "x:y", true));
    keys.push(idle_note::key(&Note { id: 7 }));
    keys.push(idle_note::key_for(&8u64));
    keys.push(idle_users::key_for(&1));
    keys.extend(idle_users::keys(&[2]));
    keys
}

fn idle_keys_bare() -> Vec<Key> {
    let keys = idle_keys();
    let caches = [
        idle_int::__cache(),
        idle_pair::__cache(),
        idle_text::__cache(),
        idle_text::__cache(),
        idle_text::__cache(),
        idle_mixed::__cache(),
        idle_note::__cache(),
        idle_note::__cache(),
        idle_users::__cache(),
        idle_users::__cache(),
    ];
    keys.iter().zip(caches).map(|(k, c)| bare(c, k)).collect()
}

fn idle_page() -> Vec<String> {
    let mut page = vec![idle_int(7), idle_pair(7, 3)];
    page.extend(URLS.map(idle_text));
    page.push(idle_mixed(7, "x:y", true));
    page.push(idle_note(&Note { id: 7 }));
    page.push(idle_note(&Note { id: 8 }));
    let users = idle_users(&[1, 2]);
    page.extend([1, 2].map(|id| users[&id].clone()));
    page
}

fn idle_misses() -> u64 {
    [
        idle_int::stats(),
        idle_pair::stats(),
        idle_text::stats(),
        idle_mixed::stats(),
        idle_note::stats(),
        idle_users::stats(),
    ]
    .iter()
    .map(|s| s.misses)
    .sum()
}

#[test]
fn a_warm_page_sends_no_mget_for_keys_only_this_threads_front_table_holds() {
    let (_guard, server) = with_redis("front");
    let first = idle_page();
    assert_eq!(idle_misses(), 10);
    // The page again: every call is answered by this thread's front table, which reads no
    // L1 entry; past `idle` L1 has let them all go, while the front table holds them fresh.
    assert_eq!(idle_page(), first);
    thread::sleep(IDLE + Duration::from_millis(200));
    server.reset_stats();

    let page = preload(idle_keys(), idle_page);

    assert_eq!(page, first);
    assert_eq!(
        (
            server.calls("mget"),
            server.calls("get"),
            server.calls("set")
        ),
        (0, 0, 0),
        "every key is answered by the front table, as every call is"
    );
    assert_eq!(idle_misses(), 10, "no body ran");

    // The same keys without the calls' probe are asked of L1 alone, which no longer holds
    // them: that is what the front table spared.
    preload(idle_keys_bare(), || ());
    assert_eq!(server.calls("mget"), 1);
    assert_eq!(keys_looked_up(&server), 10);
}

told_apart!(served, write_served, SERVED_RUNS, "preload::served");

#[test]
fn a_key_invalidated_after_being_served_is_fetched_by_the_next_scope() {
    let (_guard, server) = redis_holding("served", [1, 2, 3], write_served);
    // Each read from Redis into L1, then served from L1, which fills the front table.
    for _ in 0..2 {
        for n in [1, 2, 3] {
            served(n);
        }
    }
    let keys = || [served::key(1), served::key(2), served::key(3)];
    let bare_keys = || keys().map(|k| bare(served::__cache(), &k));
    server.reset_stats();
    preload(keys(), || ());
    preload(bare_keys(), || ());
    assert_eq!(
        server.calls("mget"),
        0,
        "all three held, with or without probes"
    );

    // 1 is invalidated (in L1, the front tables and Redis), then Redis gets a newer value;
    // 2 and 3 are served again, from L1 into the front table, which holds them anew.
    served::invalidate(1);
    write_served::put(1, "newer 1".to_owned());
    assert_eq!(
        (served(2), served(3)),
        ("stored 2".into(), "stored 3".into())
    );
    server.reset_stats();
    preload(bare_keys(), || ());
    assert_eq!(
        (server.calls("mget"), keys_looked_up(&server)),
        (1, 1),
        "without probes, the MGET asks for 1 alone"
    );
    server.reset_stats();
    let page = preload(keys(), || (served(1), served(2), served(3)));
    assert_eq!(
        (
            server.calls("mget"),
            keys_looked_up(&server),
            server.calls("get")
        ),
        (1, 1, 0),
        "the MGET asks for 1 alone, and the call for it sends no GET"
    );
    assert_eq!(page.0, "newer 1", "the newer value, from the scope");
    assert_eq!((page.1.as_str(), page.2.as_str()), ("stored 2", "stored 3"));

    // `clear_local` leaves Redis alone but voids every copy this process holds.
    served(1);
    served::clear_local();
    server.reset_stats();
    preload(bare_keys(), || ());
    assert_eq!((server.calls("mget"), keys_looked_up(&server)), (1, 3));
    server.reset_stats();
    let page = preload(keys(), || (served(1), served(2), served(3)));
    assert_eq!(
        (
            server.calls("mget"),
            keys_looked_up(&server),
            server.calls("get")
        ),
        (1, 3, 0)
    );
    assert_eq!(page.0, "newer 1");
    assert_eq!(SERVED_RUNS.load(SeqCst), 0, "no body ran");
}

const LAPSE: Duration = Duration::from_millis(300);

#[cached(ttl = LAPSE, name = "preload::lapsed_int")]
fn lapsed_int(n: u64) -> String {
    format!("int {n}")
}

#[cached(ttl = LAPSE, stale = 60, name = "preload::lapsed_stale")]
fn lapsed_stale(n: u64) -> String {
    format!("stale {n}")
}

#[cached(ttl = LAPSE, name = "preload::lapsed_pair")]
fn lapsed_pair(a: u64, b: i32) -> String {
    format!("pair {a} {b}")
}

#[cached(ttl = LAPSE, name = "preload::lapsed_text")]
fn lapsed_text(url: &str) -> String {
    format!("text {url}")
}

#[cached(ttl = LAPSE, name = "preload::lapsed_mixed")]
fn lapsed_mixed(a: u64, tag: &str) -> String {
    format!("mixed {a} {tag}")
}

fn lapsed_block(n: u64) -> String {
    cache_runtime::cached_block!(
        name = "preload::lapsed_block",
        ttl = LAPSE,
        key = n,
        value = String,
        { format!("block {n}") }
    )
}

fn lapsed_page() -> Vec<String> {
    let mut page = vec![lapsed_int(1), lapsed_stale(1), lapsed_pair(1, -2)];
    page.extend(URLS.map(lapsed_text));
    page.push(lapsed_mixed(1, "x:y"));
    page.push(lapsed_block(1));
    page
}

fn lapsed_keys() -> Vec<Key> {
    let mut keys = vec![
        lapsed_int::key(1),
        lapsed_stale::key(1),
        lapsed_pair::key(1, -2),
    ];
    keys.extend(URLS.map(lapsed_text::key));
    keys.push(lapsed_mixed::key(1, "x:y"));
    keys.push(cache_runtime::block_key("preload::lapsed_block", &1u64));
    keys
}

fn lapsed_keys_bare() -> Vec<Key> {
    let keys = lapsed_keys();
    let mut bare_keys = vec![
        bare(lapsed_int::__cache(), &keys[0]),
        bare(lapsed_stale::__cache(), &keys[1]),
        bare(lapsed_pair::__cache(), &keys[2]),
    ];
    bare_keys.extend(keys[3..6].iter().map(|k| bare(lapsed_text::__cache(), k)));
    bare_keys.push(bare(lapsed_mixed::__cache(), &keys[6]));
    // (A block's key is owned by its name, whose cache a test cannot reach: left out.)
    bare_keys
}

#[test]
fn a_key_expired_after_being_served_is_fetched_by_the_next_scope() {
    let (_guard, server) = with_redis("lapsed");
    let written = Instant::now();
    // Computed (and put in the front table), then served from it.
    let first = lapsed_page();
    assert_eq!(lapsed_page(), first);
    server.reset_stats();
    preload(lapsed_keys(), || ());
    preload(lapsed_keys_bare(), || ());
    assert_eq!(server.calls("mget"), 0, "all fresh, with or without probes");

    // Past every deadline (the margin covers the millisecond rounding of expiry times); the
    // stale function's entry is kept in L1 for its window, yet no longer fresh.
    thread::sleep(
        (written + LAPSE + Duration::from_millis(50)).saturating_duration_since(Instant::now()),
    );
    server.reset_stats();
    preload(lapsed_keys_bare(), || ());
    assert_eq!((server.calls("mget"), keys_looked_up(&server)), (1, 7));
    server.reset_stats();
    let page = preload(lapsed_keys(), lapsed_page);
    assert_eq!(
        (
            server.calls("mget"),
            keys_looked_up(&server),
            server.calls("get")
        ),
        (1, 8, 0),
        "every key is asked for, and no call sends a GET"
    );
    assert_eq!(page, first);
}

told_apart!(
    evicted,
    write_evicted,
    EVICTED_RUNS,
    "preload::evicted",
    capacity = 10,
    policy = "lru"
);

/// Runs `work` on a thread of its own (whose front table starts empty) and waits for it.
fn on_another_thread(work: impl FnOnce() + Send + 'static) {
    thread::spawn(work).join().unwrap();
}

#[test]
fn a_value_l1_held_when_the_scope_began_is_served_by_it_after_l1_let_it_go() {
    let (_guard, server) = redis_holding("evicted", 0..10, write_evicted);
    // L1 holds the ten, read by another thread: this thread's front table holds none.
    on_another_thread(|| (0..10).for_each(|n| drop(evicted(n))));
    server.reset_stats();

    let (values, gets) = preload((0..10).map(evicted::key), || {
        // Another thread computes 300 other keys: L1 (10 entries, LRU) lets the ten go.
        on_another_thread(|| (100..400).for_each(|n| drop(evicted(n))));
        let before = server.calls("get");
        let values: Vec<String> = (0..10).map(evicted).collect();
        (values, server.calls("get") - before)
    });

    assert_eq!(values[9], "stored 9");
    assert_eq!(gets, 0, "the scope kept L1's values: no GET");
    assert_eq!(
        server.calls("mget"),
        0,
        "L1 held every key: nothing to fetch"
    );
    assert_eq!(
        EVICTED_RUNS.load(SeqCst),
        300,
        "only the other keys were computed"
    );
    // L1 had let them go: a thread with an empty front table reads them with GETs.
    on_another_thread(|| (0..10).for_each(|n| drop(evicted(n))));
    assert!(
        server.calls("get") > 0,
        "L1 still held the ten, so this test showed nothing"
    );
}

told_apart!(replaced, write_replaced, REPLACED_RUNS, "preload::replaced");

#[test]
fn a_value_put_inside_the_scope_wins_over_what_the_scope_holds() {
    let (_guard, _server) = redis_holding("replaced", [1, 2], write_replaced);
    // 2 is in L1 (read by another thread), 1 only in Redis.
    on_another_thread(|| drop(replaced(2)));

    let (one, two) = preload([replaced::key(1), replaced::key(2)], || {
        replaced::put(1, "put 1".to_owned());
        replaced::put(2, "put 2".to_owned());
        (replaced(1), replaced(2))
    });

    assert_eq!(
        (one.as_str(), two.as_str()),
        ("put 1", "put 2"),
        "neither the MGET's bytes nor L1's earlier value"
    );
    assert_eq!(REPLACED_RUNS.load(SeqCst), 0);
}
