use cache_runtime::cached;

#[cached(ttl = 60, tll = 5)]
fn square(n: u64) -> u64 {
    n * n
}

struct Repo {
    id: u64,
}

impl Repo {
    #[cached(key = self.id, capacity = 0)]
    fn label(&self) -> String {
        format!("repo {}", self.id)
    }
}

fn main() {
    // Expanded with the valid arguments: `square`, `label` and their companions exist, so
    // the callers add no error of their own.
    let _: u64 = square(2);
    let _: cache_runtime::Key = square::key(2);
    let _: cache_runtime::Stats = square::stats();
    square::invalidate(2);
    let repo = Repo { id: 1 };
    let _: String = repo.label();
    let _: cache_runtime::Key = repo.label_key();
    let _: cache_runtime::Stats = Repo::label_stats();
}
