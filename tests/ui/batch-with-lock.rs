use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch, lock, stale = 30)]
fn users(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

fn main() {
    // Expanded without `lock` and `stale`.
    let _: HashMap<u64, String> = users(&[1, 2]);
    let _: Option<String> = users::peek(&1);
}
