//! `crate = "my_cache"` makes the expansion reach the runtime through a renamed dependency.
//! (Cargo refuses a second dependency on one package under another name, so the rename is an
//! `extern crate .. as ..`, which puts `my_cache` in every module's scope like a dependency
//! renamed in Cargo.toml would; `unknown-crate-path.rs` shows the path given is the one used.)
#![deny(warnings)]

extern crate cache_runtime as my_cache;

#[my_cache::cached(ttl = 60, crate = "my_cache")]
fn square(n: u64) -> u64 {
    n * n
}

mod nested {
    #[my_cache::cached(crate = "my_cache")]
    pub fn cube(n: u64) -> u64 {
        n * n * n
    }
}

fn main() {
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    let stats: my_cache::Stats = square::stats();
    assert_eq!((stats.misses, stats.l1_hits), (1, 1));
    assert_eq!(nested::cube(2), 8);
}
