//! A small driver for instruction counts of the disk store's L2 hit (L1 emptied before each
//! call) against a raw rusqlite SELECT of the same row plus the envelope's decode, under
//! callgrind:
//!
//! ```text
//! cargo build --release -p benches --bin disk_profile
//! valgrind --tool=callgrind --toggle-collect='disk_profile::measured_*' \
//!     target/release/disk_profile ours 20000
//! ```
//!
//! Arguments: the contender (`ours`, `raw`) and the number of reads after warming (default
//! 20 000). Only the read itself is counted (`--toggle-collect` on the `measured_*`
//! functions): emptying L1 before each of our calls is left out, as in `benches/disk.rs`.

use std::hint::black_box;

use benches::fragment;
use cache_runtime::codec::{self, DefaultCodec};
use cache_runtime::Config;

#[cache_runtime::cached(ttl = 600)]
fn emptied(n: u64) -> String {
    fragment(n)
}

#[inline(never)]
fn measured_ours() -> usize {
    emptied(1).len()
}

#[inline(never)]
fn measured_raw(conn: &rusqlite::Connection, key: &str) -> usize {
    let bytes: Vec<u8> = conn
        .prepare_cached("SELECT value FROM entries WHERE key = ?1")
        .expect("prepare")
        .query_row([key], |row| row.get(0))
        .expect("the row");
    codec::decode::<String, DefaultCodec>(&bytes)
        .expect("an envelope")
        .0
        .len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let who = args.get(1).map_or("ours", String::as_str);
    let reads: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("cache-disk-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Config::new()
        .disk(&dir)
        .prefix("profile")
        .install()
        .expect("install");
    emptied(1);
    let conn = rusqlite::Connection::open(dir.join("cache.sqlite3")).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .expect("pragmas");
    let key = emptied::key(1).to_string();
    let mut sum = 0;
    for _ in 0..reads {
        match who {
            "ours" => {
                emptied::clear_local();
                sum += measured_ours();
            }
            _ => sum += measured_raw(&conn, &key),
        }
    }
    black_box(sum);
    assert_eq!(
        emptied::stats().misses,
        1,
        "every read after the first was a hit"
    );
    Config::uninstall();
    let _ = std::fs::remove_dir_all(&dir);
}
