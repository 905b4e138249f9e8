//! Test harness: a real `redis-server` per test, on a free loopback port.
//!
//! ```no_run
//! let server = integration_tests::RedisServer::start();
//! cache_runtime::Config::new().redis(server.url()).install().unwrap();
//! // ... calls ...
//! assert_eq!(server.calls("get"), 1);
//! ```
//!
//! The server is started from `$REDIS_SERVER` or `redis-server` on `PATH`, with no
//! persistence, and killed when the handle drops. [`RedisServer::kill`] and
//! [`RedisServer::restart`] (same port) let fault tests take it away and bring it back.

pub mod cluster;
pub mod disk;
pub mod hostile;
pub mod info;
pub mod logs;
pub mod tls;
pub mod values;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A `redis-server` child process owned by a test.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers PING.
    ///
    /// # Panics
    ///
    /// With a message saying how to install it, when `redis-server` cannot be found.
    pub fn start() -> Self {
        let port = free_port();
        let mut server = RedisServer { port, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start `{binary}` ({e}). The behaviour tests need a real Redis: \
                     install it (`apt-get install redis-server`, `brew install redis`) or point \
                     $REDIS_SERVER at the binary"
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while self.try_connection().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A direct connection, for setting up or inspecting data.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .unwrap_or_else(|| panic!("redis-server on port {} is not answering", self.port))
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let addr = format!("127.0.0.1:{}", self.port);
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(200)).ok()?;
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }

    /// How many times each command ran since the last [`reset_stats`](Self::reset_stats),
    /// from Redis' own `INFO commandstats` (lowercase names: `get`, `set`, `mget`, ...).
    pub fn command_counts(&self) -> HashMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection())
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, fields) = rest.split_once(':')?;
                let calls = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    /// Calls of one command (lowercase) since the last reset; the harness' own `INFO` and
    /// `CONFIG` calls are not excluded, so count only data commands with it.
    pub fn calls(&self, command: &str) -> u64 {
        self.command_counts().get(command).copied().unwrap_or(0)
    }

    /// Zeroes `INFO commandstats`.
    pub fn reset_stats(&self) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut self.connection())
            .expect("CONFIG RESETSTAT");
    }

    /// Removes every key.
    pub fn flush(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.connection())
            .expect("FLUSHALL");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The cache configuration is process-wide, so tests in one binary that install one must not
/// overlap: each holds this lock for its whole run.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a server, installs a config pointing at it with `prefix`, and returns both the
/// server and the serial-test guard.
pub fn with_redis(prefix: &str) -> (MutexGuard<'static, ()>, RedisServer) {
    let guard = serial();
    let server = RedisServer::start();
    cache_runtime::Config::new()
        .redis(server.url())
        .prefix(prefix)
        .install()
        .expect("install");
    server.reset_stats();
    (guard, server)
}
