use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch)]
fn users(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

fn main() {
    let _: HashMap<u64, String> = users(vec![1, 2]);
}
