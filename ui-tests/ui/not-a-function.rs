use cache_runtime::cached;

#[cached(ttl = 60)]
struct Squares;

fn main() {
    let _ = Squares;
}
