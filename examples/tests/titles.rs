//! The `titles` binary against a real HTTP server the test starts on a free loopback port:
//! requests counted per path, ETag and Last-Modified revalidation, error statuses, a slow
//! page and a non-HTML one. Each test has its own cache directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server saw on one path.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    requests: u32,
    conditional: u32,
    not_modified: u32,
}

#[derive(Default)]
struct State {
    seen: HashMap<String, Seen>,
    /// Bumped to change a page's body and ETag.
    version: u32,
}

/// An HTTP/1.1 server on a free loopback port, one thread per connection, stopped with the
/// test process.
struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self, path: &str) -> Seen {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    fn change_pages(&self) {
        self.state.lock().unwrap().version += 1;
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let version = {
        let mut state = state.lock().unwrap();
        let version = state.version;
        let seen = state.seen.entry(path.clone()).or_default();
        seen.requests += 1;
        if headers.contains_key("if-none-match") || headers.contains_key("if-modified-since") {
            seen.conditional += 1;
        }
        version
    };
    let html = "text/html; charset=utf-8";
    let (status, kind, extra, body): (&str, &str, String, String) = match path.as_str() {
        p if p.starts_with("/page/") => {
            let name = &p["/page/".len()..];
            let etag = format!("\"{name}-v{version}\"");
            if headers.get("if-none-match") == Some(&etag) {
                (
                    "304 Not Modified",
                    html,
                    format!("ETag: {etag}\r\n"),
                    String::new(),
                )
            } else {
                let body = format!(
                    "<html><body><h1>{name} v{version}</h1><p>text</p>\
                     <h2>About {name}</h2><h3>Details</h3></body></html>"
                );
                ("200 OK", html, format!("ETag: {etag}\r\n"), body)
            }
        }
        "/dated" => {
            let date = "Tue, 01 Dec 2026 08:00:00 GMT";
            if headers.get("if-modified-since").map(String::as_str) == Some(date) {
                ("304 Not Modified", html, String::new(), String::new())
            } else {
                let body = "<h1>Dated</h1>".to_string();
                ("200 OK", html, format!("Last-Modified: {date}\r\n"), body)
            }
        }
        "/missing" => ("404 Not Found", html, String::new(), "<h1>nope</h1>".into()),
        "/broken" => (
            "500 Internal Server Error",
            html,
            String::new(),
            String::new(),
        ),
        "/json" => (
            "200 OK",
            "application/json",
            String::new(),
            "{\"h1\":1}".into(),
        ),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(5));
            ("200 OK", html, String::new(), "<h1>Slow</h1>".into())
        }
        _ => ("404 Not Found", html, String::new(), String::new()),
    };
    if status.starts_with("304") {
        state
            .lock()
            .unwrap()
            .seen
            .get_mut(&path)
            .unwrap()
            .not_modified += 1;
    }
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A cache directory of the test's own, removed on drop.
struct CacheDir(PathBuf);

impl CacheDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        CacheDir(
            std::env::temp_dir().join(format!("titles-test-{name}-{}-{nanos}", std::process::id())),
        )
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn titles(dir: &CacheDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_titles"))
        .arg("--cache-dir")
        .arg(&dir.0)
        .args(args)
        .output()
        .expect("run titles")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn headings_are_printed_and_a_second_run_makes_no_request() {
    let server = Server::start();
    let dir = CacheDir::new("second-run");
    let (a, b) = (server.url("/page/a"), server.url("/page/b"));
    let first = titles(&dir, &[&a, &b]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first),
        format!("{a}\n  h1 a v0\n  h2 About a\n  h3 Details\n{b}\n  h1 b v0\n  h2 About b\n  h3 Details\n")
    );
    let second = titles(&dir, &[&a, &b]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&second), stdout(&first));
    assert_eq!(server.seen("/page/a").requests, 1, "answered from disk");
    assert_eq!(server.seen("/page/b").requests, 1);
}

#[test]
fn after_the_ttl_a_304_reuses_the_stored_page_and_renews_it() {
    let server = Server::start();
    let dir = CacheDir::new("revalidate");
    let (page, dated) = (server.url("/page/r"), server.url("/dated"));
    assert!(titles(&dir, &[&page, &dated]).status.success());
    // A TTL of zero: every stored page is due for revalidation.
    let revalidated = titles(&dir, &["--ttl", "0s", &page, &dated]);
    assert!(revalidated.status.success(), "{}", stderr(&revalidated));
    assert!(stdout(&revalidated).contains("h1 r v0"));
    assert!(stdout(&revalidated).contains("h1 Dated"));
    for path in ["/page/r", "/dated"] {
        let seen = server.seen(path);
        assert_eq!(
            (seen.requests, seen.conditional, seen.not_modified),
            (2, 1, 1),
            "{path}"
        );
    }
    // Stored again with a new lifetime: within the default TTL, no request.
    assert!(titles(&dir, &[&page, &dated]).status.success());
    assert_eq!(server.seen("/page/r").requests, 2);
    assert_eq!(server.seen("/dated").requests, 2);
    // A changed page is fetched whole on revalidation and replaces the stored one.
    server.change_pages();
    let changed = titles(&dir, &["--ttl", "0s", &page]);
    assert!(stdout(&changed).contains("h1 r v1"), "{}", stdout(&changed));
    let after = titles(&dir, &[&page]);
    assert!(stdout(&after).contains("h1 r v1"));
    assert_eq!(server.seen("/page/r").requests, 3);
}

