//! Batch functions, sync and async, with their companions; a local `type Option` and
//! `HashMap` named by its full path.
#![deny(warnings)]

use cache_runtime::cached;

#[allow(dead_code)]
type Option = ();

/// Users by id.
#[cached(ttl = 60, batch)]
pub fn users(ids: &[u64]) -> std::collections::HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

#[cached(local, batch, capacity = 100)]
async fn names(ids: &[String]) -> Result<std::collections::HashMap<String, usize>, String> {
    Ok(ids.iter().map(|id| (id.clone(), id.len())).collect())
}

/// Served stale while one call refreshes; refreshed early now and then; one process computes.
#[cached(
    ttl = 60,
    batch,
    stale = 30,
    refresh = early,
    beta = 2.0,
    max_bytes = 1_000_000,
    lock,
    lock_timeout = 5
)]
pub fn cards(ids: &[u32]) -> std::collections::HashMap<u32, String> {
    ids.iter().map(|&id| (id, format!("card {id}"))).collect()
}

fn main() {
    assert_eq!(cards(&[1, 2]).len(), 2);
    let found = users(&[1, 2, 2]);
    assert_eq!(found.len(), 2);
    assert_eq!(
        users::keys(&[1, 2]),
        vec![users::key_for(&1), users::key_for(&2)]
    );
    assert_eq!(users::peek(&1).as_deref(), Some("user 1"));
    users::put(&3, "three".to_owned());
    assert_eq!(users(&[3])[&3], "three");
    users::invalidate(&[1, 3]);
    users::clear_local();
    users::clear();
    assert_eq!(users::stats().misses, 2);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ids = ["ab".to_owned(), "c".to_owned()];
        assert_eq!(names(&ids).await.unwrap()["ab"], 2);
        assert_eq!(names::peek(&"c".to_owned()).await, Some(1));
        names::invalidate(&ids).await;
    });
}
