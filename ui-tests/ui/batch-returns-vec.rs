use cache_runtime::cached;

#[cached(ttl = 60, batch)]
fn users(ids: &[u64]) -> Vec<String> {
    ids.iter().map(|id| format!("user {id}")).collect()
}

fn main() {
    let _: Vec<String> = users(&[1, 2]);
}
