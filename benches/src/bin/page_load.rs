//! A page under real load: wrk (2 threads, 16 connections, random page ids) against an axum
//! server on this machine whose pages are 20 async fragments over 5 000 notes, all in Redis,
//! with L1 holding a fifth of them (capacity 1 000), rendered with a preload scope (one MGET
//! for the page) and without one (a GET per fragment L1 does not hold), in turns.
//!
//! ```text
//! apt-get install wrk          # the load generator (Debian's package)
//! cargo run --release -p benches --bin page_load [SECONDS_PER_RUN] [ROUNDS]
//! ```
//!
//! It starts its own redis-server (see `benches::Redis`) and its own server on a free
//! loopback port, writes the 5 000 notes' fragments to Redis, then runs wrk against
//! `/plain/{id}` and `/preload/{id}` in turns (default: 3 rounds of 10 s each) and prints
//! each run's requests per second and latency percentiles as wrk measured them.
//!
//! Two more routes bound what a cache can change, in the same turns: `/fixed/{id}` serves the
//! same page from memory (no cache, no Redis: the HTTP ceiling of this machine), `/mget/{id}`
//! reads the page's 20 fragments with one raw redis-rs `MGET` of plain strings (no cache: the
//! floor of a preloaded page). The last line sets the preload ratio against them.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use benches::Redis;
use cache_runtime::{preload_async, Config, Key};

const NOTES: u64 = 5_000;
const FRAGMENTS_PER_PAGE: u64 = 20;

/// One note's fragment (about 200 bytes), as a page shows it.
#[cache_runtime::cached(ttl = 3600, capacity = 1_000)]
async fn note_fragment(id: u64) -> String {
    fragment_text(id)
}

fn fragment_text(id: u64) -> String {
    format!("<li class=\"note\">note {id}</li>{}", "x".repeat(170))
}

/// The notes page `id` shows: 20 consecutive ones.
fn notes_of(page: u64) -> impl Iterator<Item = u64> {
    (page..page + FRAGMENTS_PER_PAGE).map(|n| n % NOTES)
}

async fn render(page: u64) -> String {
    let mut html = String::with_capacity(4_500);
    for id in notes_of(page) {
        html.push_str(&note_fragment(id).await);
    }
    html
}

/// Every page rendered once, for `/fixed`: what serving a page costs with no cache at all.
static PAGES: OnceLock<Vec<String>> = OnceLock::new();

/// The raw connection `/mget` reads plain fragments through (`raw:{id}` keys).
static RAW: OnceLock<redis::aio::MultiplexedConnection> = OnceLock::new();

fn raw_key(id: u64) -> String {
    format!("raw:{id}")
}

async fn fixed(Path(page): Path<u64>) -> String {
    PAGES.get().expect("pages rendered")[(page % NOTES) as usize].clone()
}

async fn raw_mget(Path(page): Path<u64>) -> String {
    let keys: Vec<String> = notes_of(page).map(raw_key).collect();
    let mut conn = RAW.get().expect("raw connection").clone();
    let parts: Vec<String> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("raw MGET");
    let mut html = String::with_capacity(4_500);
    for part in &parts {
        html.push_str(part);
    }
    html
}

async fn plain(Path(page): Path<u64>) -> String {
    render(page).await
}

async fn preloaded(Path(page): Path<u64>) -> String {
    let keys: Vec<Key> = notes_of(page).map(note_fragment::key).collect();
    preload_async(keys, render(page)).await
}

/// wrk's request script: a random page id per request under `path`.
fn script(dir: &std::path::Path, path: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{}.lua", path.trim_matches('/')));
    std::fs::write(
        &file,
        format!(
            "math.randomseed(os.time())\nrequest = function()\n  return wrk.format(\"GET\", \
             \"{path}\" .. math.random(0, {}))\nend\n",
            NOTES - 1
        ),
    )
    .expect("wrk script");
    file
}

