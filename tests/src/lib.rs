//! Test harness: a real `redis-server` per test, on a free loopback port.
//!
//! ```no_run
//! let server = integration_tests::RedisServer::start();
//! cache_runtime::Config::new().redis(server.url()).install().unwrap();
//! // ... calls ...
//! assert_eq!(server.calls("get"), 1);
//! ```
//!
//! The server is cache-runtime's own test harness (`cache_runtime::testing::RedisServer`,
//! the `testing` feature): started from `$REDIS_SERVER` or `redis-server` on `PATH`, with no
//! persistence, and killed when the handle drops; `kill` and `restart` (same port) let fault
//! tests take it away and bring it back. This crate adds a redis-rs
//! [`connection`](RedisServer::connection).

pub mod cluster;
pub mod disk;
pub mod hostile;
pub mod info;
pub mod logs;
pub mod tls;
pub mod values;

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// [`cache_runtime::testing::RedisServer`] (start, url, kill, restart, command counts, ...)
/// plus [`connection`](Self::connection), a redis-rs connection for tests that set up or
/// inspect data.
pub struct RedisServer(cache_runtime::testing::RedisServer);

impl RedisServer {
    /// [`cache_runtime::testing::RedisServer::start`].
    pub fn start() -> Self {
        RedisServer(cache_runtime::testing::RedisServer::start())
    }

    /// A direct connection, for setting up or inspecting data.
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| {
                panic!("redis-server on port {} is not answering: {e}", self.port())
            })
    }
}

impl Deref for RedisServer {
    type Target = cache_runtime::testing::RedisServer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
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
