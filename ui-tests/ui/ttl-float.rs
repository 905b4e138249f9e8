use cache_runtime::cached;

#[cached(ttl = 1.5)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
