//! A `ttl` that is zero at run time (a `Duration` expression the macro cannot read; a literal
//! zero is a compile error, see `ui-tests/ui/ttl-zero*.rs`) is logged once per function with
//! `tracing::warn!`, when its cache is built.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::cached;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const NO_TIME: u64 = 0;

#[cached(ttl = Duration::from_millis(NO_TIME))]
fn never_kept(n: u32) -> u32 {
    n + 1
}

/// Keeps every WARN event's fields, as text.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_zero_ttl_is_logged_once_when_the_cache_is_built() {
    let warnings = Warnings::default();
    tracing::subscriber::with_default(warnings.clone(), || {
        for _ in 0..3 {
            assert_eq!(never_kept(1), 2);
        }
        let _ = never_kept::key(1);
    });
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one warning, not one per call: {seen:?}");
    assert!(seen[0].contains("`ttl` is zero"), "{seen:?}");
    assert!(
        seen[0].contains("ttl_zero_warning::never_kept"),
        "the warning names the function: {seen:?}"
    );
    assert_eq!(never_kept::stats().misses, 3, "nothing was kept");
}
