//! Every function shape `#[cached]` supports works and keeps its signature: the `let _: fn(..)`
//! lines fail to compile if the expansion changed a parameter or the return type. Bodies count
//! their runs with atomics. No config is installed in this file (L1 only, keys without a
//! prefix), so keys print as `{name}:v{version}:{args}`.
#![deny(warnings)]

use cache_runtime::{cached, Key, Stats};
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How many times a body ran.
struct Runs(AtomicU32);

impl Runs {
    const fn new() -> Self {
        Runs(AtomicU32::new(0))
    }

    fn record(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

/// Pins down an async function's parameter and output types at compile time.
fn async_signature<A, F: Future>(f: impl Fn(A) -> F) -> impl Fn(A) -> F {
    f
}

static DOUBLE_RUNS: Runs = Runs::new();

#[cached(ttl = 60)]
#[inline]
fn double(n: u64) -> u64 {
    DOUBLE_RUNS.record();
    n * 2
}

#[test]
fn free_fn_runs_once_per_argument_and_keeps_its_signature() {
    let call: fn(u64) -> u64 = double;
    let _: fn(u64) -> Key = double::key;
    let _: fn(u64) = double::invalidate;
    let _: fn() -> Stats = double::stats;
    assert_eq!((call(2), call(2), call(3)), (4, 4, 6));
    assert_eq!(DOUBLE_RUNS.count(), 2);
    assert_eq!(double::key(7).to_string(), "signatures::double:v0:7");
}

static GREETING_RUNS: Runs = Runs::new();

#[cached(ttl = 60)]
async fn greeting(name: String) -> String {
    GREETING_RUNS.record();
    format!("hello {name}")
}

#[test]
fn async_fn_runs_once_per_argument_and_has_an_async_invalidate() {
    let call = async_signature::<String, _>(greeting);
    block_on(async {
        let first: String = call("ann".into()).await;
        assert_eq!(first, "hello ann");
        assert_eq!(call("ann".into()).await, "hello ann");
        assert_eq!(GREETING_RUNS.count(), 1);
        greeting::invalidate("ann".into()).await;
        assert_eq!(call("ann".into()).await, "hello ann");
    });
    assert_eq!(GREETING_RUNS.count(), 2);
}

struct Account {
    id: u64,
    edits: u32,
}

static LABEL_RUNS: Runs = Runs::new();
static SHARED_RUNS: Runs = Runs::new();
static PAGE_RUNS: Runs = Runs::new();

impl Account {
    #[cached(key = self.id)]
    fn label(&self) -> String {
        LABEL_RUNS.record();
        format!("account {}", self.id)
    }

    #[cached(key = (self.id, by))]
    fn edit(&mut self, by: u32) -> u64 {
        self.edits += by;
        self.id + u64::from(by)
    }

    #[cached(key = self.id)]
    fn shared_label(self: Arc<Self>) -> String {
        SHARED_RUNS.record();
        format!("shared {}", self.id)
    }

    #[cached(ttl = 60, key = (self.id, page))]
    async fn page(&self, page: u32) -> String {
        PAGE_RUNS.record();
        format!("account {} page {page}", self.id)
    }
}

#[test]
fn method_on_ref_self_is_keyed_by_its_key_expression() {
    let call: fn(&Account) -> String = Account::label;
    let _: fn(&Account) -> Key = Account::label_key;
    let (seven, other_seven) = (Account { id: 7, edits: 0 }, Account { id: 7, edits: 9 });
    assert_eq!(call(&seven), "account 7");
    assert_eq!(call(&other_seven), "account 7");
    assert_eq!(LABEL_RUNS.count(), 1);
    assert_eq!(call(&Account { id: 8, edits: 0 }), "account 8");
    assert_eq!(LABEL_RUNS.count(), 2);
    assert_eq!(
        seven.label_key().to_string(),
        "signatures::Account::label:v0:7"
    );
}

#[test]
fn method_on_mut_self_skips_its_body_on_a_hit() {
    let call: fn(&mut Account, u32) -> u64 = Account::edit;
    let mut account = Account { id: 20, edits: 0 };
    assert_eq!(call(&mut account, 2), 22);
    assert_eq!(call(&mut account, 2), 22);
    assert_eq!(
        account.edits, 2,
        "the second call was answered from the cache"
    );
    assert_eq!(Account::edit_stats().misses, 1);
}

#[test]
fn method_on_arc_self_works() {
    let call: fn(Arc<Account>) -> String = Account::shared_label;
    let account = Arc::new(Account { id: 30, edits: 0 });
    assert_eq!(call(Arc::clone(&account)), "shared 30");
    assert_eq!(call(Arc::clone(&account)), "shared 30");
    assert_eq!(SHARED_RUNS.count(), 1);
    assert_eq!(Arc::strong_count(&account), 1, "the cache keeps no `self`");
}

#[test]
fn async_method_runs_once_per_key() {
    let account = Account { id: 40, edits: 0 };
    block_on(async {
        assert_eq!(account.page(1).await, "account 40 page 1");
        assert_eq!(account.page(1).await, "account 40 page 1");
        assert_eq!(account.page(2).await, "account 40 page 2");
        account.page_invalidate(2).await;
        assert_eq!(account.page(2).await, "account 40 page 2");
    });
    assert_eq!(PAGE_RUNS.count(), 3);
}

static LONGER_RUNS: Runs = Runs::new();

#[cached(ttl = 60)]
fn longer<'a>(left: &'a str, right: &'a str) -> String {
    LONGER_RUNS.record();
    if right.len() > left.len() {
        right
    } else {
        left
    }
    .to_owned()
}

#[test]
fn borrowed_parameters_with_lifetimes_are_keyed_by_value() {
    let call: for<'a> fn(&'a str, &'a str) -> String = longer;
    let (left, right) = (String::from("ab"), String::from("abc"));
    assert_eq!(call(&left, &right), "abc");
    assert_eq!(call("ab", "abc"), "abc");
    assert_eq!(LONGER_RUNS.count(), 1);
    assert_eq!(
        longer::key("a:b", "c").to_string(),
        r"signatures::longer:v0:a\:b:c"
    );
}

static SHOUT_RUNS: Runs = Runs::new();

#[cached(key = label.to_string())]
fn shout(label: impl Display) -> String {
    SHOUT_RUNS.record();
    format!("{label}!")
}

#[test]
fn impl_trait_parameter_is_keyed_by_the_key_expression_across_types() {
    let call: fn(u32) -> String = shout;
    assert_eq!(call(5), "5!");
    assert_eq!(shout("5"), "5!", "same key, other argument type: one cache");
    assert_eq!(SHOUT_RUNS.count(), 1);
    assert_eq!(shout::key('x').to_string(), "signatures::shout:v0:x");
}

static SETTING_RUNS: Runs = Runs::new();

#[cached(ttl = 60)]
fn setting(name: &str) -> io::Result<String> {
    SETTING_RUNS.record();
    match name {
        "missing" => Err(io::Error::new(io::ErrorKind::NotFound, "no such setting")),
        _ => Ok(format!("{name}=on")),
    }
}

#[test]
fn io_result_caches_only_ok() {
    let call: fn(&str) -> io::Result<String> = setting;
    assert_eq!(call("dark_mode").unwrap(), "dark_mode=on");
    assert_eq!(call("dark_mode").unwrap(), "dark_mode=on");
    assert_eq!(SETTING_RUNS.count(), 1);
    for _ in 0..2 {
        let error = call("missing").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
    assert_eq!(SETTING_RUNS.count(), 3, "each error ran the body");
}

static EVEN_HALF_RUNS: Runs = Runs::new();

#[cached(ttl = 60)]
fn even_half(n: u32) -> Option<u32> {
    EVEN_HALF_RUNS.record();
    n.is_multiple_of(2).then_some(n / 2)
}

#[test]
fn option_caches_only_some() {
    let call: fn(u32) -> Option<u32> = even_half;
    assert_eq!((call(4), call(4)), (Some(2), Some(2)));
    assert_eq!(EVEN_HALF_RUNS.count(), 1);
    assert_eq!((call(5), call(5)), (None, None));
    assert_eq!(EVEN_HALF_RUNS.count(), 3, "each `None` ran the body");
}

static ANSWER_RUNS: Runs = Runs::new();

#[cached]
fn answer() -> u64 {
    ANSWER_RUNS.record();
    42
}

#[test]
fn zero_argument_fn_runs_once() {
    let call: fn() -> u64 = answer;
    let _: fn() -> Key = answer::key;
    assert_eq!((call(), call()), (42, 42));
    assert_eq!(ANSWER_RUNS.count(), 1);
    assert_eq!(answer::key().to_string(), "signatures::answer:v0:()");
}

#[cached(name = "sig::named", version = 3)]
fn versioned(id: u32, tag: &str) -> String {
    format!("{id}/{tag}")
}

#[test]
fn name_and_version_appear_in_the_key() {
    assert_eq!(versioned(1, "x:y"), "1/x:y");
    assert_eq!(
        versioned::key(1, "x:y").to_string(),
        r"sig::named:v3:1:x\:y"
    );
    assert_eq!(versioned::key(1, "x:y").name(), "sig::named");
    assert_eq!(versioned::key(1, "x:y").args(), r"1:x\:y");
}

static TRIPLE_RUNS: Runs = Runs::new();

/// Triples a number; exported under a fixed symbol name.
#[cached(ttl = 60)]
#[must_use]
#[export_name = "signatures_exported_triple"]
fn triple(n: u64) -> u64 {
    TRIPLE_RUNS.record();
    n * 3
}

extern "Rust" {
    /// `triple`, reached through the symbol its `#[export_name]` gave it.
    #[link_name = "signatures_exported_triple"]
    fn exported_triple(n: u64) -> u64;
}

#[test]
fn user_attributes_are_kept() {
    // Links only if `#[export_name]` survived the expansion. `#[must_use]`, `#[inline]` (on
    // `double`) and doc comments compile under `deny(warnings)`; ui-tests/ui shows their effects.
    // SAFETY: the symbol is `triple`, whose signature the declaration repeats.
    let exported = unsafe { exported_triple(5) };
    assert_eq!(exported, 15);
    assert_eq!(triple(5), 15);
    assert_eq!(TRIPLE_RUNS.count(), 1, "both names share one cache");
}
