use cache_runtime::cached;

struct Note {
    id: u64,
}

#[cached(ttl = 60, key = note)]
fn title(note: &Note) -> String {
    format!("note {}", note.id)
}

fn main() {
    title(&Note { id: 1 });
}
