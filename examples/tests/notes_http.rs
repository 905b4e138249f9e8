//! The notes example (`examples/src/notes.rs`) over real HTTP against a harness Redis: a page
//! rendered in a preload scope costs one MGET and no GET; the same page without the scope, on
//! a cold L1, costs one GET per fragment; with Redis gone the site still serves its pages;
//! after Redis restarts the counts come back.
//!
//! The fragments' L1 is process-wide, so each test starts with `POST /clear-local` and uses
//! its own note ids.

use std::net::SocketAddr;

use examples::notes::{page_keys, router, App, COMMENTS_PER_NOTE};
use integration_tests::with_redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves the site on a free loopback port, configured for `redis_url`.
async fn serve(redis_url: &str) -> SocketAddr {
    let app = App::new(redis_url).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(app)).await.unwrap() });
    request(addr, "POST", "/clear-local").await;
    addr
}

/// A minimal HTTP/1.1 request that must answer 200; returns the whole response as text.
async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = response.split_once("\r\n\r\n")?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The `x-redis-commands` header: Redis' own GET/MGET/SET counts while the page rendered.
fn redis_commands(response: &str) -> &str {
    header(response, "x-redis-commands")
        .unwrap_or_else(|| panic!("no x-redis-commands header in {response}"))
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
async fn a_preloaded_page_costs_one_mget_and_without_preload_one_get_per_fragment() {
    let (_guard, server) = with_redis("notes-example");
    let site = serve(&server.url()).await;
    let fragments = page_keys(1).len();
    assert!(fragments >= 20, "a page of many fragments: {fragments}");

    // First visit: the scope finds nothing, every fragment is computed and written.
    let first = request(site, "GET", "/notes/1").await;
    assert!(first.contains("<h1>Note 1</h1>") && first.contains("Comment 1015"));
    let every_fragment_written = format!("get=0 mget=1 set={fragments}");
    assert_eq!(redis_commands(&first), every_fragment_written);

    // A cold L1 (a freshly started instance) without preload: one GET per fragment read;
    // the comments block is found, so the comments inside it are not read.
    request(site, "POST", "/clear-local").await;
    server.reset_stats();
    let without = request(site, "GET", "/notes/1?preload=false").await;
    let read = fragments - COMMENTS_PER_NOTE as usize;
    let one_get_each = format!("get={read} mget=0 set=0");
    assert_eq!(redis_commands(&without), one_get_each);
    assert_eq!(server.calls("get"), read as u64);

    // The same, with preload: one MGET, no GET.
    request(site, "POST", "/clear-local").await;
    server.reset_stats();
    let with = request(site, "GET", "/notes/1").await;
    assert_eq!(redis_commands(&with), "get=0 mget=1 set=0");
    assert_eq!((server.calls("mget"), server.calls("get")), (1, 0));
    assert_eq!(body(&with), body(&without));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
async fn with_redis_gone_the_site_still_serves_its_pages() {
    let (_guard, mut server) = with_redis("notes-example");
    let site = serve(&server.url()).await;
    let before = request(site, "GET", "/notes/100").await;
    assert!(header(&before, "x-redis-commands").is_some());

    server.kill();
    let after = request(site, "GET", "/notes/200").await;
    assert!(after.contains("<h1>Note 200</h1>") && after.contains("Comment 200015"));
    assert_eq!(
        header(&after, "x-redis-commands"),
        None,
        "no counts to show"
    );
    let again = request(site, "GET", "/notes/100?preload=false").await;
    assert_eq!(body(&again), body(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
async fn the_counts_come_back_after_redis_restarts() {
    let (_guard, mut server) = with_redis("notes-example");
    let site = serve(&server.url()).await;
    let fragments = page_keys(300).len();
    let before = request(site, "GET", "/notes/300").await;
    assert_eq!(
        redis_commands(&before),
        format!("get=0 mget=1 set={fragments}")
    );

    server.restart(); // same port, empty
                      // A note sharing no fragment with note 300 (another author, other related notes).
    let first = request(site, "GET", "/notes/305").await;
    assert!(
        header(&first, "x-redis-commands").is_some(),
        "the counter connected again: {first}"
    );

    request(site, "POST", "/clear-local").await;
    let after = request(site, "GET", "/notes/300").await;
    assert_eq!(
        redis_commands(&after),
        format!("get=0 mget=1 set={fragments}"),
        "counted against the new, empty server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the guard only keeps config-installing tests apart
async fn metrics_serves_each_fragments_series_in_prometheus_text() {
    let (_guard, server) = with_redis("notes-example");
    let site = serve(&server.url()).await;
    request(site, "GET", "/notes/300?preload=false").await;
    let scrape = request(site, "GET", "/metrics").await;
    assert!(
        header(&scrape, "content-type").is_some_and(|t| t.starts_with("text/plain")),
        "{scrape}"
    );
    let text = body(&scrape);
    let markup = r#"cache="examples::notes::note_markup""#;
    for series in [
        format!("cache_misses_total{{{markup}}} "),
        format!("cache_hits_total{{{markup},layer=\"l1\"}} "),
        format!("cache_entries{{{markup}}} "),
        format!("cache_compute_seconds_bucket{{{markup},le=\"+Inf\"}} "),
        format!("cache_store_seconds_count{{{markup},store=\"redis\",op=\"get\"}} "),
        format!("cache_store_seconds_count{{{markup},store=\"redis\",op=\"set\"}} "),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&series)),
            "{series} in\n{text}"
        );
    }
    // No key, and no argument, in any series' labels.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let labels = line.rsplit_once(' ').map_or(line, |(series, _)| series);
        assert!(
            !labels.contains("notes-example:") && !labels.contains("300"),
            "{line}"
        );
    }
}
