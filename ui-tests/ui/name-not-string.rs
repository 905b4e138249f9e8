use cache_runtime::cached;

#[cached(name = squares)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
