use cache_runtime::cached;

#[cached(ttl = 60)]
fn describe<T: std::fmt::Display>(value: T) -> String {
    value.to_string()
}

fn main() {
    describe(2);
}
