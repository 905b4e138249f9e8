//! Generic functions and methods of generic `impl`s, with `key = ...`: each concrete type has
//! its own entries (tests/tests/generics.rs checks the values; this checks the shapes compile).
#![deny(warnings)]

use cache_runtime::cached;
use std::fmt::Display;
use std::marker::PhantomData;

#[cached(ttl = 60, key = value.to_string())]
fn show<T: Display + 'static>(value: T) -> String {
    format!("{value}")
}

#[cached(key = (left.to_string(), right.to_string()))]
fn pair<A, B>(left: A, right: B) -> String
where
    A: Display,
    B: Display,
{
    format!("{left}{right}")
}

struct Holder<T> {
    id: u64,
    kind: PhantomData<T>,
}

impl<T: Send> Holder<T> {
    #[cached(ttl = 60, key = self.id)]
    async fn label(&self) -> String {
        format!("holder {}", self.id)
    }
}

fn main() {
    assert_eq!(show(1u8), "1");
    assert_eq!(
        show::key(1u8).to_string(),
        concat!(module_path!(), "::show:v0:u8:1")
    );
    assert_eq!(pair(1, "b"), "1b");
    let _ = pair::key(1, 'c');
    let holder = Holder::<String> {
        id: 1,
        kind: PhantomData,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(holder.label()), "holder 1");
    runtime.block_on(holder.label_invalidate());
    assert_eq!(Holder::<String>::label_stats().misses, 1);
}

/// An async generic function with `stale`: its refresh runs inline (a type parameter need not
/// be `Send + 'static`, which a spawned refresh would need).
#[cached(ttl = 60, stale = 30, key = value.to_string())]
async fn stale_show<T: Display>(value: T) -> String {
    format!("{value}")
}

#[allow(dead_code)]
async fn uses_stale_show() -> String {
    stale_show(std::rc::Rc::new(1)).await
}
