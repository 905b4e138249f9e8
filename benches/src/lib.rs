//! Shared set-up for the benches: a private `redis-server` on a free loopback port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one (from `$REDIS_SERVER` or `redis-server` on `PATH`) and waits for it.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{binary}`: {e}; install redis-server"));
        let redis = Redis { child, port };
        let started = Instant::now();
        while redis.connection().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A blocking connection, once the server answers.
    pub fn connection(&self) -> Option<redis::Connection> {
        let mut conn = redis::Client::open(self.url())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A value of about 200 bytes, the size of a small rendered fragment.
pub fn fragment(n: u64) -> String {
    format!("<div class=\"fragment\">{n}</div>{}", "x".repeat(170))
}

/// Starts a private Redis and points both `cache_runtime` (prefix `bench`) and the `cached`
/// crate's Redis store at it.
pub fn redis_for_both() -> Redis {
    let redis = Redis::start();
    cache_runtime::Config::new()
        .redis(redis.url())
        .prefix("bench")
        .install()
        .expect("install");
    // Called before the benches start any thread, so no other thread reads the environment.
    std::env::set_var("CACHED_REDIS_CONNECTION_STRING", redis.url());
    redis
}

/// The `cached` crate's Redis store on the same fragments (its only layer is Redis).
#[cached::proc_macro::concurrent_cached(
    redis = true,
    ttl_secs = 600,
    map_error = r##"|e| format!("{e:?}")"##
)]
pub fn cached_redis(n: u64) -> Result<String, String> {
    Ok(fragment(n))
}
