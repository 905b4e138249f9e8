use std::collections::HashMap;

use cache_runtime::cached;

struct Repo;

impl Repo {
    #[cached(ttl = 60, batch)]
    fn users(&self, ids: &[u64]) -> HashMap<u64, String> {
        ids.iter().map(|&id| (id, format!("user {id}"))).collect()
    }
}

fn main() {
    let _: HashMap<u64, String> = Repo.users(&[1]);
}
