//! Doc comments and other attributes survive; `missing_docs` would fire if the doc were lost
//! (or if a companion were undocumented).
#![deny(warnings, missing_docs)]

use cache_runtime::cached;

/// Squares a number.
#[cached(ttl = 60)]
#[must_use]
#[inline]
pub fn square(n: u64) -> u64 {
    n * n
}

/// A documented type with a cached method.
pub struct Repo {
    /// Identifies the repository.
    pub id: u64,
}

impl Repo {
    /// The repository's label.
    #[cached(key = self.id)]
    #[must_use]
    pub fn label(&self) -> String {
        format!("repo {}", self.id)
    }
}

fn main() {
    assert_eq!(square(4), 16);
    assert_eq!(Repo { id: 1 }.label(), "repo 1");
}
