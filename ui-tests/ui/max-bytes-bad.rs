use cache_runtime::cached;

const NONE_AT_ALL: u64 = 0;

#[cached(capacity = 100, max_bytes = 1_000_000)]
fn both_bounds(n: u32) -> u32 {
    n
}

#[cached(max_bytes = 0)]
fn zero(n: u32) -> u32 {
    n
}

#[cached(max_bytes = "64MB")]
fn text(n: u32) -> u32 {
    n
}

#[cached(max_bytes = NONE_AT_ALL)]
fn zero_constant(n: u32) -> u32 {
    n
}

fn main() {
    // Expanded without the bad arguments: callers and companions see no error.
    both_bounds(1);
    zero(1);
    text(1);
    zero_constant(1);
    let _ = both_bounds::stats();
}
