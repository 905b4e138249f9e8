use cache_runtime::cached;

#[cached(ttl = 60, key = *n)]
fn bump(n: &mut u64) -> u64 {
    *n += 1;
    *n
}

fn main() {
    let mut n = 1;
    bump(&mut n);
}
