//! A small note site whose pages are built from cached fragments, served with and without a
//! preload scope. Used by `examples/notes.rs` and by the HTTP test.
//!
//! - `GET /notes/{id}`: the page, rendered inside one preload scope (one MGET).
//! - `GET /notes/{id}?preload=false`: the same page, each fragment fetched on its own.
//! - `POST /clear-local`: empties the fragments' in-process layer, so the next page has to
//!   go to Redis (what a freshly started instance sees).
//! - `GET /stats`: per-fragment counters.
//! - `GET /metrics`: every cached function's counters and histograms in Prometheus' text
//!   format (`metrics` below).
//!
//! Every page response carries `x-redis-commands`: the GET, MGET and SET commands Redis
//! executed while it was rendered, read from Redis' own `INFO commandstats` (exact when
//! requests do not overlap).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Router;
use cache_runtime::{block_key, cached, cached_block, preload_async, Key};
use tokio::sync::Mutex;

/// Comments per note; with the note's markup, author card, tag list, the comments block and
/// two related-note teasers a page needs 22 fragments.
pub const COMMENTS_PER_NOTE: u64 = 16;

/// Stands for real work (a markdown render, a database query) in each fragment.
async fn work() {
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// The author of a note (ids are derived, as a database would return them).
fn author_of(note_id: u64) -> u32 {
    (note_id % 7) as u32 + 1
}

fn comment_ids(note_id: u64) -> impl Iterator<Item = u64> {
    (0..COMMENTS_PER_NOTE).map(move |i| note_id * 1000 + i)
}

fn related_ids(note_id: u64) -> [u64; 2] {
    [note_id + 1, note_id + 2]
}

/// The note's body rendered to HTML.
#[cached(ttl = 60)]
pub async fn note_markup(note_id: u64) -> String {
    work().await;
    format!("<article><h1>Note {note_id}</h1><p>Rendered body of note {note_id}.</p></article>")
}

/// One rendered comment.
#[cached(ttl = 60)]
pub async fn comment_html(comment_id: u64) -> String {
    work().await;
    format!("<li class=\"comment\">Comment {comment_id}</li>")
}

/// The author's card.
#[cached(ttl = 60)]
pub async fn author_card(user_id: u32) -> String {
    work().await;
    format!("<aside>User {user_id}</aside>")
}

/// The note's tags.
#[cached(ttl = 60)]
pub async fn tag_list(note_id: u64) -> Vec<String> {
    work().await;
    vec![format!("tag-{}", note_id % 3), "rust".to_string()]
}

/// A teaser for a related note.
#[cached(ttl = 60)]
pub async fn teaser(note_id: u64) -> String {
    work().await;
    format!("<a href=\"/notes/{note_id}\">Note {note_id}</a>")
}

/// The name of the comments fragment block (see [`comments_html`]).
pub const COMMENTS_BLOCK: &str = "notes::note_comments";

/// The note's comments list: a fragment block (the template's
/// `{% cache 60, "note_comments", note.id %}`) around the comments, each of them cached too.
/// A hit on the block reads none of the comments.
pub async fn comments_html(note_id: u64) -> String {
    cached_block!(async name = "notes::note_comments", ttl = 60, key = note_id, value = String, {
        let mut html = String::from("<ul>");
        for id in comment_ids(note_id) {
            html += &comment_html(id).await;
        }
        html + "</ul>"
    })
    .await
}

/// Every fragment key a note page needs, from the companions: the comments block's, and each
/// comment's (so that a miss of the block still needs no GET).
pub fn page_keys(note_id: u64) -> Vec<Key> {
    let mut keys = vec![
        note_markup::key(note_id),
        author_card::key(author_of(note_id)),
        tag_list::key(note_id),
        block_key(COMMENTS_BLOCK, &note_id),
    ];
    keys.extend(comment_ids(note_id).map(comment_html::key));
    keys.extend(related_ids(note_id).map(teaser::key));
    keys
}

/// Renders the page from its fragments.
pub async fn render(note_id: u64) -> String {
    let mut html = String::from("<html><body>");
    html += &note_markup(note_id).await;
    html += &author_card(author_of(note_id)).await;
    html += &format!("<p>{}</p>", tag_list(note_id).await.join(", "));
    html += &comments_html(note_id).await;
    html += "<nav>";
    for id in related_ids(note_id) {
        html += &teaser(id).await;
    }
    html + "</nav></body></html>"
}

/// What the handlers share: a connection to read Redis' command counters.
#[derive(Clone)]
pub struct App {
    counters: Option<Arc<Counters>>,
}

/// The connection `x-redis-commands` is read over, opened again whenever it failed (a Redis
/// restarted or briefly unreachable), so the counts come back with Redis.
struct Counters {
    client: redis::Client,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Counters {
    /// `INFO commandstats` over the kept connection; on failure one more try on a new one.
    async fn info(&self) -> Option<String> {
        let mut conn = self.conn.lock().await;
        for _attempt in 0..2 {
            if conn.is_none() {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(500)))
                    .set_response_timeout(Some(Duration::from_millis(500)));
                *conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok();
            }
            let live = conn.as_mut()?;
            match redis::cmd("INFO")
                .arg("commandstats")
                .query_async(live)
                .await
            {
                Ok(info) => return Some(info),
                Err(_) => *conn = None,
            }
        }
        None
    }
}

