//! Generic functions and methods of generic `impl`s: every instantiation shares one cache (a
//! `static` cannot be generic), and the concrete types are the first part of each key, so two
//! instantiations called with the same key never see each other's values — in the front
//! table, in L1 or in Redis.

use std::any::type_name;
use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::{cached, Config};
use integration_tests::{serial, with_redis};

struct Holder<T> {
    id: u64,
    kind: PhantomData<T>,
}

impl<T> Holder<T> {
    fn new(id: u64) -> Self {
        Holder {
            id,
            kind: PhantomData,
        }
    }
}

static DESCRIBE_RUNS: AtomicU32 = AtomicU32::new(0);

impl<T> Holder<T> {
    #[cached(key = self.id)]
    fn describe(&self) -> String {
        DESCRIBE_RUNS.fetch_add(1, SeqCst);
        format!("Holder<{}> {}", type_name::<T>(), self.id)
    }
}

static SHOW_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60, key = value.to_string())]
fn show<T: Display + 'static>(value: T) -> String {
    SHOW_RUNS.fetch_add(1, SeqCst);
    format!("{} {value}", type_name::<T>())
}

struct Repo {
    id: u64,
}

static DEFAULT_OF_RUNS: AtomicU32 = AtomicU32::new(0);

impl Repo {
    /// A method with a type parameter of its own, in a non-generic `impl`.
    #[cached(key = self.id)]
    fn default_of<D: Default + std::fmt::Debug>(&self) -> String {
        DEFAULT_OF_RUNS.fetch_add(1, SeqCst);
        format!("{} {:?}", self.id, D::default())
    }
}

#[test]
fn methods_of_a_generic_impl_keep_one_entry_per_concrete_type() {
    let _guard = serial();
    Config::new().install().expect("an L1-only config");
    let (small, wide) = (Holder::<u8>::new(1), Holder::<u16>::new(1));
    assert_eq!(small.describe(), "Holder<u8> 1");
    assert_eq!(small.describe(), "Holder<u8> 1", "a hit (front table)");
    assert_eq!(wide.describe(), "Holder<u16> 1", "not Holder<u8>'s entry");
    assert_eq!(wide.describe(), "Holder<u16> 1");
    assert_eq!(DESCRIBE_RUNS.load(SeqCst), 2);

    // The companions: keys differ by type, the name does not (it is shared).
    assert_eq!(
        small.describe_key().to_string(),
        "generics::Holder::describe:v0:<u8>:1"
    );
    assert_eq!(
        wide.describe_key().to_string(),
        "generics::Holder::describe:v0:<u16>:1"
    );
    small.describe_invalidate();
    assert_eq!(wide.describe(), "Holder<u16> 1", "u16's entry survives");
    assert_eq!(DESCRIBE_RUNS.load(SeqCst), 2);
    assert_eq!(small.describe(), "Holder<u8> 1");
    assert_eq!(DESCRIBE_RUNS.load(SeqCst), 3, "u8's entry was removed");
    // One cache for every instantiation: its counters add them up.
    let stats = Holder::<u8>::describe_stats();
    assert_eq!((stats.misses, stats.l1_hits), (3, 3));
    assert_eq!(Holder::<u16>::describe_stats().misses, 3);
}

#[test]
fn generic_free_functions_keep_one_entry_per_concrete_type() {
    let _guard = serial();
    Config::new().install().expect("an L1-only config");
    assert_eq!(show(1u8), "u8 1");
    assert_eq!(show(1u16), "u16 1", "same key `1`, other type");
    assert_eq!(show(1u8), "u8 1");
    assert_eq!(show("1"), "&str 1");
    assert_eq!(SHOW_RUNS.load(SeqCst), 3);
    assert_eq!(show::key(1u8).to_string(), "generics::show:v0:u8:1");
    assert_eq!(show::key(1u16).to_string(), "generics::show:v0:u16:1");
    show::invalidate(1u16);
    assert_eq!(show(1u8), "u8 1");
    assert_eq!(SHOW_RUNS.load(SeqCst), 3);
    assert_eq!(show(1u16), "u16 1");
    assert_eq!(SHOW_RUNS.load(SeqCst), 4);
    assert_eq!(show::stats().misses, 4);

    let repo = Repo { id: 5 };
    assert_eq!(repo.default_of::<u8>(), "5 0");
    assert_eq!(repo.default_of::<String>(), "5 \"\"");
    assert_eq!(repo.default_of::<u8>(), "5 0");
    assert_eq!(DEFAULT_OF_RUNS.load(SeqCst), 2);
    assert_eq!(
        repo.default_of_key::<u8>().to_string(),
        "generics::Repo::default_of:v0:u8:5"
    );
}

struct Shelf<T> {
    id: u64,
    kind: PhantomData<T>,
}

static SHELF_RUNS: AtomicU32 = AtomicU32::new(0);

impl<T> Shelf<T> {
    #[cached(ttl = 60, key = self.id)]
    fn label(&self) -> String {
        SHELF_RUNS.fetch_add(1, SeqCst);
        format!("Shelf<{}> {}", type_name::<T>(), self.id)
    }
}

#[cached(ttl = 60, key = value.to_string())]
fn shown<T: Display + 'static>(value: T) -> String {
    format!("{} {value}", type_name::<T>())
}

#[test]
fn instantiations_have_their_own_redis_keys() {
    let (_guard, server) = with_redis("gen");
    let (small, wide) = (
        Shelf::<u8> {
            id: 1,
            kind: PhantomData,
        },
        Shelf::<u16> {
            id: 1,
            kind: PhantomData,
        },
    );
    assert_eq!(small.label(), "Shelf<u8> 1");
    // Only Redis could answer now: each type must read its own key.
    Shelf::<u8>::label_clear_local();
    assert_eq!(wide.label(), "Shelf<u16> 1");
    Shelf::<u8>::label_clear_local();
    assert_eq!(small.label(), "Shelf<u8> 1");
    assert_eq!(wide.label(), "Shelf<u16> 1");
    assert_eq!(SHELF_RUNS.load(SeqCst), 2, "the rest came from Redis");
    assert_eq!(Shelf::<u8>::label_stats().l2_hits, 2);

    assert_eq!(shown(7u32), "u32 7");
    shown::clear_local();
    assert_eq!(shown(7i64), "i64 7");
    shown::clear_local();
    assert_eq!(shown(7u32), "u32 7");

    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("gen:*")
        .query(&mut server.connection())
        .expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        [
            "gen:generics::Shelf::label:v0:<u16>:1",
            "gen:generics::Shelf::label:v0:<u8>:1",
            "gen:generics::shown:v0:i64:7",
            "gen:generics::shown:v0:u32:7",
        ]
    );
    assert_eq!(small.label_key().to_string(), keys[1]);
}
