use cache_runtime::cached;

#[cached(ttl = 60, local_ttl = 60)]
fn page(n: u64) -> u64 {
    n
}

fn main() {
    page(1);
}
