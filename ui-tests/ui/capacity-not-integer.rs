use cache_runtime::cached;

#[cached(capacity = "1000")]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
