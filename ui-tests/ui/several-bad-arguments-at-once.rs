use cache_runtime::cached;

#[cached(tll = 5, capacity = 0, name = 7, version = "2", local = yes)]
fn square(n: u64) -> u64 {
    n * n
}

fn main() {
    square(2);
}
