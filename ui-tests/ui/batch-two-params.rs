use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch)]
fn users(ids: &[u64], tenant: &str) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("{tenant} {id}"))).collect()
}

fn main() {
    // The function is kept as written: its callers see no error of their own.
    let _: HashMap<u64, String> = users(&[1, 2], "acme");
}
