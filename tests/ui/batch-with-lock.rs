use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch, lock, stale = 30, refresh = early)]
fn users(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

#[cached(ttl = 60, batch, stale_if_error = 300)]
fn accounts(ids: &[u64]) -> Result<HashMap<u64, String>, String> {
    Ok(ids.iter().map(|&id| (id, format!("account {id}"))).collect())
}

fn main() {
    // Expanded without `lock` (`stale`, `refresh` and `stale_if_error` go with `batch`).
    let _: HashMap<u64, String> = users(&[1, 2]);
    let _: Option<String> = users::peek(&1);
    let _ = accounts(&[1]);
}
