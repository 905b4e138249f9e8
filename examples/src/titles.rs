//! The `titles` command: fetch web pages, print their headings, and never download a page
//! twice while it is fresh — even across runs, since pages are kept in the disk store.
//!
//! A page is kept on disk with the validators its server sent (`ETag`, `Last-Modified`).
//! Within `--ttl` a run answers from disk without a request; after it, the run asks the
//! server with `If-None-Match` / `If-Modified-Since`, and a `304 Not Modified` reuses the stored
//! body and stores it again with a new lifetime. Failures (a bad URL, a 404 or 500, a timeout,
//! a body that is not HTML) are reported per URL and never stored.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::cached;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// How long a stored page is kept on disk at most, fresh or not: its validators stay usable
/// for revalidation well past `--ttl`.
pub const KEEP_ON_DISK: Duration = Duration::from_secs(30 * 24 * 3600);

/// A fetched HTML page and what is needed to revalidate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The HTML.
    pub body: String,
    /// The server's `ETag`, if it sent one.
    pub etag: Option<String>,
    /// The server's `Last-Modified`, if it sent one.
    pub last_modified: Option<String>,
    /// When the body was fetched or last confirmed by a 304 (Unix milliseconds).
    pub checked_at_ms: u64,
}

impl Page {
    /// Time since the server last confirmed this body.
    pub fn age(&self) -> Duration {
        Duration::from_millis(unix_millis().saturating_sub(self.checked_at_ms))
    }
}

/// Why a URL gave no headings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchError {
    /// Not an absolute http(s) URL.
    BadUrl(String),
    /// The server answered with an error status.
    Status(u16),
    /// No complete answer within the timeout.
    Timeout,
    /// The body is not HTML (its `Content-Type`).
    NotHtml(String),
    /// Connection refused, DNS failure, a broken body...
    Network(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUrl(why) => write!(f, "not a valid http(s) URL: {why}"),
            FetchError::Status(code) => {
                let reason = StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "the server answered {code} {reason}")
            }
            FetchError::Timeout => f.write_str("no answer within the timeout"),
            FetchError::NotHtml(kind) => write!(f, "not an HTML page (Content-Type: {kind})"),
            FetchError::Network(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// The HTTP client every fetch uses; set once by [`Fetcher::new`].
static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

fn client() -> &'static reqwest::Client {
    CLIENT.get_or_init(reqwest::Client::new)
}

/// Pages on disk, by URL. The body fetches unconditionally; [`Fetcher::page`] decides when
/// a stored page is fresh enough or must be revalidated, through `page::peek` and `page::put`.
#[cached(ttl = KEEP_ON_DISK, name = "titles::page")]
async fn page(url: String) -> Result<Page, FetchError> {
    match fetch(&url, None).await? {
        Fetched::Page(page) => Ok(page),
        Fetched::NotModified => Err(FetchError::Network("unexpected 304".into())),
    }
}

/// What one request brought back.
enum Fetched {
    Page(Page),
    /// The stored page is still current (a 304 to a conditional request).
    NotModified,
}

/// `GET url`, conditional on `stored`'s validators when given.
async fn fetch(url: &str, stored: Option<&Page>) -> Result<Fetched, FetchError> {
    let mut request = client().get(url);
    if let Some(stored) = stored {
        if let Some(etag) = &stored.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &stored.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date);
        }
    }
    let response = request.send().await.map_err(network)?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && stored.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let kind = header(CONTENT_TYPE).unwrap_or_default();
    let essence = kind.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/html")
        && !essence.eq_ignore_ascii_case("application/xhtml+xml")
    {
        return Err(FetchError::NotHtml(if kind.is_empty() {
            "none".into()
        } else {
            kind
        }));
    }
    let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
    let body = response.text().await.map_err(network)?;
    Ok(Fetched::Page(Page {
        body,
        etag,
        last_modified,
        checked_at_ms: unix_millis(),
    }))
}

fn network(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        return FetchError::Timeout;
    }
    // The innermost cause says what happened (refused, reset, DNS), the outer ones only
    // that a request failed.
    let mut cause: &dyn std::error::Error = &error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    FetchError::Network(cause.to_string())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fetches pages through the disk store.
pub struct Fetcher {
    ttl: Duration,
    use_cache: bool,
}

impl Fetcher {
    /// A fetcher whose requests give up after `timeout`; pages younger than `ttl` are served
    /// from the store; `use_cache = false` always fetches and stores nothing.
    pub fn new(timeout: Duration, ttl: Duration, use_cache: bool) -> Self {
        // reqwest is built without a crypto provider of its own: rustls' ring one (the one the
        // cache's `tls` feature uses too) serves https.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("titles/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default TLS settings");
        let _ = CLIENT.set(client);
        Fetcher { ttl, use_cache }
    }

    /// The page at `url`: from the store while fresh, revalidated after that.
    pub async fn page(&self, url: &str) -> Result<Page, FetchError> {
        let url = checked_url(url)?;
        if !self.use_cache {
            return match fetch(&url, None).await? {
                Fetched::Page(page) => Ok(page),
                Fetched::NotModified => Err(FetchError::Network("unexpected 304".into())),
            };
        }
        let Some(stored) = page::peek(url.clone()).await else {
            return page(url).await;
        };
        if stored.age() < self.ttl {
            return Ok(stored);
        }
        let current = match fetch(&url, Some(&stored)).await? {
            Fetched::NotModified => Page {
                checked_at_ms: unix_millis(),
                ..stored
            },
            Fetched::Page(page) => page,
        };
        page::put(url, current.clone()).await;
        Ok(current)
    }

    /// Removes every stored page.
    pub async fn clear(&self) {
        page::clear().await;
    }
}

fn checked_url(url: &str) -> Result<String, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl(format!("scheme `{}`", parsed.scheme())));
    }
    Ok(parsed.to_string())
}

/// The h1, h2 and h3 headings of an HTML document, in order: (level, text with its
/// whitespace collapsed).
pub fn headings(html: &str) -> Vec<(u8, String)> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse("h1, h2, h3").expect("a valid selector");
    document
        .select(&selector)
        .map(|element| {
            let level = element.value().name().as_bytes()[1] - b'0';
            let text = element.text().collect::<Vec<_>>().join(" ");
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            (level, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_are_listed_in_order_with_their_level() {
        let html = "<html><body><h1>Title</h1><p>x</p><h2> Part
            <em>one</em></h2><h4>skipped</h4><h3>Detail</h3></body></html>";
        assert_eq!(
            headings(html),
            vec![
                (1, "Title".to_string()),
                (2, "Part one".to_string()),
                (3, "Detail".to_string())
            ]
        );
    }

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        assert!(checked_url("https://example.com/a").is_ok());
        assert!(matches!(
            checked_url("example.com"),
            Err(FetchError::BadUrl(_))
        ));
        assert!(matches!(
            checked_url("ftp://example.com/"),
            Err(FetchError::BadUrl(_))
        ));
    }
}
