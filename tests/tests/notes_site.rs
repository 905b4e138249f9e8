//! The notes example over real HTTP against a harness Redis: a page with a preload scope costs
//! one MGET; the same page without it costs one GET per fragment.

use examples::notes::{page_keys, router, App};
use integration_tests::with_redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal HTTP/1.1 request; returns the status line, headers and body as text.
async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
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

fn header<'a>(response: &'a str, name: &str) -> &'a str {
    response
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no {name} header in {response}"))
}

#[test]
fn a_preloaded_page_costs_one_mget_and_no_get() {
    let (_guard, server) = with_redis("unused");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = App::new(&server.url()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(app)).await.unwrap() });
        let fragments = page_keys(1).len();

        let first = request(addr, "GET", "/notes/1").await;
        assert!(first.contains("<h1>Note 1</h1>") && first.contains("Comment 1015"));
        assert_eq!(
            header(&first, "x-redis-commands"),
            format!("get=0 mget=1 set={fragments}")
        );

        request(addr, "POST", "/clear-local").await;
        server.reset_stats();
        let without = request(addr, "GET", "/notes/1?preload=false").await;
        assert_eq!(
            header(&without, "x-redis-commands"),
            format!("get={fragments} mget=0 set=0")
        );
        assert_eq!(server.calls("get"), fragments as u64);

        request(addr, "POST", "/clear-local").await;
        server.reset_stats();
        let with = request(addr, "GET", "/notes/1").await;
        assert_eq!(header(&with, "x-redis-commands"), "get=0 mget=1 set=0");
        assert_eq!((server.calls("mget"), server.calls("get")), (1, 0));
        assert_eq!(body(&with), body(&without));
    });
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default()
}
