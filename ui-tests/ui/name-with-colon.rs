use cache_runtime::cached;

#[cached(name = "math:square")]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
