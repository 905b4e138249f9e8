use cache_runtime::cached;

#[cached(local = true)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
