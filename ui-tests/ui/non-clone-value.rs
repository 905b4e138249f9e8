use cache_runtime::cached;

#[derive(serde::Serialize, serde::Deserialize)]
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
    // One error, at the return type: the calls and companions add none.
    println!("{}", render(1).html);
    let _ = render::key(1);
    let _ = render::stats();
    render::invalidate(1);
}
