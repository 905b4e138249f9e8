//! The disk store: one SQLite file that every process on the machine shares.
//!
//! SQLite is the embedded engine several processes may open at once (redb, sled and fjall
//! lock their file, so a second run of a CLI would fail or lose its cache). The file lives in
//! the configured directory as `cache.sqlite3`, in WAL mode: readers never wait for a writer,
//! and writers take the lock up front (`BEGIN IMMEDIATE`) and wait for each other at most the
//! store's timeout (SQLite's busy timeout).
//!
//! - **Values** are the envelope bytes the codec writes, with an expiry per row (rows past it
//!   read as absent and are deleted as writes go by).
//! - **Size bound**: the bytes of keys and values are summed in a `meta` row kept by triggers.
//!   A write that takes the sum past `max_bytes` deletes expired rows, then the least recently
//!   used ones, down to 90 % of the bound: an eviction pays for many writes, and no write scans
//!   the table. Reads note their use at most once per [`TOUCH_EVERY`] per row, so a hot row
//!   costs no write per read.
//! - **Durability**: `synchronous = NORMAL` in WAL mode. A write is in the WAL (in the OS's
//!   hands) before the call that made it returns, so a process killed right after loses
//!   nothing; a power cut may lose the last writes, which a cache can afford.
//! - **Locks** (`#[cached(lock)]`) are rows with a token and a lease, taken in a write
//!   transaction: one caller per key on the machine.
//! - **Faults**: a directory that cannot be created or written, a full disk, a lock held past
//!   the timeout are errors the read path counts and falls back from. A file that is not a
//!   database or is corrupt is set aside (renamed `cache.sqlite3.corrupt-{time}`) and a new one
//!   created, so the next call (and the next process) has a working cache again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::clock;
use crate::store::{Budget, Failure, Op, Pending, Reply, SetEntry, SharedStore, StoreError};
use crate::sync::{lock, off_the_runtime};

/// The database file's name inside the store's directory.
pub(crate) const FILE_NAME: &str = "cache.sqlite3";

/// A read marks its row as used at most this often.
pub(crate) const TOUCH_EVERY: Duration = Duration::from_secs(30);

/// The default size bound: 1 GiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Keys asked in one statement of a multi-key read (SQLite allows 32 766 parameters).
const KEYS_PER_STATEMENT: usize = 500;

/// Idle connections kept for reuse.
const IDLE_CONNECTIONS: usize = 8;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        expires_at INTEGER,
        used_at INTEGER NOT NULL,
        size INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used_at);
    CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
    INSERT OR IGNORE INTO meta (name, value) VALUES ('bytes', 0);
    CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
        UPDATE meta SET value = value + NEW.size WHERE name = 'bytes';
    END;
    CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
        UPDATE meta SET value = value - OLD.size WHERE name = 'bytes';
    END;
    CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries BEGIN
        UPDATE meta SET value = value - OLD.size + NEW.size WHERE name = 'bytes';
    END;
    CREATE TABLE IF NOT EXISTS locks (
        key TEXT PRIMARY KEY NOT NULL,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    PRAGMA user_version = 1;
";

/// What went wrong with the disk store.
#[derive(Debug)]
pub(crate) enum DiskError {
    /// The directory could not be created or the file opened.
    Open { dir: PathBuf, reason: String },
    /// SQLite refused or failed a statement.
    Sqlite(rusqlite::Error),
}

impl DiskError {
    /// A short name of the kind of failure, for counters and rate-limited logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            DiskError::Open { .. } => "open",
            DiskError::Sqlite(e) => match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "busy",
                Some(ErrorCode::DiskFull) => "disk full",
                Some(ErrorCode::ReadOnly) => "read-only",
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => "corrupt",
                Some(ErrorCode::CannotOpen) => "cannot open",
                _ => "sqlite",
            },
        }
    }

    fn is_corruption(&self) -> bool {
        matches!(self, DiskError::Sqlite(e) if matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
        ))
    }
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskError::Open { dir, reason } => {
                write!(f, "disk store in {}: {reason}", dir.display())
            }
            DiskError::Sqlite(e) => write!(f, "disk store: {e}"),
        }
    }
}

