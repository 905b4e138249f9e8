use cache_runtime::cached;

#[cached(ttl = 60)]
fn label(id: u64) -> &'static str {
    if id % 2 == 0 {
        "even"
    } else {
        "odd"
    }
}

fn main() {
    // The function and its companions still exist: no second error here.
    let _: &'static str = label(1);
    let _ = label::key(1);
    let _ = label::stats();
}
