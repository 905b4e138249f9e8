use cache_runtime::cached;

#[cached(crate = cache_runtime)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
