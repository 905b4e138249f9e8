//! Faults of the disk store, through `#[cached]`: a corrupt file (between processes and under
//! a process that has it open), a read-only file system, a full disk. Callers always get
//! their values, errors are counted and logged, nothing panics, and after a corrupt file the
//! next process has a working cache again.
//!
//! Tests run as root, where `chmod 0555` stops no write: the read-only and full file systems
//! are `tmpfs` mounts (`mount -t tmpfs -o size=..`, then `remount,ro`), unmounted on drop.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::{cached, Config};
use integration_tests::disk::{peer_get, Peer, TempDir, Tmpfs};
use integration_tests::logs::Logs;
use integration_tests::serial;

static RUNS: AtomicU32 = AtomicU32::new(0);

/// The peer's function (same name; tests install the peer's prefix).
#[cached(ttl = 600, name = "disk::page")]
fn page(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("page {n} by {}", std::process::id())
}

fn install(dir: &std::path::Path) {
    Config::new()
        .disk(dir)
        .prefix("peer")
        .install()
        .expect("install never fails for a disk store");
}

fn warnings(logs: &Logs, part: &str) -> Vec<String> {
    logs.take()
        .into_iter()
        .filter(|line| line.starts_with("WARN") && line.contains(part))
        .collect()
}

/// Runs page(n) for n in `args` after emptying L1, checking each value; the body runs it
/// caused.
fn calls(args: std::ops::Range<u64>) -> u32 {
    page::clear_local();
    let before = RUNS.load(SeqCst);
    for n in args {
        assert!(page(n).starts_with(&format!("page {n} by ")));
    }
    RUNS.load(SeqCst) - before
}

#[test]
fn a_file_overwritten_with_garbage_is_set_aside_and_the_next_process_has_a_cache() {
    let _guard = serial();
    let logs = Logs::capture();
    let dir = TempDir::new("garbage");
    assert_eq!(peer_get(dir.path(), 0, 20).runs, 20);
    dir.corrupt();
    logs.take();

    install(dir.path());
    assert_eq!(
        calls(0..20),
        20,
        "the values were lost with the file: computed"
    );
    assert_eq!(page::stats().decode_errors, 0);
    assert_eq!(
        dir.files_named(".corrupt-").len(),
        1,
        "the bad file is kept aside"
    );
    assert_eq!(
        warnings(logs, "corrupt").len(),
        1,
        "setting the file aside is logged"
    );
    Config::uninstall();

    let next = peer_get(dir.path(), 0, 20);
    assert_eq!(
        (next.runs, next.l2_hits, next.l2_errors),
        (0, 20, 0),
        "the next process reads what this one wrote in the new file"
    );
    assert_eq!(next.from(std::process::id()), 20);
}

#[test]
fn a_file_with_garbage_pages_is_set_aside_when_a_read_meets_them() {
    let _guard = serial();
    let logs = Logs::capture();
    let dir = TempDir::new("bad-pages");
    assert_eq!(peer_get(dir.path(), 0, 300).runs, 300);
    // The header and the schema (page 1) stay, the tables' pages are garbage.
    dir.checkpoint();
    let mut bytes = std::fs::read(dir.file()).expect("the file");
    assert!(bytes.len() > 3 * 4096, "{} bytes", bytes.len());
    for (i, byte) in bytes.iter_mut().enumerate().skip(4096) {
        *byte = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    std::fs::write(dir.file(), &bytes).expect("write");
    logs.take();

    install(dir.path());
    let runs = calls(0..300);
    assert!(runs > 0, "values on garbage pages are computed");
    let errors = page::stats().l2_errors;
    assert_eq!(dir.files_named(".corrupt-").len(), 1, "set aside");
    assert!(!warnings(logs, "corrupt").is_empty());
    Config::uninstall();
    // Values read before the garbage was met went to L1 only: the next process may compute
    // them, and writes them to the new file, where the one after it finds everything.
    let next = peer_get(dir.path(), 0, 300);
    assert_eq!(next.l2_errors, 0, "{next:?}");
    let last = peer_get(dir.path(), 0, 300);
    assert_eq!(
        (last.runs, last.l2_hits, last.l2_errors),
        (0, 300, 0),
        "a working cache again (this process' l2_errors: {errors})"
    );
}

#[test]
fn a_file_corrupted_under_an_open_process_leaves_both_processes_sharing_the_new_one() {
    let _guard = serial();
    let dir = TempDir::new("open-corrupt");
    let mut open = Peer::serve(dir.path());
    assert_eq!(open.get(0, 20).runs, 20);
    dir.corrupt();

    // A new process finds the garbage, sets it aside and starts a new file.
    let fresh = peer_get(dir.path(), 0, 20);
    assert_eq!((fresh.runs, fresh.l2_errors), (20, 0), "{fresh:?}");
    assert_eq!(dir.files_named(".corrupt-").len(), 1);

    // The process that had the old file open writes new values...
    let written = open.get(20, 40);
    assert_eq!((written.runs, written.l2_errors), (40, 0), "{written:?}");
    let pid = open.pid();
    open.exit();
    // ...where the next process looks, beside the values of the process that started it
    // (which the open one did not set aside in its turn).
    assert_eq!(dir.files_named(".corrupt-").len(), 1, "one file set aside");
    let next = peer_get(dir.path(), 0, 40);
    assert_eq!(
        (next.runs, next.l2_hits),
        (0, 40),
        "both processes' new values are in the file others read: {next:?}"
    );
    assert_eq!(next.from(pid), 20);
    assert_eq!(next.from(fresh.by[0].0), 20);
}

#[test]
fn a_read_only_file_system_computes_counts_and_warns() {
    let _guard = serial();
    let logs = Logs::capture();
    // Empty and read-only: the file cannot be created.
    let empty = Tmpfs::new("ro-empty", "1m");
    empty.read_only();
    logs.take();
    install(empty.path());
    let at_install = warnings(logs, "cannot be used");
    assert_eq!(at_install.len(), 1, "install warns: {at_install:?}");
    let before = page::stats().l2_errors;
    assert_eq!(calls(0..5), 5);
    assert_eq!(calls(0..5), 5, "L1 only: computed again");
    let errors = page::stats().l2_errors - before;
    assert!(errors >= 10, "every read and write failed: {errors}");
    let refused = warnings(logs, "refuses");
    assert_eq!(
        refused.len(),
        1,
        "one warning per kind of error: {refused:?}"
    );
    Config::uninstall();

    // Written, then read-only: what was stored is still read.
    let full = Tmpfs::new("ro-written", "8m");
    let written = peer_get(full.path(), 0, 10);
    assert_eq!(written.runs, 10);
    full.read_only();
    install(full.path());
    logs.take();
    let before = page::stats();
    assert_eq!(
        calls(0..10),
        0,
        "stored values are read from the read-only file"
    );
    assert_eq!(page::stats().l2_hits - before.l2_hits, 10);
    assert_eq!(page::stats().l2_errors, before.l2_errors);
    assert_eq!(calls(10..15), 5, "new values are computed");
    assert_eq!(
        page::stats().l2_errors - before.l2_errors,
        5,
        "each write was refused"
    );
    let refused = warnings(logs, "refuses");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("code=read-only"), "{refused:?}");
    Config::uninstall();

    // A directory that cannot be created (a regular file is in the way).
    let blocked = TempDir::new("ro-blocked");
    std::fs::write(blocked.path(), b"a file").expect("a file");
    install(&blocked.path().join("cache"));
    let before = page::stats().l2_errors;
    assert_eq!(calls(0..3), 3);
    assert!(page::stats().l2_errors - before >= 3);
    Config::uninstall();
    let _ = std::fs::remove_file(blocked.path());
}