impl App {
    /// Installs the cache config for `redis_url` and prepares the counter reader. If Redis is
    /// unreachable the site still works (every fragment is computed; no counts are shown).
    pub async fn new(redis_url: &str) -> Self {
        // Before the first call, so that the first misses' histograms are recorded.
        prometheus();
        if let Err(e) = cache_runtime::Config::new()
            .redis(redis_url)
            .prefix("notes-example")
            .install()
        {
            eprintln!("cache config: {e}");
        }
        let counters = redis::Client::open(redis_url).ok().map(|client| Counters {
            client,
            conn: Mutex::new(None),
        });
        App {
            counters: counters.map(Arc::new),
        }
    }

    /// No shared store: every fragment lives in this process only, and no counts are shown.
    pub fn in_process_only() -> Self {
        App { counters: None }
    }

    /// Calls of GET, MGET and SET so far, from `INFO commandstats`.
    async fn command_counts(&self) -> Option<HashMap<String, u64>> {
        let info = self.counters.as_ref()?.info().await?;
        Some(parse_commandstats(&info))
    }
}

/// `cmdstat_get:calls=3,...` lines to `{"get": 3, ..}` for the data commands.
fn parse_commandstats(info: &str) -> HashMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| matches!(name.as_str(), "get" | "mget" | "set"))
        .collect()
}

/// The site's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/notes/{id}", get(note_page))
        .route("/clear-local", post(clear_local))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn note_page(
    State(app): State<App>,
    Path(id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let use_preload = query.get("preload").map(String::as_str) != Some("false");
    let before = app.command_counts().await;
    let html = if use_preload {
        preload_async(page_keys(id), render(id)).await
    } else {
        render(id).await
    };
    let after = app.command_counts().await;
    let mut headers = HeaderMap::new();
    if let (Some(before), Some(after)) = (before, after) {
        let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
        let summary = format!(
            "get={} mget={} set={}",
            delta("get"),
            delta("mget"),
            delta("set")
        );
        if let Ok(value) = HeaderValue::from_str(&summary) {
            headers.insert("x-redis-commands", value);
        }
    }
    (headers, Html(html))
}

async fn clear_local() -> &'static str {
    note_markup::clear_local();
    comment_html::clear_local();
    author_card::clear_local();
    tag_list::clear_local();
    teaser::clear_local();
    cache_runtime::block_clear_local(COMMENTS_BLOCK);
    "cleared\n"
}

async fn stats() -> String {
    [
        ("note_markup", note_markup::stats()),
        ("comment_html", comment_html::stats()),
        ("author_card", author_card::stats()),
        ("tag_list", tag_list::stats()),
        ("teaser", teaser::stats()),
    ]
    .iter()
    .map(|(name, s)| format!("{name:<13} {s:?}\n"))
    .collect()
}

// ---- Metrics: the Prometheus recorder and `GET /metrics` ----

/// Histogram buckets of `cache_compute_seconds` and `cache_store_seconds`, in seconds: from a
/// loopback Redis GET (~50 µs) to a slow body.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// The process's Prometheus recorder, installed on first use (the `metrics` facade takes one
/// recorder per process); `None` when another recorder was installed first.
fn prometheus() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            installed
                .map_err(|e| eprintln!("metrics: no Prometheus recorder ({e})"))
                .ok()
        })
        .as_ref()
}

/// `GET /metrics`: publishes every cached function's counters into the recorder
/// ([`cache_runtime::publish_metrics`]), then renders the recorder's series.
async fn metrics() -> impl IntoResponse {
    let Some(handle) = prometheus() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            "no Prometheus recorder in this process\n".to_string(),
        );
    };
    cache_runtime::publish_metrics();
    handle.run_upkeep();
    (
        axum::http::StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
}