impl std::error::Error for DiskError {}

impl DiskError {
    /// The error as the read path sees it: refusals that repeat on every call (a full or
    /// read-only disk, a directory that cannot hold the file) carry their kind, for warnings
    /// rate-limited per kind.
    fn into_failure(self) -> Failure {
        let kind = self.kind();
        let refusal = match kind {
            "busy" | "sqlite" => None,
            kind => Some(kind.to_owned()),
        };
        Failure::Store(StoreError {
            store: "disk",
            refusal,
            message: self.to_string(),
        })
    }
}

impl SharedStore for DiskStore {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn run(&self, op: Op<'_>, _budget: &Budget) -> std::result::Result<Reply, Failure> {
        let reply = match op {
            Op::Get(key) => self.get(key).map(Reply::Value),
            Op::GetMany(names) => {
                let keys: Vec<String> = names.iter().map(ToString::to_string).collect();
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                self.get_many(&keys).map(Reply::Values)
            }
            Op::Set { key, value, ttl } => self.set(key, value, ttl).map(|()| Reply::Done),
            Op::SetMany(entries) => self.set_many(entries).map(|()| Reply::Done),
            Op::Delete(key) => self.delete(key).map(|()| Reply::Done),
            Op::DeletePrefix(prefix) => self.delete_prefix(prefix).map(Reply::Count),
            Op::Lock { key, token, lease } => self.try_lock(key, token, lease).map(Reply::Locked),
            Op::Unlock { key, token } => self.unlock(key, token).map(|_| Reply::Done),
            // Processes of one machine share the file; there is no channel to announce on.
            Op::Announced { op, .. } => return self.run(*op, _budget),
        };
        reply.map_err(DiskError::into_failure)
    }

    /// SQLite answers from the local disk, within the busy timeout at worst: the operation
    /// runs on this thread, off the runtime's workers (see [`off_the_runtime`]).
    fn run_async<'a>(&'a self, op: Op<'a>, budget: &'a Budget) -> Pending<'a> {
        Box::pin(async move { off_the_runtime(|| self.run(op, budget)) })
    }
}

impl From<rusqlite::Error> for DiskError {
    fn from(e: rusqlite::Error) -> Self {
        DiskError::Sqlite(e)
    }
}

type Result<T> = std::result::Result<T, DiskError>;

/// The disk store of one directory.
pub(crate) struct DiskStore {
    dir: PathBuf,
    max_bytes: u64,
    timeout: Duration,
    idle: Mutex<Vec<Pooled>>,
}

/// A connection and the identity of the file it opened (to tell, after corruption, whether
/// the path still names that file).
struct Pooled {
    conn: Connection,
    file: Option<FileId>,
}

impl DiskStore {
    /// A store in `dir` (created when missing, lazily: nothing is opened here).
    pub(crate) fn new(dir: impl Into<PathBuf>, max_bytes: u64, timeout: Duration) -> Self {
        DiskStore {
            dir: dir.into(),
            max_bytes: max_bytes.max(1),
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Opens the file now, so that a directory that cannot hold it shows at set-up.
    pub(crate) fn check(&self) -> Result<()> {
        let conn = self.connection()?;
        self.park(conn);
        Ok(())
    }

    /// The value stored under `key`, if it has not expired.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.with(|conn| {
            let now = clock::unix_millis() as i64;
            let row = conn
                .prepare_cached(
                    "SELECT value, used_at FROM entries
                     WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                )?
                .query_row(params![key, now], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()?;
            Ok(row.map(|(value, used_at)| {
                touch(conn, &[(key, used_at)], now);
                value
            }))
        })
    }