#[test]
fn two_runs_at_once_on_one_cache_directory_both_succeed() {
    let server = Server::start();
    let dir = CacheDir::new("concurrent");
    let urls: Vec<String> = (0..12)
        .map(|i| server.url(&format!("/page/p{i}")))
        .collect();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_titles"))
            .arg("--cache-dir")
            .arg(&dir.0)
            .args(&urls)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn titles")
    };
    let (one, two) = (spawn(), spawn());
    let (one, two) = (
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    );
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(two.status.success(), "{}", stderr(&two));
    assert_eq!(stdout(&one), stdout(&two));
    for i in 0..12 {
        assert!(stdout(&one).contains(&format!("h1 p{i} v0")));
    }
    let requests = || -> u32 {
        (0..12)
            .map(|i| server.seen(&format!("/page/p{i}")).requests)
            .sum()
    };
    let before_third = requests();
    assert!(
        before_third <= 24,
        "at most one request per page per run ({before_third})"
    );
    // A third run finds every page the two stored.
    let third = titles(&dir, &urls.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(third.status.success());
    assert_eq!(requests(), before_third, "the third run made no request");
}

#[test]
fn no_cache_always_fetches_and_stores_nothing() {
    let server = Server::start();
    let dir = CacheDir::new("no-cache");
    let page = server.url("/page/n");
    assert!(titles(&dir, &["--no-cache", &page]).status.success());
    assert!(titles(&dir, &["--no-cache", &page]).status.success());
    assert_eq!(server.seen("/page/n").requests, 2);
    assert!(titles(&dir, &[&page]).status.success());
    assert_eq!(server.seen("/page/n").requests, 3, "nothing was stored");
}

#[test]
fn failures_get_a_line_each_a_failing_exit_code_and_are_not_stored() {
    let server = Server::start();
    let dir = CacheDir::new("failures");
    let good = server.url("/page/ok");
    let bad = [
        ("not a url", "not a valid http(s) URL"),
        ("/missing", "the server answered 404 Not Found"),
        ("/broken", "the server answered 500 Internal Server Error"),
        ("/json", "not an HTML page (Content-Type: application/json)"),
        ("/slow", "no answer within the timeout"),
    ];
    let urls: Vec<String> = bad
        .iter()
        .map(|(path, _)| {
            if path.starts_with('/') {
                server.url(path)
            } else {
                path.to_string()
            }
        })
        .collect();
    let mut args = vec!["--timeout", "500ms", good.as_str()];
    args.extend(urls.iter().map(String::as_str));
    let run = titles(&dir, &args);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("h1 ok v0"),
        "the good page is still printed"
    );
    let errors = stderr(&run);
    for ((_, message), url) in bad.iter().zip(&urls) {
        assert!(
            errors.contains(&format!("titles: {url}: {message}")),
            "missing `{url}: {message}` in:\n{errors}"
        );
    }
    let again = titles(&dir, &["--timeout", "500ms", &urls[1], &urls[2], &urls[3]]);
    assert_eq!(again.status.code(), Some(1));
    for path in ["/missing", "/broken", "/json"] {
        assert_eq!(server.seen(path).requests, 2, "{path} was not stored");
    }
}

#[test]
fn cache_stats_counts_pages_and_cache_clear_empties_the_store() {
    let server = Server::start();
    let dir = CacheDir::new("stats");
    let (a, b) = (server.url("/page/s1"), server.url("/page/s2"));
    assert!(titles(&dir, &[&a, &b]).status.success());
    let stats = titles(&dir, &["cache", "stats"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    assert!(stdout(&stats).contains("2 entries"), "{}", stdout(&stats));
    let clear = titles(&dir, &["cache", "clear"]);
    assert!(clear.status.success(), "{}", stderr(&clear));
    assert!(stdout(&titles(&dir, &["cache", "stats"])).contains("0 entries"));
    assert!(titles(&dir, &[&a]).status.success());
    assert_eq!(
        server.seen("/page/s1").requests,
        2,
        "fetched again after the clear"
    );
}
