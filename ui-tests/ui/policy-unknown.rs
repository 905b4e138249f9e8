use cache_runtime::cached;

#[cached(ttl = 60, policy = "fifo")]
fn page(n: u64) -> u64 {
    n
}

fn main() {
    page(1);
}
