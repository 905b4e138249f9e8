//! Stampede load: a fleet of processes hammers one hot key whose value expires every second,
//! once per protection mode, and a markdown table tells how often the body ran per expiry and
//! how long callers waited.
//!
//! ```text
//! cargo run --release -p benches --bin stampede_load -- [--seconds 10] [--processes 4]
//!     [--threads 16] [--modes none,lock,early,stale,early+lock,stale+lock]
//! ```
//!
//! It starts its own `redis-server`, computes the key once (not measured), then re-invokes
//! itself as `--worker` processes that all start at the same instant and call the function in a
//! loop for the duration, pausing 1 ms between calls so that two cores are not saturated.

use std::cell::Cell;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::cached;

/// The `ttl` of every mode's function.
const TTL: Duration = Duration::from_secs(1);
/// How long the body takes.
const BODY: Duration = Duration::from_millis(50);
/// A call slower than this waited for a computation (its own or another caller's).
const WAITED: Duration = Duration::from_millis(25);
/// Each caller's pause between two calls.
const PAUSE: Duration = Duration::from_millis(1);
const PREFIX: &str = "stampede_load";

/// When each body run of this process started (unix ms).
static RUNS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

thread_local! {
    /// Set by the body: the current call computed the value itself.
    static RAN_BODY: Cell<bool> = const { Cell::new(false) };
}

fn body(n: u64) -> u64 {
    RUNS.lock().expect("runs").push(unix_millis());
    RAN_BODY.with(|ran| ran.set(true));
    std::thread::sleep(BODY);
    n
}

#[cached(ttl = 1, name = "load::none")]
fn unprotected(n: u64) -> u64 {
    body(n)
}

#[cached(ttl = 1, lock, name = "load::lock")]
fn locked(n: u64) -> u64 {
    body(n)
}

#[cached(ttl = 1, refresh = early, name = "load::early")]
fn early(n: u64) -> u64 {
    body(n)
}

#[cached(ttl = 1, stale = 1, name = "load::stale")]
fn stale(n: u64) -> u64 {
    body(n)
}

#[cached(ttl = 1, refresh = early, lock, name = "load::early_lock")]
fn early_locked(n: u64) -> u64 {
    body(n)
}

#[cached(ttl = 1, stale = 1, lock, name = "load::stale_lock")]
fn stale_locked(n: u64) -> u64 {
    body(n)
}

/// A protection mode: its name on the command line and in the table, and its function.
struct Mode {
    name: &'static str,
    arguments: &'static str,
    call: fn(u64) -> u64,
}

const MODES: [Mode; 6] = [
    Mode {
        name: "none",
        arguments: "ttl = 1",
        call: unprotected,
    },
    Mode {
        name: "lock",
        arguments: "ttl = 1, lock",
        call: locked,
    },
    Mode {
        name: "early",
        arguments: "ttl = 1, refresh = early",
        call: early,
    },
    Mode {
        name: "stale",
        arguments: "ttl = 1, stale = 1",
        call: stale,
    },
    Mode {
        name: "early+lock",
        arguments: "ttl = 1, refresh = early, lock",
        call: early_locked,
    },
    Mode {
        name: "stale+lock",
        arguments: "ttl = 1, stale = 1, lock",
        call: stale_locked,
    },
];

fn mode(name: &str) -> &'static Mode {
    MODES
        .iter()
        .find(|mode| mode.name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = MODES.iter().map(|mode| mode.name).collect();
            panic!(
                "unknown mode {name:?}; expected one of {}",
                names.join(", ")
            )
        })
}

/// The command line: `--name value` pairs.
struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|arg| arg == name)?;
        Some(
            self.0
                .get(at + 1)
                .unwrap_or_else(|| panic!("{name} needs a value")),
        )
    }

    fn number(&self, name: &str, default: u64) -> u64 {
        self.value(name).map_or(default, |value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {value:?}"))
        })
    }
}

/// What the callers of one process (or of the whole fleet) saw.
#[derive(Default)]
struct Tally {
    calls: u64,
    /// When each body run started (unix ms).
    runs: Vec<u64>,
    /// Calls slower than [`WAITED`] that ran the body themselves.
    computed: u64,
    /// Calls slower than [`WAITED`] that waited for another caller's computation.
    waited: u64,
    worst: Duration,
    /// The slowest call that did not run the body.
    worst_waiting: Duration,
}

impl Tally {
    fn record(&mut self, took: Duration, ran_body: bool) {
        self.calls += 1;
        self.worst = self.worst.max(took);
        if ran_body {
            self.computed += u64::from(took > WAITED);
        } else {
            self.waited += u64::from(took > WAITED);
            self.worst_waiting = self.worst_waiting.max(took);
        }
    }

    fn add(&mut self, other: &Tally) {
        self.calls += other.calls;
        self.runs.extend(&other.runs);
        self.computed += other.computed;
        self.waited += other.waited;
        self.worst = self.worst.max(other.worst);
        self.worst_waiting = self.worst_waiting.max(other.worst_waiting);
    }

    /// One line for the parent to read back: the counts, then the body runs' start times.
    fn to_line(&self) -> String {
        let runs: Vec<String> = self.runs.iter().map(u64::to_string).collect();
        format!(
            "{} {} {} {} {} | {}",
            self.calls,
            self.computed,
            self.waited,
            self.worst.as_micros(),
            self.worst_waiting.as_micros(),
            runs.join(" ")
        )
    }

