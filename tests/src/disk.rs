//! Helpers for the disk store's tests: a directory of its own per test, a look at the rows of
//! its SQLite file, `tmpfs` mounts (full or read-only file systems) and the `disk_peer`
//! processes.
//!
//! ```no_run
//! let dir = integration_tests::disk::TempDir::new("paths");
//! cache_runtime::Config::new().disk(dir.path()).install().unwrap();
//! // ... calls ...
//! assert!(dir.has_row("some:key"));
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The store's file inside its directory.
pub const FILE_NAME: &str = "cache.sqlite3";

/// A directory under the system's temp dir, unique to this test, removed on drop (not created:
/// the store creates it).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `{temp}/cache-disk-{name}-{pid}-{n}`.
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cache-disk-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The database file.
    pub fn file(&self) -> PathBuf {
        self.0.join(FILE_NAME)
    }

    /// The rows of the `entries` table: key and expiry (unix ms), sorted by key. Opened
    /// read-only, apart from the store's own connections.
    ///
    /// # Panics
    /// If the file cannot be read.
    pub fn rows(&self) -> Vec<(String, Option<i64>)> {
        let conn = rusqlite::Connection::open_with_flags(
            self.file(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the store's file");
        let mut statement = conn
            .prepare("SELECT key, expires_at FROM entries ORDER BY key")
            .expect("entries table");
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        rows
    }

    /// Whether `key` has a row (expired or not).
    pub fn has_row(&self, key: &str) -> bool {
        self.rows().iter().any(|(k, _)| k == key)
    }

    /// The expiry of `key`'s row (unix ms), `None` when it has none; panics without a row.
    pub fn expiry_of(&self, key: &str) -> Option<i64> {
        self.rows()
            .into_iter()
            .find_map(|(k, at)| (k == key).then_some(at))
            .unwrap_or_else(|| panic!("no row for {key}"))
    }

    /// Files in the directory whose name contains `part`.
    pub fn files_named(&self, part: &str) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.contains(part))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Moves every page the write-ahead log holds into the database file and empties the log
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), as SQLite does on its own every 1000 pages: the
    /// file alone then holds the data. (The store's processes never close their connections,
    /// so at exit the log is not folded back, and would still hold every page.)
    ///
    /// # Panics
    /// If the file cannot be opened or the checkpoint is blocked.
    pub fn checkpoint(&self) {
        let conn = rusqlite::Connection::open(self.file()).expect("open the store's file");
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("checkpoint");
        assert_eq!(busy, 0, "checkpoint blocked");
    }

    /// Overwrites the whole database file with garbage, keeping its length (and its inode:
    /// it is written in place, as a failing disk or a stray writer would), after a
    /// [`checkpoint`](Self::checkpoint) so that no page of the data survives in the log.
    pub fn corrupt(&self) {
        self.checkpoint();
        let len = std::fs::metadata(self.file()).expect("the file").len() as usize;
        let garbage: Vec<u8> = (0..len.max(8192))
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.file())
            .expect("open for writing");
        file.write_all(&garbage).expect("write garbage");
        file.sync_all().expect("sync");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `tmpfs` mounted on a directory of its own (tests run as root), unmounted on drop.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// A `tmpfs` of `size` (`mount -o size=..`, e.g. `"1m"`).
    ///
    /// # Panics
    /// If `mount` fails (not root, no `mount`).
    pub fn new(name: &str, size: &str) -> Self {
        let dir = TempDir::new(name);
        std::fs::create_dir_all(dir.path()).expect("mount point");
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir.path(),
        );
        Tmpfs { dir }
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts it read-only (every file on it must be closed for writing).
    pub fn read_only(&self) {
        mount(&["-o", "remount,ro"], self.path());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn mount(args: &[&str], at: &Path) {
    let status = Command::new("mount")
        .args(args)
        .arg(at)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mount {args:?} {} failed (the fault tests run as root)",
        at.display()
    );
}

/// What a peer reported after a batch of calls: counters since it started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Times the body ran.
    pub runs: u64,
    /// Values read from the disk store.
    pub l2_hits: u64,
    /// Failed requests to the store.
    pub l2_errors: u64,
    /// How many values each process computed (`pid:count`, sorted by pid).
    pub by: Vec<(u32, u64)>,
}

impl Report {
    /// Parses `runs=R l2_hits=H l2_errors=E by=PID:N,PID:N`.
    ///
    /// # Panics
    /// On any other line.
    pub fn parse(line: &str) -> Self {
        let mut report = Report::default();
        for field in line.split_whitespace() {
            let (name, value) = field.split_once('=').unwrap_or_else(|| panic!("{line}"));
            match name {
                "runs" => report.runs = value.parse().expect("runs"),
                "l2_hits" => report.l2_hits = value.parse().expect("l2_hits"),
                "l2_errors" => report.l2_errors = value.parse().expect("l2_errors"),
                "by" => {
                    report.by = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|pair| {
                            let (pid, n) = pair.split_once(':').expect("pid:count");
                            (pid.parse().expect("pid"), n.parse().expect("count"))
                        })
                        .collect()
                }
                _ => panic!("unknown field in {line:?}"),
            }
        }
        report
    }

    /// How many of the values came from process `pid`.
    pub fn from(&self, pid: u32) -> u64 {
        self.by
            .iter()
            .find_map(|&(p, n)| (p == pid).then_some(n))
            .unwrap_or(0)
    }
}

/// The `disk_peer` binary: beside the test executable's directory (`target/debug/deps/..`),
/// where cargo builds the package's binaries for its integration tests.
fn peer_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test executable");
    let dir = test.parent().and_then(Path::parent).expect("target/debug");
    dir.join(format!("disk_peer{}", std::env::consts::EXE_SUFFIX))
}

/// The `disk_peer` binary's command for the store in `dir`.
pub fn peer_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(peer_binary());
    command
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Runs `disk_peer DIR get FROM TO` to the end: its report.
///
/// # Panics
/// If the peer fails.
pub fn peer_get(dir: &Path, from: u64, to: u64) -> Report {
    let output = peer_command(dir, &["get", &from.to_string(), &to.to_string()])
        .output()
        .expect("run disk_peer");
    assert!(output.status.success(), "disk_peer get failed");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    Report::parse(text.lines().last().expect("a report"))
}

/// A `disk_peer DIR serve` process, driven line by line.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts one; it has opened the store when this returns.
    pub fn serve(dir: &Path) -> Self {
        let mut peer = Peer::start(dir);
        peer.ready();
        peer
    }

    /// Starts one without waiting for it to open the store (see [`ready`](Self::ready)).
    pub fn start(dir: &Path) -> Self {
        let mut child = peer_command(dir, &["serve"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start disk_peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// Waits until a peer from [`start`](Self::start) has opened the store.
    pub fn ready(&mut self) {
        assert_eq!(self.line(), "ready");
    }

    /// The process id (values name the process that computed them).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command without waiting for its answer.
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the peer");
        self.stdin.flush().expect("flush");
    }

    /// The next line the peer printed.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the peer");
        assert!(!line.is_empty(), "the peer exited");
        line.trim_end().to_owned()
    }

    /// The answer to a command sent earlier.
    pub fn report(&mut self) -> Report {
        Report::parse(&self.line())
    }

    /// Sends `get FROM TO` and waits for the report.
    pub fn get(&mut self, from: u64, to: u64) -> Report {
        self.send(&format!("get {from} {to}"));
        self.report()
    }

    /// Asks it to exit and waits.
    pub fn exit(mut self) {
        self.send("exit");
        let status = self.child.wait().expect("wait for the peer");
        assert!(status.success(), "the peer failed");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
