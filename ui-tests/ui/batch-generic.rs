use std::collections::HashMap;

use cache_runtime::cached;

#[cached(ttl = 60, batch)]
fn labels<K: Clone + std::hash::Hash + Eq + std::fmt::Debug>(ids: &[K]) -> HashMap<K, String> {
    ids.iter().map(|id| (id.clone(), format!("{id:?}"))).collect()
}

fn main() {
    let _: HashMap<u64, String> = labels(&[1_u64]);
}
