//! `#[must_use]` on the function survives the expansion: ignoring the result is an error here.
#![deny(unused_must_use)]

use cache_runtime::cached;

#[cached(ttl = 60)]
#[must_use]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
