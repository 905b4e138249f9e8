use cache_runtime::cached;

#[cached(ttl = 60)]
fn log(n: u64) {
    println!("{n}");
}

fn main() {
    log(2);
}
