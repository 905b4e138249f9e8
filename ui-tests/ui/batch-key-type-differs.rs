use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch)]
fn users(ids: &[u64]) -> Result<HashMap<u32, String>, String> {
    Ok(ids.iter().map(|&id| (id as u32, format!("user {id}"))).collect())
}

fn main() {
    let _ = users(&[1, 2]);
}
