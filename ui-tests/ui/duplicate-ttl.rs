use cache_runtime::cached;

#[cached(ttl = 5, ttl = 60)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
