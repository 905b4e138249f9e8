use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch = true)]
fn users(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

fn main() {
    let _: HashMap<u64, String> = users(&[1, 2]);
}
