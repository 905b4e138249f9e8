use cache_runtime::cached;

struct Repo {
    id: u64,
}

impl Repo {
    #[cached(ttl = 60)]
    fn load(&self, n: u32) -> u64 {
        self.id + u64::from(n)
    }
}

fn main() {
    Repo { id: 1 }.load(2);
}
