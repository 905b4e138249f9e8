//! A real `redis-server` child process per test, on a free loopback port.
//!
//! The harness speaks just enough RESP over a `TcpStream` for its own commands (PING, INFO,
//! CONFIG RESETSTAT, FLUSHALL), so it needs no Redis client crate; each of them opens a
//! connection of its own, so none is left open between two readings.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process owned by a test: started on a free loopback port with no
/// persistence, killed (SIGKILL) when dropped.
///
/// ```no_run
/// use cache_runtime::{cached, testing::RedisServer, Config};
///
/// #[cached(ttl = 60)]
/// fn square(n: u64) -> u64 { n * n }
///
/// let server = RedisServer::start();
/// Config::new().redis(server.url()).install().unwrap();
/// server.reset_stats();
/// square(3);
/// assert_eq!(server.calls("get"), 1); // L1 was cold, so Redis was asked once
/// square(3);
/// assert_eq!(server.calls("get"), 1); // then L1 answered
/// ```
///
/// The binary is `$REDIS_SERVER` if set, else `redis-server` on `PATH`.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits (up to 10 s) until it answers PING.
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot be started (the message says how to install it), or when
    /// it does not answer within 10 s.
    pub fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
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
                    "could not start `{binary}` ({e}). RedisServer needs a real Redis: install \
                     it (`apt-get install redis-server`, `brew install redis`, or build it from \
                     https://redis.io/download) or point $REDIS_SERVER at the binary"
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while self.command(&["PING"]).is_err() {
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

    /// Kills the server (SIGKILL) and waits for it to exit; a no-op if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// How many times each command ran since the server started or the last
    /// [`reset_stats`](Self::reset_stats), from Redis' own `INFO commandstats` (lowercase
    /// names: `get`, `set`, `mget`, ...).
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn command_counts(&self) -> HashMap<String, u64> {
        parse_command_counts(&self.expect(&["INFO", "commandstats"]))
    }

    /// Calls of one command (lowercase) since the last reset. The harness' own `INFO` and
    /// `CONFIG` calls are counted too, so count data commands with it.
    pub fn calls(&self, command: &str) -> u64 {
        self.command_counts().get(command).copied().unwrap_or(0)
    }

    /// Zeroes the counts (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        self.expect(&["CONFIG", "RESETSTAT"]);
    }

    /// Removes every key (`FLUSHALL`).
    pub fn flush(&self) {
        self.expect(&["FLUSHALL"]);
    }

    /// Sends one command on a fresh connection and returns its reply as text (a status, a
    /// bulk string or an integer), or the error (also an error reply) as text.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let timeout = Some(Duration::from_secs(5));
        stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(timeout)
            .map_err(|e| e.to_string())?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        read_reply(&mut BufReader::new(stream))
    }

    fn expect(&self, args: &[&str]) -> String {
        self.command(args).unwrap_or_else(|e| {
            panic!(
                "{} on redis-server port {} failed: {e}",
                args.join(" "),
                self.port
            )
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One RESP2 reply that is not an array.
fn read_reply(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(rest.to_owned()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad length {rest:?}"))?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut body = vec![0; len as usize + 2];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body.truncate(len as usize);
            String::from_utf8(body).map_err(|e| e.to_string())
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

/// The `calls` of each command in the text of an `INFO commandstats` reply, by lowercase
/// name (for servers the harness did not start, such as the nodes of a cluster).
pub fn parse_command_counts(info: &str) -> HashMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// A loopback port no socket is bound to right now (the OS picks it; another process could
/// take it before you bind it, which is rare).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
