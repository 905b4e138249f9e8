use cache_runtime::cached;

#[cached(ttl = 60, tll = 5)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    // Expanded with the valid arguments: `square` and its companions exist, so the callers
    // add no error of their own.
    let _: u64 = square(2);
    let _: cache_runtime::Key = square::key(2);
    let _: cache_runtime::Stats = square::stats();
    square::invalidate(2);
}
