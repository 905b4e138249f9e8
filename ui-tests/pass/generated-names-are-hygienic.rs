//! Parameters named like the expansion's own locals and statics stay the user's: generated
//! names are `Span::mixed_site()` identifiers or live where user code cannot see them.
#![deny(warnings)]
#![allow(non_snake_case)]

use cache_runtime::cached;

#[cached(ttl = 60, key = (__cache_buf, __CACHE_FRONT, __cache_first))]
fn keyed(
    __cache_buf: u64,
    __CACHE_FRONT: u64,
    __cache_args: u64,
    __cache_out: u64,
    __CACHE: u64,
    __cache_first: u64,
) -> u64 {
    __cache_buf + __CACHE_FRONT + __cache_args + __cache_out + __CACHE + __cache_first
}

#[cached(ttl = 60)]
fn by_default(__cache_buf: u64) -> u64 {
    __cache_buf * 2
}

#[cached(ttl = 60)]
fn two(__cache_buf: u64, __cache_args: &str) -> String {
    format!("{__cache_buf}{__cache_args}")
}

#[cached(ttl = 60)]
async fn later(__cache_out: u64, __CACHE_FRONT: u64) -> u64 {
    __cache_out + __CACHE_FRONT
}

struct Repo {
    id: u64,
}

impl Repo {
    #[cached(key = (self.id, __cache_buf))]
    fn get(&self, __cache_buf: u64, __cache_first: bool) -> String {
        format!("{} {__cache_buf} {__cache_first}", self.id)
    }
}

fn main() {
    assert_eq!(keyed(1, 2, 3, 4, 5, 6), 21);
    assert_eq!(
        keyed::key(1, 2, 3, 4, 5, 6).to_string(),
        concat!(module_path!(), "::keyed:v0:1:2:6")
    );
    assert_eq!(by_default(4), 8);
    assert_eq!(two(1, "a"), "1a");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(later(1, 2)), 3);
    assert_eq!(Repo { id: 3 }.get(4, true), "3 4 true");
}
