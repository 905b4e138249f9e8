//! A note page built from 22 cached fragments, with and without a preload scope.
//!
//! ```sh
//! cargo run -p examples --example notes            # starts its own redis-server (see below)
//! curl -si localhost:3000/notes/1                  # computes, fills Redis
//! curl -si -X POST localhost:3000/clear-local      # forget the in-process copies
//! curl -si 'localhost:3000/notes/1?preload=false' | grep x-redis   # get=6 mget=0 set=0 (the comments block holds 16)
//! curl -si -X POST localhost:3000/clear-local
//! curl -si localhost:3000/notes/1 | grep x-redis                   # get=0 mget=1 set=0
//! ```
//!
//! Which Redis: `REDIS_URL=redis://host:6379/` uses that one (keys under `notes-example:`).
//! Without it the example never touches a Redis already running on the machine: it starts a
//! `redis-server` of its own on a free loopback port (from `$REDIS_SERVER` or `PATH`), empty,
//! and kills it on exit; when there is no `redis-server` binary it runs with the in-process
//! cache only (no `x-redis-commands` header).

use cache_runtime::testing::RedisServer;
use examples::notes::{router, App};

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("NOTES_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    // Kept until the end of `main`: dropping it kills the server.
    let mut own_server = None;
    let (app, store) = match std::env::var("REDIS_URL") {
        Ok(url) => (App::new(&url).await, url),
        Err(_) if redis_server_installed() => {
            let server = RedisServer::start();
            let url = server.url();
            own_server = Some(server);
            (
                App::new(&url).await,
                format!("{url} (our own redis-server)"),
            )
        }
        Err(_) => {
            eprintln!(
                "no REDIS_URL and no redis-server to start (install it: `apt-get install \
                 redis-server`, `brew install redis`); the fragments stay in this process"
            );
            (App::in_process_only(), "none".to_string())
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("notes: http://{addr}/notes/1 (Redis: {store})");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {e}");
    }
    drop(own_server);
}

/// Whether the `redis-server` that [`RedisServer::start`] would run is there.
fn redis_server_installed() -> bool {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}