/// One wrk run: requests per second and the latency lines of its report.
fn wrk(addr: &str, script: &std::path::Path, seconds: u64) -> (f64, String) {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://{addr}/"))
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's report:\n{text}"));
    let latency: Vec<&str> = text
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            ["50%", "90%", "99%"].iter().any(|p| line.starts_with(p))
        })
        .map(str::trim)
        .collect();
    if text.contains("Non-2xx") {
        panic!("some requests failed:\n{text}");
    }
    (rps, latency.join(", "))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10);
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("page_load needs wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let redis = Redis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = runtime.block_on(async {
        Config::new()
            .redis(redis.url())
            .prefix("load")
            .timeout(Duration::from_secs(2))
            .install()
            .expect("install");
        // Every note's fragment in Redis; L1 keeps at most a fifth of them.
        for id in 0..NOTES {
            note_fragment(id).await;
        }
        let client = redis::Client::open(redis.url()).expect("raw client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        let mut pages = Vec::with_capacity(NOTES as usize);
        for id in 0..NOTES {
            let () = redis::cmd("SET")
                .arg(raw_key(id))
                .arg(fragment_text(id))
                .query_async(&mut conn)
                .await
                .expect("raw SET");
            pages.push(notes_of(id).map(fragment_text).collect());
        }
        PAGES.set(pages).expect("pages once");
        RAW.set(conn).expect("connection once");
        let app = Router::new()
            .route("/plain/{page}", get(plain))
            .route("/preload/{page}", get(preloaded))
            .route("/fixed/{page}", get(fixed))
            .route("/mget/{page}", get(raw_mget));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    });
    let dir = std::env::temp_dir().join(format!("page-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("script dir");
    let routes = ["plain", "preload", "mget", "fixed"];
    // A third argument runs only the routes it names (`preload,mget`), e.g. under a profiler.
    let only: Option<Vec<String>> = args
        .get(3)
        .map(|names| names.split(',').map(str::to_owned).collect());
    let runs = |which: usize| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|n| n == routes[which]))
    };
    let scripts: Vec<_> = routes
        .iter()
        .map(|route| script(&dir, &format!("/{route}/")))
        .collect();
    // A short warm-up of each, not counted.
    for (which, script) in scripts.iter().enumerate() {
        if runs(which) {
            wrk(&addr, script, 2);
        }
    }
    println!(
        "wrk -t2 -c16, {seconds} s a run, pages of {FRAGMENTS_PER_PAGE} fragments over {NOTES} \
         notes, L1 capacity 1 000"
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
    for round in 0..rounds {
        // Each round starts one route later, so drift reaches every route alike.
        for turn in 0..routes.len() {
            let which = (round + turn) % routes.len();
            if !runs(which) {
                continue;
            }
            let (rps, latency) = wrk(&addr, &scripts[which], seconds);
            println!(
                "  round {} {:>7}: {rps:8.0} pages/s  latency {latency}",
                round + 1,
                routes[which]
            );
            rates[which].push(rps);
        }
    }
    let [plain, preload, mget, fixed] = [0, 1, 2, 3].map(|which| {
        let v = &mut rates[which];
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    });
    println!(
        "medians: {preload:.0} pages/s with a preload scope, {plain:.0} without: {:.2}x",
        preload / plain
    );
    println!(
        "bounds: one raw MGET a page {mget:.0} pages/s ({:.2}x plain), the page from memory \
         {fixed:.0} pages/s ({:.2}x plain); preload reaches {:.0} % of the raw MGET",
        mget / plain,
        fixed / plain,
        100.0 * preload / mget
    );
    let stats = note_fragment::stats();
    println!(
        "note_fragment: l1_hits {}, scope_hits {}, l2_hits {}, misses {}, l2_errors {}",
        stats.l1_hits, stats.scope_hits, stats.l2_hits, stats.misses, stats.l2_errors
    );
    let _ = std::fs::remove_dir_all(&dir);
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(redis);
}
