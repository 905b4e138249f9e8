use cache_runtime::cached;

#[cached(ttl = 60)]
fn describe(n: u64) -> impl std::fmt::Display {
    n * 2
}

fn main() {
    describe(2);
}
