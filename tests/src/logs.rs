//! What the runtime logs through `tracing`, captured in memory: a process-wide subscriber
//! (installed once, on first use) that writes each event as one line, `LEVEL message
//! field=value ...`, into a shared buffer. Events from every thread are kept, so that async
//! calls run on a runtime's workers are seen too; tests that read the buffer hold
//! [`serial`](crate::serial) and call [`Logs::take`] to start from an empty one.
//!
//! Spans are kept too ([`Logs::take_spans`]): each one's name, its fields (those given at
//! creation and those recorded later) and the events logged inside it.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The captured events.
pub struct Logs {
    lines: Mutex<Vec<String>>,
    spans: Mutex<Vec<CapturedSpan>>,
}

/// One span opened while capturing.
#[derive(Debug, Clone)]
pub struct CapturedSpan {
    id: u64,
    /// The span's name (`cache_miss`).
    pub name: &'static str,
    /// Its fields, `(name, value)`, in the order they were given or recorded.
    pub fields: Vec<(String, String)>,
    /// The lines of the events whose parent it is (as [`Logs::take`] shows them).
    pub events: Vec<String>,
}

impl CapturedSpan {
    /// The last value recorded for `field`.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.as_str())
    }
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
                spans: Mutex::new(Vec::new()),
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

    /// The spans opened since the last call, emptying their list.
    pub fn take_spans(&self) -> Vec<CapturedSpan> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn with_span(&self, id: &Id, change: impl FnOnce(&mut CapturedSpan)) {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = spans.iter_mut().find(|s| s.id == id.into_u64()) {
            change(span);
        }
    }
}

thread_local! {
    /// The spans this thread is inside (entered and not exited), innermost last.
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A span's fields as `(name, value)` pairs.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
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

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let id = self.next_span.fetch_add(1, Ordering::Relaxed);
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        self.logs
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(CapturedSpan {
                id,
                name: attributes.metadata().name(),
                fields: fields.0,
                events: Vec::new(),
            });
        Id::from_u64(id)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        self.logs.with_span(id, |span| span.fields.extend(fields.0));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level: &Level = event.metadata().level();
        let mut line = Line(level.to_string());
        event.record(&mut line);
        let parent = if event.is_root() {
            None
        } else if let Some(parent) = event.parent() {
            Some(parent.clone())
        } else {
            ENTERED
                .with(|entered| entered.borrow().last().copied())
                .map(Id::from_u64)
        };
        if let Some(parent) = parent {
            self.logs
                .with_span(&parent, |span| span.events.push(line.0.clone()));
        }
        self.logs
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.0);
    }

    fn enter(&self, id: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(id.into_u64()));
    }

    fn exit(&self, id: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|&e| e == id.into_u64()) {
                entered.remove(at);
            }
        });
    }
}
