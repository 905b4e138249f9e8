use cache_runtime::cached;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 60)]
fn square(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

#[cached(ttl = Duration::from_millis(300), key = id)]
async fn fetch(id: u32, _noise: &str) -> Result<String, String> {
    Ok(format!("v{id}"))
}

struct Repo {
    id: u64,
}
impl Repo {
    #[cached(key = (self.id, n))]
    fn get(&self, n: u32) -> Option<u64> {
        Some(self.id + n as u64)
    }
}

#[test]
fn smoke() {
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    let s = square::stats();
    assert_eq!((s.misses, s.l1_hits), (1, 1));
    println!("{}", square::key(3));
    let r = Repo { id: 5 };
    assert_eq!(r.get(1), Some(6));
    assert_eq!(r.get(1), Some(6));
    assert_eq!(Repo::get_stats().misses, 1);
    println!("{}", r.get_key(1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(fetch(1, "a")).unwrap(), "v1");
    assert_eq!(rt.block_on(fetch(1, "b")).unwrap(), "v1");
    assert_eq!(fetch::stats().misses, 1);
    rt.block_on(fetch::invalidate(1, "x"));
}

#[cached(ttl = 1, stale = 5)]
async fn detached(n: u64) -> String {
    format!("d{n}")
}

#[test]
fn detached_refresh_compiles_and_serves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(detached(1)), "d1");
    assert_eq!(rt.block_on(detached(1)), "d1");
}
