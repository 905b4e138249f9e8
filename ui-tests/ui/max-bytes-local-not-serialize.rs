use cache_runtime::cached;

#[derive(Clone)]
struct Parsed(Vec<u32>);

#[cached(local, max_bytes = 1_000_000)]
fn parsed(n: u32) -> Parsed {
    Parsed((0..n).collect())
}

fn main() {
    parsed(3);
}
