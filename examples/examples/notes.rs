//! A note page built from 21 cached fragments, with and without a preload scope.
//!
//! ```sh
//! cargo run -p examples --example notes            # REDIS_URL defaults to redis://127.0.0.1:6379/
//! curl -si localhost:3000/notes/1                  # computes, fills Redis
//! curl -si -X POST localhost:3000/clear-local      # forget the in-process copies
//! curl -si 'localhost:3000/notes/1?preload=false' | grep x-redis   # get=21 mget=0 set=0
//! curl -si -X POST localhost:3000/clear-local
//! curl -si localhost:3000/notes/1 | grep x-redis                   # get=0 mget=1 set=0
//! ```

use examples::notes::{router, App};

#[tokio::main]
async fn main() {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string());
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("NOTES_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let app = App::new(&redis_url).await;
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("notes: http://{addr}/notes/1 (Redis: {redis_url})");
    if let Err(e) = axum::serve(listener, router(app)).await {
        eprintln!("server error: {e}");
    }
}
