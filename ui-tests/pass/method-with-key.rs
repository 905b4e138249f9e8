//! A method keyed by `self.id`, with its companions as associated functions.
#![deny(warnings)]

use cache_runtime::cached;

struct Repo {
    id: u64,
}

impl Repo {
    #[cached(ttl = 60, key = self.id)]
    fn owner(&self) -> String {
        format!("owner of {}", self.id)
    }
}

fn main() {
    let repo = Repo { id: 4 };
    assert_eq!(repo.owner(), "owner of 4");
    assert_eq!(repo.owner(), "owner of 4");
    assert_eq!(Repo::owner_stats().misses, 1);
    assert!(repo.owner_key().to_string().ends_with(":v0:4"));
    repo.owner_invalidate();
}