    /// The values of `keys`, in order (`None` for absent or expired ones), read in one
    /// transaction.
    pub(crate) fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.with(|conn| {
            let now = clock::unix_millis() as i64;
            let mut found = std::collections::HashMap::with_capacity(keys.len());
            let tx = conn.transaction()?;
            for batch in keys.chunks(KEYS_PER_STATEMENT) {
                let marks = vec!["?"; batch.len()].join(",");
                let sql = format!(
                    "SELECT key, value, used_at FROM entries WHERE key IN ({marks})
                     AND (expires_at IS NULL OR expires_at > ?)"
                );
                let mut statement = tx.prepare_cached(&sql)?;
                let args = batch
                    .iter()
                    .map(|k| k as &dyn rusqlite::ToSql)
                    .chain(std::iter::once(&now as &dyn rusqlite::ToSql));
                let mut rows = statement.query(rusqlite::params_from_iter(args))?;
                while let Some(row) = rows.next()? {
                    let key: String = row.get(0)?;
                    found.insert(key, (row.get::<_, Vec<u8>>(1)?, row.get::<_, i64>(2)?));
                }
            }
            tx.finish()?;
            let used: Vec<(&str, i64)> = keys
                .iter()
                .filter_map(|k| found.get(*k).map(|(_, used_at)| (*k, *used_at)))
                .collect();
            touch(conn, &used, now);
            Ok(keys
                .iter()
                .map(|k| found.remove(*k).map(|(value, _)| value))
                .collect())
        })
    }

    /// Stores `value` under `key` for `ttl` (`None`: until evicted).
    pub(crate) fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.with(|conn| {
            let now = clock::unix_millis() as i64;
            let expires = ttl.map(|ttl| now.saturating_add(ttl.as_millis().max(1) as i64));
            let size = (key.len() + value.len()) as i64;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO entries (key, value, expires_at, used_at, size)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                    expires_at = excluded.expires_at, used_at = excluded.used_at,
                    size = excluded.size",
            )?
            .execute(params![key, value, expires, now, size])?;
            let total: i64 = tx
                .prepare_cached("SELECT value FROM meta WHERE name = 'bytes'")?
                .query_row([], |row| row.get(0))?;
            if total as u64 > self.max_bytes {
                evict(&tx, now, self.max_bytes / 10 * 9)?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Stores every entry in one transaction (one fsync), each for its own `ttl`.
    pub(crate) fn set_many(&self, entries: &[SetEntry<'_>]) -> Result<()> {
        self.with(|conn| {
            let now = clock::unix_millis() as i64;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO entries (key, value, expires_at, used_at, size)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                        expires_at = excluded.expires_at, used_at = excluded.used_at,
                        size = excluded.size",
                )?;
                for entry in entries {
                    let expires = entry
                        .ttl
                        .map(|ttl| now.saturating_add(ttl.as_millis().max(1) as i64));
                    let size = (entry.key.len() + entry.value.len()) as i64;
                    insert.execute(params![entry.key, entry.value, expires, now, size])?;
                }
            }
            let total: i64 = tx
                .prepare_cached("SELECT value FROM meta WHERE name = 'bytes'")?
                .query_row([], |row| row.get(0))?;
            if total as u64 > self.max_bytes {
                evict(&tx, now, self.max_bytes / 10 * 9)?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Removes `key`.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        self.with(|conn| {
            conn.prepare_cached("DELETE FROM entries WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
    }

    /// Removes every key that begins with `prefix`; how many were removed.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.with(|conn| {
            // Keys in [prefix, prefix + U+10FFFF): a range scan of the primary key.
            let end = format!("{prefix}\u{10FFFF}");
            let removed = conn
                .prepare_cached("DELETE FROM entries WHERE key >= ?1 AND key < ?2")?
                .execute([prefix, end.as_str()])?;
            Ok(removed as u64)
        })
    }

    /// Takes the lock `key` for `lease` under `token`, unless someone else holds it.
    pub(crate) fn try_lock(&self, key: &str, token: &str, lease: Duration) -> Result<bool> {
        self.with(|conn| {
            let now = clock::unix_millis() as i64;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM locks WHERE key = ?1 AND expires_at <= ?2")?
                .execute(params![key, now])?;
            let taken = tx
                .prepare_cached(
                    "INSERT INTO locks (key, token, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![key, token, now + lease.as_millis().max(1) as i64])?;
            tx.commit()?;
            Ok(taken == 1)
        })
    }

    /// Releases the lock `key` if `token` still holds it; whether it did.
    pub(crate) fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        self.with(|conn| {
            let removed = conn
                .prepare_cached("DELETE FROM locks WHERE key = ?1 AND token = ?2")?
                .execute([key, token])?;
            Ok(removed == 1)
        })
    }

    /// Runs `op` on a pooled connection. A corrupt file is set aside and `op` tried once more
    /// on a new one.
    fn with<T>(&self, op: impl Fn(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.connection()?;
        match op(&mut conn.conn) {
            Ok(value) => {
                self.park(conn);
                Ok(value)
            }
            Err(error) if error.is_corruption() => {
                self.set_aside(&conn);
                drop(conn);
                let mut conn = self.connection()?;
                let out = op(&mut conn.conn)?;
                self.park(conn);
                Ok(out)
            }
            // The connection is fine after any other error (busy, full, read-only).
            Err(error) => {
                self.park(conn);
                Err(error)
            }
        }
    }

    fn connection(&self) -> Result<Pooled> {
        if let Some(conn) = lock(&self.idle).pop() {
            return Ok(conn);
        }
        match self.open() {
            // `open` set the corrupt file aside (or another process had): once more.
            Err(error) if error.is_corruption() => self.open(),
            other => other,
        }
    }

    /// Opens the file the path names, and knows which file that is: processes that meet a
    /// corrupt file at the same time each open it, but only one sets it aside, and none
    /// sets aside the new file another has started meanwhile. The path is looked at before
    /// the file is opened and after: when it names the same file both times, that file is
    /// the one opened (a file set aside never comes back); when it changed, the open is tried
    /// again on what it names now.
    fn open(&self) -> Result<Pooled> {
        std::fs::create_dir_all(&self.dir).map_err(|e| DiskError::Open {
            dir: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let path = self.path();
        let mut tries = 0;
        loop {
            tries += 1;
            let before = FileId::of(&path);
            let conn = match self.open_file(&path) {
                Ok(conn) => conn,
                Err(error) => {
                    if error.is_corruption() {
                        set_aside_if_still(&path, before);
                    }
                    return Err(error);
                }
            };
            let after = FileId::of(&path);
            if before.is_none() || before == after || tries == 3 {
                return Ok(Pooled { conn, file: after });
            }
        }
    }

    fn open_file(&self, path: &Path) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(self.timeout)?;
        // `journal_mode` answers with the mode in force; a file another process just created
        // may still be switching, which the busy timeout covers.
        let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version != 1 {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))?;
        }
        Ok(conn)
    }

    fn park(&self, conn: Pooled) {
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Moves a corrupt file out of the way, unless another process already replaced it (its
    /// path then names a different file than `conn` has open).
    fn set_aside(&self, conn: &Pooled) {
        lock(&self.idle).clear();
        set_aside_if_still(&self.path(), conn.file);
    }
}

/// The platform's cache directory for `app`: `$XDG_CACHE_HOME/app` (when absolute) or
/// `~/.cache/app` on Linux and other Unixes, `~/Library/Caches/app` on macOS,
/// `%LOCALAPPDATA%\\app` on Windows. `None` when the environment names no home.
pub fn default_cache_dir(app: &str) -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|home| home.join("Library").join("Caches"))
    } else {
        var("XDG_CACHE_HOME")
            .filter(|dir| dir.is_absolute())
            .or_else(|| var("HOME").map(|home| home.join(".cache")))
    };
    base.map(|dir| dir.join(app))
}

/// What a disk store holds (see [`disk_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Entries stored, expired ones not yet removed included.
    pub entries: u64,
    /// Bytes of their keys and values (what `max_bytes` bounds).
    pub bytes: u64,
    /// Size of the database file and its write-ahead log.
    pub file_bytes: u64,
}

impl std::fmt::Display for DiskUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries, {} bytes of keys and values, {} bytes on disk",
            self.entries, self.bytes, self.file_bytes
        )
    }
}

