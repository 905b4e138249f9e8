//! What the runtime logs through `tracing`, captured in memory: a process-wide subscriber
//! (installed once, on first use) that writes each event as one line, `LEVEL message
//! field=value ...`, into a shared buffer. Events from every thread are kept, so that async
//! calls run on a runtime's workers are seen too; tests that read the buffer hold
//! [`serial`](crate::serial) and call [`Logs::take`] to start from an empty one.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The captured events.
pub struct Logs {
    lines: Mutex<Vec<String>>,
}

impl Logs {
    /// The process' capture, installed as the global `tracing` subscriber on first use.
    ///
    /// # Panics
    ///
    /// When another global subscriber was installed first.
    pub fn capture() -> &'static Logs {
        static LOGS: OnceLock<&'static Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs: &'static Logs = Box::leak(Box::new(Logs {
                lines: Mutex::new(Vec::new()),
            }));
            tracing::subscriber::set_global_default(Capture {
                logs,
                next_span: AtomicU64::new(1),
            })
            .expect("no other global tracing subscriber");
            logs
        })
    }

    /// The lines logged since the last call, emptying the buffer.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct Capture {
    logs: &'static Logs,
    next_span: AtomicU64,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level: &Level = event.metadata().level();
        let mut line = Line(level.to_string());
        event.record(&mut line);
        self.logs
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
