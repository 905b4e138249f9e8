//! A `local` function never touches Redis, so its value needs no serde impls.
#![deny(warnings)]

use cache_runtime::cached;

#[derive(Clone)]
struct Rendered {
    html: String,
}

#[cached(ttl = 60, local)]
fn render(id: u64) -> Rendered {
    Rendered {
        html: format!("<p>{id}</p>"),
    }
}

fn main() {
    assert_eq!(render(1).html, "<p>1</p>");
    assert_eq!(render(1).html, "<p>1</p>");
    assert_eq!(render::stats().misses, 1);
}
