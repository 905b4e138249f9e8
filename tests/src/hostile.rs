//! Tiny hostile TCP servers a test starts on a free loopback port, for what a real Redis does
//! not do on demand: [`Hostile::silent`] accepts connections and never answers (nor completes
//! a TLS handshake); [`Hostile::trickle`] answers every request with a long, valid reply, a few
//! bytes at a time. Each stops when dropped (its threads end within one trickle pause).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A hostile server; stops when dropped.
pub struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
}

/// Bytes of the bulk string a trickling server answers with.
const TRICKLED_REPLY: usize = 1200;

impl Hostile {
    /// Accepts connections and holds them open without ever writing a byte.
    pub fn silent() -> Self {
        Self::start(|stream, _stop| Some(stream))
    }

    /// Answers each request (whatever it is) with a bulk string of 1200 bytes, sent `chunk`
    /// bytes every `pause`.
    pub fn trickle(chunk: usize, pause: Duration) -> Self {
        Self::start(move |stream, stop| {
            std::thread::spawn(move || trickle(stream, chunk, pause, &stop));
            None
        })
    }

    fn start(
        handle: impl Fn(TcpStream, Arc<AtomicBool>) -> Option<TcpStream> + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let acceptor = {
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, SeqCst);
                    held.extend(handle(stream, Arc::clone(&stop)));
                }
            })
        };
        Hostile {
            port,
            stop,
            accepted,
            acceptor: Some(acceptor),
        }
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wakes the acceptor up so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads a request, trickles the reply, and again, until the client goes or the server stops.
fn trickle(mut stream: TcpStream, chunk: usize, pause: Duration, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reply = format!("${TRICKLED_REPLY}\r\n").into_bytes();
    reply.extend(std::iter::repeat_n(b'x', TRICKLED_REPLY));
    reply.extend(b"\r\n");
    let mut request = [0; 4096];
    loop {
        match stream.read(&mut request) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        for piece in reply.chunks(chunk) {
            if stop.load(SeqCst) || stream.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    }
}
