use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch, key = ids.len())]
fn users(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

fn main() {
    // Expanded without `key`: the function and its companions exist.
    let _: HashMap<u64, String> = users(&[1, 2]);
    let _: cache_runtime::Key = users::key_for(&1);
    users::invalidate(&[1]);
}
