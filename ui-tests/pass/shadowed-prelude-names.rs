//! The expansion reaches std and the runtime through absolute paths: local items named like
//! prelude types and std's crates change nothing.
#![deny(warnings)]
#![allow(dead_code)]

use cache_runtime::cached;

type Option = ();
type Result = ();
mod core {}
mod std {}
struct String;
struct Vec;
struct Box;
struct Duration;
fn drop() {}

#[cached(ttl = 60)]
fn square(n: u64) -> u64 {
    n * n
}

#[cached(ttl = 60)]
fn checked_half(n: u64) -> ::core::result::Result<u64, &'static str> {
    if n.is_multiple_of(2) {
        Ok(n / 2)
    } else {
        Err("odd")
    }
}

#[cached(ttl = ::std::time::Duration::from_secs(5), local)]
async fn first_even(ns: [u64; 3]) -> ::core::option::Option<u64> {
    ns.into_iter().find(|n| n % 2 == 0)
}

fn main() {
    assert_eq!(square(3), 9);
    assert_eq!(checked_half(4), Ok(2));
    assert_eq!(checked_half(3), Err("odd"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(first_even([1, 4, 6])), Some(4));
    assert_eq!(
        square::key(3).to_string(),
        concat!(module_path!(), "::square:v0:3")
    );
}
