use cache_runtime::cached_block;

fn comments(note_id: u64) -> String {
    cached_block!(name = "note_comments", ttl = 60, key = note_id, {
        format!("<ul>{note_id}</ul>")
    })
}

fn main() {
    // The block is kept: its value is still a `String` to the caller.
    let _: String = comments(1);
}
