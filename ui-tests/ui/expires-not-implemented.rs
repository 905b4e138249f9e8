use cache_runtime::cached;

#[derive(Clone)]
struct Token(String);

#[cached(local, ttl = 60, expires)]
fn token(user: u32) -> Token {
    Token(format!("t{user}"))
}

fn main() {
    token(1);
}
