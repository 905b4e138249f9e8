use cache_runtime::cached_block;

#[derive(Clone)]
struct Rendered(String);

fn comments(note_id: u64) -> Rendered {
    cached_block!(name = "note_comments", key = note_id, value = Rendered, {
        Rendered(format!("<ul>{note_id}</ul>"))
    })
}

fn main() {
    let _: Rendered = comments(1);
}
