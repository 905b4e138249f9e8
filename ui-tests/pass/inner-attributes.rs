//! Inner attributes at the top of a body (`#![allow(..)]`) stay inside the function instead of
//! being hoisted before it (where an inner attribute is not allowed at all).
#![deny(warnings)]

use cache_runtime::cached;

#[cached(ttl = 60)]
fn parity(n: u64) -> bool {
    #![allow(unused_variables)]
    let unused = 1;
    n.is_multiple_of(2)
}

#[cached(ttl = 60)]
async fn label(n: u64) -> String {
    #![allow(unused_variables)]
    let unused = 1;
    format!("label {n}")
}

struct Repo {
    id: u64,
}

impl Repo {
    #[cached(key = self.id)]
    fn name(&self) -> String {
        #![allow(unused_variables)]
        let unused = 1;
        format!("repo {}", self.id)
    }
}

fn main() {
    assert!(parity(4));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(label(1)), "label 1");
    assert_eq!(Repo { id: 2 }.name(), "repo 2");
}
