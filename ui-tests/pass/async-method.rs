//! An async method keyed by `self.id` and an argument; `owner_invalidate` is async too.
#![deny(warnings)]

use cache_runtime::cached;

struct Repo {
    id: u64,
}

impl Repo {
    #[cached(ttl = 60, key = (self.id, page))]
    async fn page(&self, page: u32) -> Result<String, String> {
        Ok(format!("repo {} page {page}", self.id))
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let repo = Repo { id: 2 };
    runtime.block_on(async {
        assert_eq!(repo.page(1).await.as_deref(), Ok("repo 2 page 1"));
        assert_eq!(repo.page(1).await.as_deref(), Ok("repo 2 page 1"));
        repo.page_invalidate(1).await;
    });
    assert_eq!(Repo::page_stats().misses, 1);
}
