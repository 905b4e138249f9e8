use cache_runtime::cached;

#[derive(Clone)]
struct Rendered {
    html: String,
}

#[cached(ttl = 60)]
fn render(id: u64) -> Rendered {
    Rendered {
        html: format!("<p>{id}</p>"),
    }
}

fn main() {
    println!("{}", render(1).html);
}