    fn from_line(line: &str) -> Tally {
        let numbers = |text: &str| -> Vec<u64> {
            text.split_whitespace()
                .map(|n| n.parse().expect("a worker's tally"))
                .collect()
        };
        let (counts, runs) = line.split_once('|').expect("counts | runs");
        let [calls, computed, waited, worst, worst_waiting] = numbers(counts)[..] else {
            panic!("a worker printed {line:?}");
        };
        Tally {
            calls,
            runs: numbers(runs),
            computed,
            waited,
            worst: Duration::from_micros(worst),
            worst_waiting: Duration::from_micros(worst_waiting),
        }
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn install(url: &str) {
    cache_runtime::Config::new()
        .redis(url)
        .prefix(PREFIX)
        .install()
        .expect("install the config");
}

/// A worker process: `threads` callers from unix time `start_ms` for `seconds`.
fn worker(args: &Args, name: &str) {
    let call = mode(name).call;
    install(args.value("--url").expect("--url"));
    let start_ms = args.number("--start-ms", 0);
    let seconds = args.number("--seconds", 10);
    let threads = args.number("--threads", 16);
    std::thread::sleep(Duration::from_millis(
        start_ms.saturating_sub(unix_millis()),
    ));
    let end = Instant::now() + Duration::from_secs(seconds);
    let callers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                while Instant::now() < end {
                    RAN_BODY.with(|ran| ran.set(false));
                    let started = Instant::now();
                    assert_eq!(call(1), 1);
                    tally.record(started.elapsed(), RAN_BODY.with(Cell::get));
                    std::thread::sleep(PAUSE);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for caller in callers {
        total.add(&caller.join().expect("a caller thread"));
    }
    total.runs = RUNS.lock().expect("runs").clone();
    println!("{}", total.to_line());
}

/// Runs one mode across the fleet and adds up what its workers saw.
fn fleet(url: &str, mode: &Mode, seconds: u64, processes: u64, threads: u64) -> Tally {
    // Computed once before the measurement, so every expiry measured is a steady-state one.
    (mode.call)(1);
    let start_ms = (unix_millis() + 300).to_string();
    let me = std::env::current_exe().expect("this program's path");
    let workers: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(&me)
                .args(["--worker", mode.name, "--url", url, "--start-ms", &start_ms])
                .args(["--seconds", &seconds.to_string()])
                .args(["--threads", &threads.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let mut fleet = Tally::default();
    for worker in workers {
        let output = worker.wait_with_output().expect("a worker's output");
        assert!(output.status.success(), "a worker failed");
        fleet.add(&Tally::from_line(&String::from_utf8_lossy(&output.stdout)));
    }
    fleet
}

/// How many body runs recomputed each expiry: runs are grouped into rounds, a run that starts
/// less than half a TTL after the previous one belonging to the same round.
fn rounds(runs: &[u64]) -> Vec<usize> {
    let mut starts = runs.to_vec();
    starts.sort_unstable();
    let gap = TTL.as_millis() as u64 / 2;
    let mut rounds: Vec<usize> = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        match rounds.last_mut() {
            Some(round) if start - starts[i - 1] < gap => *round += 1,
            _ => rounds.push(1),
        }
    }
    rounds
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    if let Some(name) = args.value("--worker") {
        return worker(&args, name);
    }
    let seconds = args.number("--seconds", 10);
    let processes = args.number("--processes", 4);
    let threads = args.number("--threads", 16);
    let modes: Vec<&Mode> = match args.value("--modes") {
        Some(names) => names.split(',').map(mode).collect(),
        None => MODES.iter().collect(),
    };
    let redis = benches::Redis::start();
    install(&redis.url());
    println!(
        "{processes} processes × {threads} threads call one hot key for {seconds} s per mode \
         (ttl 1 s, body {} ms; each caller pauses {} ms between \
         calls so that the machine is not saturated). \"Waited\" = a call slower than {} ms \
         (half the body): either it ran the body itself, or it waited for another caller's \
         computation. Body runs are grouped into \
         expiries: a run starting less than 0.5 s after the previous one recomputes the same \
         expiry.\n",
        BODY.as_millis(),
        PAUSE.as_millis(),
        WAITED.as_millis(),
    );
    println!(
        "| mode | `#[cached(..)]` | calls | body runs | expiries | runs per expiry: mean (max) | \
         waited: ran the body | waited: for another's compute | worst call | worst call that \
         did not compute |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mode in modes {
        let tally = fleet(&redis.url(), mode, seconds, processes, threads);
        let rounds = rounds(&tally.runs);
        println!(
            "| {} | `{}` | {} | {} | {} | {:.2} ({}) | {} | {} | {} | {} |",
            mode.name,
            mode.arguments,
            tally.calls,
            tally.runs.len(),
            rounds.len(),
            tally.runs.len() as f64 / rounds.len().max(1) as f64,
            rounds.iter().max().unwrap_or(&0),
            tally.computed,
            tally.waited,
            millis(tally.worst),
            millis(tally.worst_waiting),
        );
    }
}
