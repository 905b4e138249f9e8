use cache_runtime::cached;

#[cached(ttl = 60)]
fn area((width, height): (u64, u64)) -> u64 {
    width * height
}

fn main() {
    area((2, 3));
}
