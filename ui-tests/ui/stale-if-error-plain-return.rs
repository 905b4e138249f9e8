use cache_runtime::cached;

#[cached(ttl = 60, stale_if_error = 300)]
fn price(item: u32) -> u64 {
    item as u64
}

fn main() {
    price(1);
}
