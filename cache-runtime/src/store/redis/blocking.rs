//! A blocking Redis connection whose every step ends by the deadline of the operation it is
//! part of: connect, TLS handshake, AUTH / SELECT, the request, and each read of the reply.
//!
//! redis-rs' own blocking connection applies its timeouts per socket read, so a server that
//! trickles its reply a few bytes at a time holds a call for as long as it likes. Here each read
//! first sets the socket's read timeout to the time left before the deadline (or fails when
//! none is left); redis-rs is used for what it is good at: packing commands and parsing replies.
//!
//! The handshake is taken from the parsed URL: `AUTH [user] password` and `SELECT db`, sent
//! in one round-trip (RESP2; the `protocol` parameter of a URL is not used).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redis::{
    ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, Parser, RedisError, RedisResult,
    Value,
};

use super::Request;

/// Why [`Connection::open`] failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The server could not be reached, or did not answer in time.
    Unreachable(RedisError),
    /// The server answered and refused the handshake: wrong credentials, or a bad db index.
    Refused(String),
}

impl From<OpenError> for RedisError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Unreachable(e) => e,
            OpenError::Refused(reply) => RedisError::from((
                ErrorKind::AuthenticationFailed,
                "redis refused the handshake (AUTH / SELECT)",
                reply,
            )),
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Unreachable(e) => write!(f, "{e}"),
            OpenError::Refused(reply) => write!(f, "redis refused the handshake: {reply}"),
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(timeout)),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_write_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.set_write_timeout(Some(timeout)),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(_) => Ok(()),
            #[cfg(unix)]
            Stream::Unix(_) => Ok(()),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A socket and the timeouts last set on it, so that a request whose deadline is as far
/// away as the last one's costs no `setsockopt`.
struct Timed {
    stream: Stream,
    read_set: Option<Duration>,
    write_set: Option<Duration>,
    deadline: Instant,
}

/// The time left before `deadline`, or a timeout error when none is.
pub(super) fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "redis operation ran out of time",
        ));
    }
    Ok(left)
}

