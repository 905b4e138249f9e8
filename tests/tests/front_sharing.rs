//! Front tables share values with L1 instead of copying them: however many threads hold a key
//! in their front table, the process holds one copy of its value, and the only other copies
//! made are the answers handed to callers.

use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::sync::Barrier;

use cache_runtime::cached;

/// Copies of [`Page`] made by `Clone` (deep copies: each owns a `String` of its own).
static COPIES: AtomicI64 = AtomicI64::new(0);
/// Pages alive now: made by the body or by `Clone`, not dropped yet.
static LIVE: AtomicI64 = AtomicI64::new(0);

/// A value that owns heap memory and counts its copies.
#[derive(Debug)]
struct Page(String);

impl Page {
    fn new(n: u64) -> Page {
        LIVE.fetch_add(1, SeqCst);
        Page(format!("page {n}"))
    }
}

impl Clone for Page {
    fn clone(&self) -> Page {
        COPIES.fetch_add(1, SeqCst);
        LIVE.fetch_add(1, SeqCst);
        Page(self.0.clone())
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
    }
}

#[cached(local, ttl = 600, capacity = 1_000)]
fn page(n: u64) -> Page {
    Page::new(n)
}

const THREADS: usize = 8;
const KEYS: u64 = 100;
const PASSES: u64 = 3;

#[test]
fn threads_front_tables_hold_no_copy_of_their_own() {
    // This thread computes every key (its caller keeps the original).
    for n in 0..KEYS {
        assert_eq!(page(n).0, format!("page {n}"));
    }
    assert_eq!(page::stats().misses, KEYS);
    let stored = COPIES.load(SeqCst);

    // Each thread's first pass fills its front table from L1; the later ones hit it. The
    // threads stay alive (their tables intact) until the pages are counted; nothing panics
    // between the barriers, so that no thread is left waiting.
    let warm = Barrier::new(THREADS + 1);
    let counted = Barrier::new(THREADS + 1);
    let (copies, live, wrong) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut wrong = 0;
                    for _ in 0..PASSES {
                        for n in 0..KEYS {
                            wrong += usize::from(page(n).0 != format!("page {n}"));
                        }
                    }
                    warm.wait();
                    counted.wait();
                    wrong
                })
            })
            .collect();
        warm.wait();
        let counts = (COPIES.load(SeqCst) - stored, LIVE.load(SeqCst));
        counted.wait();
        let wrong: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        (counts.0, counts.1, wrong)
    });
    assert_eq!(wrong, 0, "every answer is its key's page");
    let answers = THREADS as i64 * (PASSES * KEYS) as i64;
    assert_eq!(
        copies, answers,
        "filling {THREADS} front tables copied no page: the only copies are the answers"
    );
    assert_eq!(
        live, KEYS as i64,
        "{THREADS} warm front tables and L1 share one copy of each page"
    );
    assert_eq!(
        stored, KEYS as i64,
        "a computed page is copied once, into L1"
    );
    assert_eq!(page::stats().misses, KEYS, "every later call was a hit");
}