/// What the disk store in `dir` holds (none of it if the directory has no store yet).
///
/// # Errors
///
/// [`Error::Disk`](crate::Error::Disk) when the file cannot be opened or read.
pub fn disk_usage(
    dir: impl AsRef<std::path::Path>,
) -> std::result::Result<DiskUsage, crate::error::Error> {
    let dir = dir.as_ref();
    let error = |reason: String| crate::error::Error::Disk {
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.join(FILE_NAME).exists() {
        return Ok(DiskUsage {
            entries: 0,
            bytes: 0,
            file_bytes: 0,
        });
    }
    let store = DiskStore::new(dir, DEFAULT_MAX_BYTES, Duration::from_secs(1));
    let (entries, bytes) = store
        .with(|conn| {
            let entries: i64 = conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?;
            let bytes: i64 =
                conn.query_row("SELECT value FROM meta WHERE name = 'bytes'", [], |r| {
                    r.get(0)
                })?;
            Ok((entries.max(0) as u64, bytes.max(0) as u64))
        })
        .map_err(|e| error(e.to_string()))?;
    let file_bytes = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("{FILE_NAME}{suffix}"))).ok())
        .map(|m| m.len())
        .sum();
    Ok(DiskUsage {
        entries,
        bytes,
        file_bytes,
    })
}

