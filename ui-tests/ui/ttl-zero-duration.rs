use cache_runtime::cached;

#[cached(ttl = std::time::Duration::from_millis(0))]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
