use cache_runtime::cached;
use std::str::FromStr;

#[cached(ttl = 60, key = text.to_owned())]
fn parse<T: FromStr>(text: &str) -> Option<T> {
    text.parse().ok()
}

fn main() {
    let _: Option<u8> = parse("1");
}
