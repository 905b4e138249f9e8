//! Helper process for the `l2_processes` test: installs a config pointing at the Redis given on
//! the command line, computes one value of a `#[cached]` function that names this process,
//! prints it and exits.
//!
//! Usage: `l2_process_child REDIS_URL PREFIX N`

use cache_runtime::{cached, Config};

#[cached(ttl = 60, name = "processes::shared")]
fn shared(n: u64) -> String {
    format!("computed by process {} for {n}", std::process::id())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(prefix), Some(n)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: l2_process_child REDIS_URL PREFIX N");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("N is an integer");
    Config::new()
        .redis(url)
        .prefix(prefix)
        .install()
        .expect("install");
    let value = shared(n);
    assert_eq!(shared::stats().misses, 1, "the child computed its value");
    println!("{value}");
}