/// The socket timeout to use with `left` to go: rounded down to the millisecond (so that
/// operations with the same timeout set the same value and the socket keeps it), or `left`
/// itself under a millisecond. A read that times out early for the rounding is tried again
/// with what is left.
fn quantized(left: Duration) -> Duration {
    let whole = Duration::from_millis(left.as_millis() as u64);
    if whole.is_zero() {
        left
    } else {
        whole
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Timed {
    fn arm_read(&mut self) -> io::Result<()> {
        let wanted = quantized(left(self.deadline)?);
        if self.read_set != Some(wanted) {
            self.read_set = None;
            self.stream.set_read_timeout(wanted)?;
            self.read_set = Some(wanted);
        }
        Ok(())
    }

    fn arm_write(&mut self) -> io::Result<()> {
        let wanted = quantized(left(self.deadline)?);
        if self.write_set != Some(wanted) {
            self.write_set = None;
            self.stream.set_write_timeout(wanted)?;
            self.write_set = Some(wanted);
        }
        Ok(())
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.arm_write()?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Timed out early for the rounding: `arm_write` says whether time is left.
                Err(e) if timed_out(&e) => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            self.arm_write()?;
            match self.stream.flush() {
                Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.arm_read()?;
            match self.stream.read(buf) {
                Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }
}

/// One blocking connection, ready for requests.
pub(crate) struct Connection {
    io: Timed,
    parser: Parser,
    out: Vec<u8>,
}

/// What came of one request.
pub(crate) enum Answer<T> {
    /// The reply, converted.
    Value(T),
    /// The server's error reply, or a reply that did not convert: read whole, so the
    /// connection is still in step.
    Refused(RedisError),
}

impl Connection {
    /// Connects to the server `info` names and runs the handshake, all by `deadline`.
    pub(crate) fn open(
        info: &ConnectionInfo,
        tls: &super::Tls,
        deadline: Instant,
    ) -> Result<Connection, OpenError> {
        let unreachable = |e: io::Error| OpenError::Unreachable(e.into());
        let stream = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                Stream::Tcp(connect_tcp(host, *port, deadline).map_err(unreachable)?)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                Stream::Unix(UnixStream::connect(path).map_err(unreachable)?)
            }
            #[cfg(feature = "tls")]
            ConnectionAddr::TcpTls { host, port, .. } => {
                let tcp = connect_tcp(host, *port, deadline).map_err(unreachable)?;
                let tls = tls.handshake(host, tcp, deadline).map_err(unreachable)?;
                Stream::Tls(Box::new(tls))
            }
            _ => {
                let _ = tls;
                return Err(OpenError::Unreachable(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "this kind of Redis address is not supported",
                ))));
            }
        };
        let mut conn = Connection {
            io: Timed {
                stream,
                read_set: None,
                write_set: None,
                deadline,
            },
            parser: Parser::new(),
            out: Vec::new(),
        };
        conn.handshake(info, deadline)?;
        Ok(conn)
    }

    /// `AUTH` and `SELECT` as the URL asks, pipelined; an error reply to either refuses
    /// the connection.
    fn handshake(&mut self, info: &ConnectionInfo, deadline: Instant) -> Result<(), OpenError> {
        let settings = info.redis_settings();
        let mut pipe = redis::pipe();
        if let Some(password) = settings.password() {
            let auth = pipe.cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            pipe.cmd("SELECT").arg(settings.db());
        }
        if pipe.is_empty() {
            return Ok(());
        }
        let replies = self
            .exchange(&Request::Many(pipe), deadline)
            .map_err(OpenError::Unreachable)?;
        for reply in replies {
            if let Value::ServerError(error) = reply {
                return Err(OpenError::Refused(error.to_string()));
            }
        }
        Ok(())
    }

    /// Sends `request` and reads its reply by `deadline`. An `Err` means the connection is
    /// out of step or dead and must be dropped.
    pub(crate) fn request<T: FromRedisValue>(
        &mut self,
        request: &Request,
        deadline: Instant,
    ) -> RedisResult<Answer<T>> {
        let mut replies = self.exchange(request, deadline)?;
        if let Some(error) = replies.iter().find_map(|reply| match reply {
            Value::ServerError(error) => Some(RedisError::from(error.clone())),
            _ => None,
        }) {
            return Ok(Answer::Refused(error));
        }
        let value = match request {
            Request::One(_) => replies.pop().unwrap_or(Value::Nil),
            Request::Many(_) => Value::Array(replies),
        };
        Ok(match T::from_redis_value(value) {
            Ok(value) => Answer::Value(value),
            Err(e) => Answer::Refused(e.into()),
        })
    }

    /// Writes `request` without reading its reply (see [`receive`](Self::receive)): requests
    /// to several servers can be in flight at once. Returns how many replies to read.
    pub(crate) fn send(&mut self, request: &Request, deadline: Instant) -> RedisResult<usize> {
        self.io.deadline = deadline;
        self.out.clear();
        let commands = match request {
            Request::One(cmd) => {
                cmd.write_packed_command(&mut self.out);
                1
            }
            Request::Many(pipe) => {
                for cmd in pipe.cmd_iter() {
                    cmd.write_packed_command(&mut self.out);
                }
                pipe.len()
            }
        };
        self.io.write_all(&self.out)?;
        Ok(commands)
    }

    /// Reads the replies of a [`send`](Self::send), error replies included, by `deadline`.
    /// An `Err` means the connection is out of step or dead and must be dropped.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn receive(
        &mut self,
        commands: usize,
        deadline: Instant,
    ) -> RedisResult<Vec<Value>> {
        self.io.deadline = deadline;
        let mut replies = Vec::with_capacity(commands);
        for _ in 0..commands {
            replies.push(self.parser.parse_value(&mut self.io)?);
        }
        Ok(replies)
    }

    /// Writes the request and reads one reply per command.
    fn exchange(&mut self, request: &Request, deadline: Instant) -> RedisResult<Vec<Value>> {
        let commands = self.send(request, deadline)?;
        let mut replies = Vec::with_capacity(commands);
        for _ in 0..commands {
            replies.push(self.parser.parse_value(&mut self.io)?);
        }
        Ok(replies)
    }

    /// Reads the next value the server sends (a pushed message on a subscribed connection),
    /// by `deadline`; a timeout with nothing read leaves the connection in step.
    pub(crate) fn receive_one(&mut self, deadline: Instant) -> RedisResult<Value> {
        self.io.deadline = deadline;
        self.parser.parse_value(&mut self.io)
    }
}

/// Connects to the first address of `host` that answers, by `deadline`. (Resolving a name
/// is the system's blocking lookup; an IP address or `localhost` costs nothing.)
fn connect_tcp(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host name has no address")))
}