/// Notes that `rows` (key, when last noted) were read at `now`, for those not noted within
/// [`TOUCH_EVERY`]. Best effort: a busy database skips it.
fn touch(conn: &Connection, rows: &[(&str, i64)], now: i64) {
    let stale = now - TOUCH_EVERY.as_millis() as i64;
    let due: Vec<&str> = rows
        .iter()
        .filter(|(_, used_at)| *used_at < stale)
        .map(|(key, _)| *key)
        .collect();
    if due.is_empty() {
        return;
    }
    let result = (|| -> rusqlite::Result<()> {
        let mut statement =
            conn.prepare_cached("UPDATE entries SET used_at = ?2 WHERE key = ?1")?;
        for key in due {
            statement.execute(params![key, now])?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        tracing::trace!(%error, "disk store: could not note a read (skipped)");
    }
}

/// Deletes expired rows, then the least recently used, until at most `target` bytes remain.
/// Only the rows to delete are visited, oldest first, through the `used_at` index.
fn evict(tx: &rusqlite::Transaction<'_>, now: i64, target: u64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?1")?
        .execute([now])?;
    let total: i64 = tx
        .prepare_cached("SELECT value FROM meta WHERE name = 'bytes'")?
        .query_row([], |row| row.get(0))?;
    let mut excess = (total.max(0) as u64).saturating_sub(target);
    if excess == 0 {
        return Ok(());
    }
    let mut victims = Vec::new();
    {
        let mut oldest = tx.prepare_cached("SELECT key, size FROM entries ORDER BY used_at")?;
        let mut rows = oldest.query([])?;
        while excess > 0 {
            let Some(row) = rows.next()? else { break };
            victims.push(row.get::<_, String>(0)?);
            excess = excess.saturating_sub(row.get::<_, i64>(1)?.max(0) as u64);
        }
    }
    let mut delete = tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?;
    for key in &victims {
        delete.execute([key])?;
    }
    Ok(())
}

/// Sets the corrupt file `opened` aside if `path` still names it. Processes that met it at
/// the same time take turns (an exclusive `flock` on `cache.sqlite3.lock` beside it), so that
/// only the first moves it and none moves the new file the first one may have started since.
fn set_aside_if_still(path: &Path, opened: Option<FileId>) {
    let Some(opened) = opened else { return };
    let _turn = AsideTurn::take(path);
    if FileId::of(path) == Some(opened) {
        set_aside_file(path);
    }
}

/// A turn at setting a file aside: an exclusive `flock` held until dropped (Unix; elsewhere
/// no turns are taken).
struct AsideTurn {
    /// Held for its lock, released when closed.
    _file: Option<std::fs::File>,
}

impl AsideTurn {
    fn take(path: &Path) -> Self {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(name))
            .ok();
        #[cfg(unix)]
        let file = file.filter(|file| {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the duration of the call; `flock` reads no
            // memory of ours.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) == 0 }
        });
        AsideTurn { _file: file }
    }
}

/// Moves the file at `path` aside. Its write-ahead log and shared-memory index go first: once
/// the file is renamed, another process may start a new one at `path`, whose own log and index
/// must not be removed in its place.
fn set_aside_file(path: &Path) {
    let aside = path.with_file_name(format!("{FILE_NAME}.corrupt-{}", clock::unix_millis()));
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(
                file = %path.display(),
                set_aside = %aside.display(),
                "disk store: the database file was corrupt; set it aside and started a new one"
            );
        }
        Err(error) => tracing::warn!(
            file = %path.display(),
            %error,
            "disk store: the database file is corrupt and could not be set aside"
        ),
    }
}

