//! A slow function becomes fast: no server to start. Values are kept in memory and in the
//! disk store (a SQLite file under the system's temp dir), so a second run of this example is
//! answered from disk, without computing.
//!
//! ```sh
//! cargo run -p examples --example quickstart   # run it twice
//! ```

use std::time::{Duration, Instant};

use cache_runtime::{cached, Config};

/// Pretends to be expensive: a database query, an HTTP call, a markdown render...
#[cached(ttl = 60)]
fn word_count(text: String) -> usize {
    std::thread::sleep(Duration::from_millis(200));
    text.split_whitespace().count()
}

/// Results that are errors are not cached: the next call tries again.
#[cached(ttl = Duration::from_secs(30), key = path)]
fn read_config(path: &str, _verbose: bool) -> Result<String, String> {
    std::thread::sleep(Duration::from_millis(100));
    if path.ends_with(".toml") {
        Ok(format!("contents of {path}"))
    } else {
        Err(format!("{path}: not a TOML file"))
    }
}

/// Memoized recursion: each `n` is computed once.
#[cached(local)]
fn fib(n: u64) -> u128 {
    if n < 2 {
        n as u128
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Runs `f` and prints what it returned and how long it took.
fn timed<T: std::fmt::Debug>(label: &str, f: impl FnOnce() -> T) {
    let started = Instant::now();
    let value = format!("{:?}", f());
    println!("{label:<42} -> {value:<30} in {:>10.3?}", started.elapsed());
}

/// The embedded default: a disk store shared by every run (and every process) on this
/// machine. Pointing at Redis instead is one line: `Config::new().redis("redis://..")`.
fn set_up() {
    let dir = std::env::temp_dir().join("cache-runtime-quickstart");
    Config::new()
        .disk(&dir)
        .install()
        .expect("a disk store in the temp dir");
    println!("values are kept in memory and in {}\n", dir.display());
}

fn main() {
    set_up();
    let text = "the quick brown fox jumps over the lazy dog".to_string();

    println!("== a slow function, called twice");
    let first = if word_count::peek(text.clone()).is_some() {
        "word_count(text)  [from disk: a past run]"
    } else {
        "word_count(text)  [computes]"
    };
    timed(first, || word_count(text.clone()));
    timed("word_count(text)  [from memory]", || {
        word_count(text.clone())
    });

    println!("\n== only Ok results are cached");
    timed("read_config(\"app.toml\")", || {
        read_config("app.toml", false)
    });
    timed("read_config(\"app.toml\")  [cached]", || {
        read_config("app.toml", true)
    });
    timed("read_config(\"app.ini\")", || read_config("app.ini", false));
    timed("read_config(\"app.ini\")  [tries again]", || {
        read_config("app.ini", false)
    });

    println!("\n== memoized recursion");
    timed("fib(90)", || fib(90));

    println!("\n== companions");
    println!("word_count::key(..)  = {}", word_count::key(text.clone()));
    println!(
        "read_config::key(..) = {}",
        read_config::key("app.toml", false)
    );
    word_count::invalidate(text.clone());
    timed("word_count(text)  [after invalidate]", || {
        word_count(text.clone())
    });
    word_count::clear_local();
    timed("word_count(text)  [memory emptied: disk]", || {
        word_count(text.clone())
    });

    println!("\n== stats");
    println!("word_count:  {:?}", word_count::stats());
    println!("read_config: {:?}", read_config::stats());
    println!("fib:         misses = {} (one per n)", fib::stats().misses);
}
