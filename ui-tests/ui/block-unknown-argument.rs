use cache_runtime::cached_block;

fn comments(note_id: u64) -> String {
    cached_block!(name = "note_comments", tll = 60, key = note_id, value = String, {
        format!("<ul>{note_id}</ul>")
    })
}

fn main() {
    let _: String = comments(1);
}