static BIG_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = 600)]
fn big(n: u64) -> String {
    BIG_RUNS.fetch_add(1, SeqCst);
    format!("{n}:{}", "x".repeat(32 * 1024))
}

#[test]
fn a_full_disk_computes_counts_and_warns_once() {
    let _guard = serial();
    let logs = Logs::capture();
    let small = Tmpfs::new("full", "1m");
    install(small.path());
    logs.take();
    // 100 values of 32 kB: 3 MB into a 1 MB file system.
    for n in 0..100 {
        assert!(big(n).starts_with(&format!("{n}:")));
    }
    assert_eq!(BIG_RUNS.load(SeqCst), 100);
    let stats = big::stats();
    assert!(stats.l2_errors > 0, "writes failed: {stats:?}");
    let full = warnings(logs, "disk full");
    assert_eq!(full.len(), 1, "warned once, with the kind: {full:?}");

    // What did fit is read back; what did not is computed.
    big::clear_local();
    for n in 0..100 {
        assert!(big(n).starts_with(&format!("{n}:")));
    }
    let after = big::stats();
    assert!(after.l2_hits > 0, "the first values are on disk: {after:?}");
    assert_eq!(
        u64::from(BIG_RUNS.load(SeqCst)),
        100 + (100 - after.l2_hits),
        "every value that is not on disk computed"
    );
    Config::uninstall();
}

/// Processes meeting one corrupt file at the same time: one sets it aside, and none sets
/// aside the new file another has just started (each would then write where no other process
/// reads). Ten rounds of eight processes opening the file at once.
#[test]
fn processes_that_open_a_corrupt_file_at_once_set_it_aside_once() {
    let _guard = serial();
    for round in 0..10 {
        let dir = TempDir::new("corrupt-at-once");
        assert_eq!(peer_get(dir.path(), 0, 20).runs, 20);
        dir.corrupt();
        let mut peers: Vec<Peer> = (0..8).map(|_| Peer::start(dir.path())).collect();
        for peer in &mut peers {
            peer.ready();
        }
        let aside = dir.files_named(".corrupt-");
        assert_eq!(aside.len(), 1, "round {round}: {aside:?}");
        // Each writes keys of its own...
        for (i, peer) in peers.iter_mut().enumerate() {
            let from = 100 * i as u64;
            peer.send(&format!("get {from} {}", from + 20));
        }
        for peer in &mut peers {
            let report = peer.report();
            assert_eq!((report.runs, report.l2_errors), (20, 0), "{report:?}");
        }
        for peer in peers {
            peer.exit();
        }
        // ...into the one file the next process reads.
        let found: u64 = (0..8)
            .map(|i| peer_get(dir.path(), 100 * i, 100 * i + 20).l2_hits)
            .sum();
        assert_eq!(
            found, 160,
            "round {round}: values written where others read"
        );
    }
}
