//! Value types the behaviour tests share.

use std::time::Duration;

use cache_runtime::Expires;

/// A value that knows how long it stays valid (`#[cached(expires)]`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Token {
    /// Tells two computations apart.
    pub secret: String,
    /// Its own lifetime, in ms.
    pub valid_ms: u64,
}

impl Expires for Token {
    fn expires_in(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.valid_ms))
    }
}
