use cache_runtime::cached;

#[cached(ttl = 60, none_ttl = 5)]
fn find(id: u32) -> Option<u64> {
    (id > 0).then_some(id as u64)
}

fn main() {
    find(1);
}
