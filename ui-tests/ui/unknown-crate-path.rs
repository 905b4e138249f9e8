//! The expansion goes through the `crate = ".."` path: a path that does not exist is an error.
use cache_runtime::cached;

#[cached(crate = "no_such_cache")]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
