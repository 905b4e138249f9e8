//! `max_bytes` takes a literal, a constant or an expression, beside `local` and a policy.
#![deny(warnings)]

use cache_runtime::cached;

const L1_BYTES: u64 = 64 << 20;

#[cached(ttl = 60, max_bytes = 1_000_000)]
fn literal(n: u32) -> String {
    n.to_string()
}

#[cached(local, max_bytes = L1_BYTES)]
fn constant(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[cached(max_bytes = 4 * 1024 * 1024, policy = "lru")]
async fn expression(n: u32) -> u32 {
    n
}

fn main() {
    assert_eq!(literal(1), "1");
    assert_eq!(constant(2), vec![0, 1]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    assert_eq!(runtime.block_on(expression(3)), 3);
}