/// Which file a path names (device and inode on Unix).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileId(u64, u64);

impl FileId {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| FileId(m.dev(), m.ino()))
    }

    #[cfg(not(unix))]
    fn of(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| FileId(m.len(), 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "cache-runtime-disk-{name}-{}-{}",
                std::process::id(),
                clock::now()
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store(dir: &TempDir) -> DiskStore {
        DiskStore::new(&dir.0, DEFAULT_MAX_BYTES, Duration::from_secs(1))
    }

    #[test]
    fn values_round_trip_and_absent_keys_are_none() {
        let dir = TempDir::new("round-trip");
        let store = store(&dir);
        assert_eq!(store.get("a").unwrap(), None);
        store.set("a", b"one", None).unwrap();
        store
            .set("b", b"two", Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(store.get("a").unwrap().as_deref(), Some(&b"one"[..]));
        store.set("a", b"uno", None).unwrap();
        assert_eq!(store.get("a").unwrap().as_deref(), Some(&b"uno"[..]));
        assert_eq!(
            store.get_many(&["b", "missing", "a"]).unwrap(),
            vec![Some(b"two".to_vec()), None, Some(b"uno".to_vec())]
        );
        store.delete("a").unwrap();
        assert_eq!(store.get("a").unwrap(), None);
    }

    #[test]
    fn many_values_are_written_in_one_transaction() {
        let dir = TempDir::new("set-many");
        let store = store(&dir);
        store.set("a", b"old", None).unwrap();
        let entries = [
            SetEntry {
                key: "a",
                value: b"new",
                ttl: None,
            },
            SetEntry {
                key: "b",
                value: b"two",
                ttl: Some(Duration::from_secs(60)),
            },
        ];
        store.set_many(&entries).unwrap();
        assert_eq!(
            store.get_many(&["a", "b", "c"]).unwrap(),
            vec![Some(b"new".to_vec()), Some(b"two".to_vec()), None]
        );
    }

    #[test]
    fn expired_rows_read_as_absent() {
        let dir = TempDir::new("expiry");
        let store = store(&dir);
        store
            .set("k", b"v", Some(Duration::from_millis(1)))
            .unwrap();
        let until = clock::unix_millis() + 2;
        while clock::unix_millis() <= until {
            std::hint::spin_loop();
        }
        assert_eq!(store.get("k").unwrap(), None);
        assert_eq!(store.get_many(&["k"]).unwrap(), vec![None]);
    }

    #[test]
    fn many_keys_are_read_in_batches() {
        let dir = TempDir::new("many");
        let store = store(&dir);
        let keys: Vec<String> = (0..1200).map(|i| format!("key:{i}")).collect();
        for key in keys.iter().step_by(2) {
            store.set(key, key.as_bytes(), None).unwrap();
        }
        let asked: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = store.get_many(&asked).unwrap();
        for (i, value) in values.iter().enumerate() {
            let expected = (i % 2 == 0).then(|| keys[i].as_bytes().to_vec());
            assert_eq!(value, &expected, "key {i}");
        }
    }

    #[test]
    fn a_prefix_is_deleted_and_nothing_else() {
        let dir = TempDir::new("prefix");
        let store = store(&dir);
        for key in ["app:f:v0:1", "app:f:v0:2", "app:g:v0:1", "app:f"] {
            store.set(key, b"x", None).unwrap();
        }
        assert_eq!(store.delete_prefix("app:f:").unwrap(), 2);
        let left = store
            .get_many(&["app:f:v0:1", "app:f:v0:2", "app:g:v0:1", "app:f"])
            .unwrap();
        assert_eq!(
            left,
            vec![None, None, Some(b"x".to_vec()), Some(b"x".to_vec())]
        );
    }

    #[test]
    fn the_size_bound_evicts_the_least_recently_used() {
        let dir = TempDir::new("bound");
        // Room for about ten rows of 1 kB.
        let store = DiskStore::new(&dir.0, 10_500, Duration::from_secs(1));
        let value = vec![7u8; 1000];
        for i in 0..10 {
            store.set(&format!("k{i}"), &value, None).unwrap();
        }
        // k0 is the oldest write, but read since: it is not the least recently used.
        store
            .with(|conn| {
                conn.execute(
                    "UPDATE entries SET used_at = used_at - 100000 WHERE key != 'k0'",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        for i in 10..14 {
            store.set(&format!("k{i}"), &value, None).unwrap();
        }
        let total: i64 = store
            .with(|conn| {
                Ok(
                    conn.query_row("SELECT value FROM meta WHERE name = 'bytes'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .unwrap();
        let summed: i64 = store
            .with(|conn| Ok(conn.query_row("SELECT SUM(size) FROM entries", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(total, summed, "the running total matches the rows");
        assert!(total as u64 <= 10_500, "{total} bytes kept");
        assert!(
            store.get("k0").unwrap().is_some(),
            "the recently used row stays"
        );
        assert!(store.get("k13").unwrap().is_some(), "the newest row stays");
        assert!(
            store.get("k1").unwrap().is_none(),
            "the least recently used row went"
        );
    }

    #[test]
    fn a_lock_has_one_owner_until_released_or_its_lease_ends() {
        let dir = TempDir::new("lock");
        let store = store(&dir);
        assert!(store
            .try_lock("k:lock", "a", Duration::from_secs(10))
            .unwrap());
        assert!(!store
            .try_lock("k:lock", "b", Duration::from_secs(10))
            .unwrap());
        assert!(
            !store.unlock("k:lock", "b").unwrap(),
            "only the owner releases it"
        );
        assert!(store.unlock("k:lock", "a").unwrap());
        assert!(store
            .try_lock("k:lock", "b", Duration::from_millis(1))
            .unwrap());
        let until = clock::unix_millis() + 2;
        while clock::unix_millis() <= until {
            std::hint::spin_loop();
        }
        assert!(
            store
                .try_lock("k:lock", "c", Duration::from_secs(10))
                .unwrap(),
            "lease over"
        );
    }

    #[test]
    fn two_stores_on_one_directory_share_values() {
        let dir = TempDir::new("shared");
        let (a, b) = (store(&dir), store(&dir));
        a.set("k", b"from a", None).unwrap();
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"from a"[..]));
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_replaced() {
        let dir = TempDir::new("corrupt");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join(FILE_NAME), vec![0xAB; 8192]).unwrap();
        let store = store(&dir);
        store.set("k", b"v", None).unwrap();
        assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        let aside = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .count();
        assert_eq!(aside, 1, "the corrupt file was kept aside");
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_an_error() {
        let dir = TempDir::new("blocked");
        std::fs::write(&dir.0, b"a file where the directory should be").unwrap();
        let store = store(&dir);
        let error = store.set("k", b"v", None).unwrap_err();
        assert_eq!(error.kind(), "open", "{error}");
        assert!(store.get("k").is_err());
        let _ = std::fs::remove_file(&dir.0);
    }
}
