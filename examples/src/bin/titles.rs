//! `titles URL...`: prints the h1/h2/h3 headings of web pages, keeping the pages in a disk
//! cache shared by every run (and every concurrent run) on the machine.
//!
//! ```sh
//! cargo run -p examples --bin titles -- https://www.rust-lang.org/ https://tokio.rs/
//! cargo run -p examples --bin titles -- cache stats
//! ```

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use examples::titles::{headings, Fetcher};
use indicatif::{ProgressBar, ProgressStyle};

/// Print the headings of web pages, fetched at most once per TTL across runs.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Pages to read (absolute http or https URLs).
    urls: Vec<String>,

    /// Where pages are kept [default: the platform's cache directory, e.g. ~/.cache/titles].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// How long a fetched page is used without asking the server again (e.g. 90s, 15m, 2h).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    ttl: Duration,

    /// Always fetch, and store nothing.
    #[arg(long)]
    no_cache: bool,

    /// Pages fetched at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// Longest wait for one page.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect or empty the page cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Subcommand, Debug)]
enum CacheAction {
    /// How many pages are stored, and the size of the store.
    Stats,
    /// Remove every stored page.
    Clear,
}

/// `90s`, `15m`, `2h`, `1d`, `250ms`, or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 15m or 2h"))?;
    let unit_secs = |secs: u64| Ok(Duration::from_secs(n.saturating_mul(secs)));
    match unit {
        "" | "s" => unit_secs(1),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => unit_secs(60),
        "h" => unit_secs(3600),
        "d" => unit_secs(86_400),
        other => Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TITLES_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("titles: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = match cli.cache_dir.clone() {
        Some(dir) => dir,
        None => cache_runtime::default_cache_dir("titles")
            .context("no cache directory on this platform: pass --cache-dir")?,
    };
    cache_runtime::Config::new()
        .prefix("titles")
        .disk(&dir)
        .install()
        .context("could not set up the page cache")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let fetcher = Arc::new(Fetcher::new(cli.timeout, cli.ttl, !cli.no_cache));
    match cli.command {
        Some(Command::Cache {
            action: CacheAction::Stats,
        }) => {
            let usage = cache_runtime::disk_usage(&dir).context("could not read the page cache")?;
            println!("{}", dir.display());
            println!("{usage}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Cache {
            action: CacheAction::Clear,
        }) => {
            runtime.block_on(fetcher.clear());
            println!("page cache cleared");
            Ok(ExitCode::SUCCESS)
        }
        None if cli.urls.is_empty() => {
            anyhow::bail!("no URL given (try `titles --help`)")
        }
        None => Ok(runtime.block_on(print_titles(fetcher, cli.urls, cli.concurrency))),
    }
}

/// Fetches every URL (at most `concurrency` at once) and prints them in the order given.
async fn print_titles(fetcher: Arc<Fetcher>, urls: Vec<String>, concurrency: u16) -> ExitCode {
    let progress = progress_bar(urls.len());
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for (at, url) in urls.iter().cloned().enumerate() {
        let (fetcher, limit, progress) = (fetcher.clone(), limit.clone(), progress.clone());
        tasks.spawn(async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let page = fetcher.page(&url).await;
            if let Some(bar) = &progress {
                bar.inc(1);
            }
            (at, page)
        });
    }
    let mut results: Vec<_> = (0..urls.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (at, page) = done.expect("a fetch task panicked");
        results[at] = Some(page);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (url, result) in urls.iter().zip(results) {
        match result.expect("every task reported") {
            Ok(page) => {
                let _ = writeln!(out, "{url}");
                for (level, text) in headings(&page.body) {
                    let _ = writeln!(out, "  h{level} {text}");
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("titles: {url}: {error}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A progress bar on stderr, only when it is a terminal and there is more than one page.
fn progress_bar(pages: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || pages < 2 {
        return None;
    }
    let bar = ProgressBar::new(pages as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} pages")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
