use cache_runtime::cached_block;

fn comments(note_id: u64) -> String {
    cached_block!(name = "note_comments", key = note_id, value = String)
}

fn main() {
    let _: String = comments(1);
}
