use cache_runtime::cached;

#[cached(version = 1.5)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
