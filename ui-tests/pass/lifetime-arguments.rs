#![deny(warnings)]

use std::time::Duration;

use cache_runtime::{cached, Expires};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Token(u64);

impl Expires for Token {
    fn expires_in(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.0))
    }
}

#[cached(ttl = 60, expires)]
fn token(user: u32) -> Token {
    Token(user as u64)
}

#[cached(ttl = 60, cache_none, none_ttl = Duration::from_secs(5))]
fn find(id: u32) -> Option<u64> {
    (id > 0).then_some(id as u64)
}

#[cached(ttl = 60, cache_none, stale_if_error = 300)]
fn lookup(id: u32) -> Result<Option<u64>, String> {
    Ok((id > 0).then_some(id as u64))
}

#[cached(ttl = 60, stale_if_error = Duration::from_secs(30))]
async fn price(item: u32) -> Result<u64, std::io::Error> {
    Ok(item as u64)
}

fn main() {
    assert_eq!(token(3).0, 3);
    assert_eq!(find(0), None);
    assert_eq!(lookup(2), Ok(Some(2)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    assert_eq!(runtime.block_on(price(1)).expect("no error"), 1);
}
