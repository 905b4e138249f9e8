use cache_runtime::cached;

#[cached(ttl = 60, cache_none)]
fn price(item: u32) -> Result<u64, String> {
    Ok(item as u64)
}

fn main() {
    let _ = price(1);
}
