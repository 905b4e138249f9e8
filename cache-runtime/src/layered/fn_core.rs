//! What a `#[cached]` function keeps that does not depend on its value type: its settings,
//! counters and warnings, and the requests to its shared store. It is compiled once, in
//! this crate, rather than once per value type in every crate that uses `#[cached]` (see
//! `store::local` for the same reason); `CachedFn` reaches it through `Deref`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{trace, Remote, Settings, Write};
use crate::clock;
use crate::coherence::{self, Change};
use crate::config::{self, Installed};
use crate::flight;
use crate::io::Io;
use crate::key;
use crate::stats::Counters;
use crate::store::{Budget, Failure, Op, Reply, SharedStore};

/// How often one function logs one kind of error reply at `warn`.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The value-type-free part of one function's cache.
pub struct FnCore {
    pub(super) settings: Settings,
    pub(super) counters: Counters,
    /// Error reply codes logged at `warn`, and when (unix ms) they last were.
    warned: Mutex<Vec<(String, u64)>>,
    /// Whether the warning about a named store that is not configured was given.
    missing_store_warned: AtomicBool,
    /// The name as its histograms' label.
    pub(super) label: trace::Label,
    /// Whether the function has a codec: a `local` one never asks a shared store.
    has_codec: bool,
}

impl FnCore {
    pub(super) fn new(settings: Settings, has_codec: bool) -> Self {
        FnCore {
            label: trace::Label::new(&settings.name),
            settings,
            counters: Counters::default(),
            warned: Mutex::new(Vec::new()),
            missing_store_warned: AtomicBool::new(false),
            has_codec,
        }
    }

    /// The shared-store side of a call with these encoded arguments.
    pub(super) fn remote_of(&self, args: &str, ask_first: bool) -> Option<Remote> {
        if !self.has_codec {
            return None;
        }
        let installed = config::current()?;
        let store = self.store_in(&installed)?;
        if !store.available() {
            // The breaker is open: skip the key, the encoding and the requests altogether.
            Counters::add(&self.counters.l2_errors);
            return None;
        }
        let key = key::remote_key(
            &installed.prefix,
            &self.settings.name,
            self.settings.version,
            args,
        );
        Some(Remote {
            store: Arc::clone(store),
            key,
            ask_first,
            channel: installed.channel(self.settings.store).cloned(),
        })
    }

    /// This function's store in `installed`; a named store that is not configured is
    /// warned about once, and the function keeps to L1.
    pub(super) fn store_in<'a>(
        &self,
        installed: &'a Installed,
    ) -> Option<&'a Arc<dyn SharedStore>> {
        let found = installed.store(self.settings.store);
        if found.is_none() {
            if let Some(name) = self.settings.store {
                if !self.missing_store_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        function = %self.settings.name,
                        store = name,
                        "this function names a store the installed config does not have; \
                         it keeps its values in memory only"
                    );
                }
            }
        }
        found
    }

    /// Sends the shared store's write of a stored value, if there is one to send, announced
    /// to other processes as a change of the key with these encoded arguments.
    pub(super) async fn send_write(
        &self,
        io: &impl Io,
        remote: Option<&Remote>,
        write: Option<Write>,
        args: &str,
        budget: &Budget,
    ) -> bool {
        let (Some(remote), Some(write)) = (remote, write) else {
            return false;
        };
        let op = Op::Set {
            key: &remote.key,
            value: &write.bytes,
            ttl: write.ttl,
        };
        self.send_announced(io, remote, op, Change::Key, args, budget)
            .await
            .is_some()
    }

    /// Sends `op` to the call's store, announced on the store's channel (when coherence is
    /// on) as a `change` of the key with these encoded arguments.
    pub(super) async fn send_announced(
        &self,
        io: &impl Io,
        remote: &Remote,
        op: Op<'_>,
        change: Change,
        args: &str,
        budget: &Budget,
    ) -> Option<Reply> {
        let Some(channel) = remote.channel.as_deref() else {
            return self.send(io, remote, op, budget).await;
        };
        let message = coherence::message(change, &self.settings.name, self.settings.version, args);
        let announced = Op::Announced {
            op: &op,
            channel,
            message: &message,
        };
        self.send(io, remote, announced, budget).await
    }

    /// Sends one operation to the call's store; a failure is counted and logged, and reads
    /// as `None`.
    pub(super) async fn send(
        &self,
        io: &impl Io,
        remote: &Remote,
        op: Op<'_>,
        budget: &Budget,
    ) -> Option<Reply> {
        let started = Instant::now();
        let result = io.run(&*remote.store, op, budget).await;
        if !matches!(
            result,
            Err(Failure::Skipped | Failure::OutOfTime | Failure::NoRuntime)
        ) {
            // The store was asked: its latency, for the trace and the histogram.
            let took = started.elapsed();
            budget.took(took);
            trace::store_took(&self.label, remote.store.kind(), &op, took);
        }
        match result {
            Ok(reply) => Some(reply),
            Err(failure) => {
                Counters::add(&self.counters.l2_errors);
                match failure.reply_code() {
                    Some(code) if self.first_warning(code) => tracing::warn!(
                        name = %self.settings.name,
                        store = remote.store.kind(),
                        code,
                        %failure,
                        "the shared store refuses this function's requests; computing without \
                         it (logged once a minute per function and kind of error)"
                    ),
                    _ => {
                        tracing::debug!(name = %self.settings.name, %failure, "falling back to computing")
                    }
                }
                None
            }
        }
    }

    /// Whether an error reply with this code is the first of its kind for this function in
    /// the last [`WARN_EVERY`]: an error reply (NOPERM, OOM, READONLY...) tends to come back
    /// on every call, and is logged at `warn` once in that time.
    pub(super) fn first_warning(&self, code: &str) -> bool {
        let now = clock::unix_millis();
        let mut warned = flight::lock(&self.warned);
        match warned.iter_mut().find(|(seen, _)| seen == code) {
            Some((_, at)) if now.saturating_sub(*at) < WARN_EVERY.as_millis() as u64 => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                warned.push((code.to_owned(), now));
                true
            }
        }
    }
}
