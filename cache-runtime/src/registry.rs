//! Every `#[cached]` function of the process that has been called: [`functions`] lists them
//! (a stats page, metrics), [`clear_all_local`] empties their in-process layers and
//! [`reset_stats`] zeroes their counters (tests).
//!
//! A function is listed by its first call that reaches past the front table (the first call
//! of any function does), so listing costs nothing on the hit path.

use std::sync::RwLock;

use crate::stats::Stats;

/// What the registry needs from a function's cache.
pub(crate) trait Listed: Send + Sync {
    fn name(&self) -> &str;
    fn stats(&self) -> Stats;
    fn entries(&self) -> u64;
    fn l1_bytes(&self) -> u64;
    fn clear_local(&self);
    fn reset_stats(&self);
}

static FUNCTIONS: RwLock<Vec<&'static dyn Listed>> = RwLock::new(Vec::new());

/// Lists `function` (called once per function).
pub(crate) fn list(function: &'static dyn Listed) {
    FUNCTIONS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(function);
}

/// One `#[cached]` function of this process.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FunctionInfo {
    /// Its cache name (module path and function name unless `name = ".."` was given).
    pub name: String,
    /// Its counters since the process started.
    pub stats: Stats,
    /// Entries in its in-process layer (expired ones that moka has not dropped yet
    /// included).
    pub entries: u64,
    /// What its in-process layer holds, in bytes of encoded values and keys, under
    /// `#[cached(max_bytes = ..)]` (bounded by it); without `max_bytes`, the entries again.
    pub l1_bytes: u64,
}

/// Every `#[cached]` function called so far in this process, in the order of their first
/// calls.
///
/// ```
/// use cache_runtime::{cached, functions};
///
/// #[cached(local)]
/// fn square(n: u64) -> u64 { n * n }
///
/// square(3);
/// let listed = functions();
/// let info = listed.iter().find(|f| f.name.ends_with("square")).unwrap();
/// assert_eq!(info.stats.misses, 1);
/// ```
pub fn functions() -> Vec<FunctionInfo> {
    FUNCTIONS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|f| FunctionInfo {
            name: f.name().to_owned(),
            stats: f.stats(),
            entries: f.entries(),
            l1_bytes: f.l1_bytes(),
        })
        .collect()
}

/// Empties the in-process layer (L1 and every thread's front table) of every function
/// called so far; shared stores keep their entries. For tests that must start cold.
pub fn clear_all_local() {
    let listed: Vec<&'static dyn Listed> =
        FUNCTIONS.read().unwrap_or_else(|e| e.into_inner()).clone();
    for function in listed {
        function.clear_local();
    }
}

/// Zeroes the [`Stats`] of every function called so far (each `f::stats()` counts from 0
/// again). For tests that assert on counts; tests running in parallel in one binary reset
/// each other's counts, so such tests either run one at a time or compare
/// [`Stats::since`] a snapshot of their own instead.
///
/// ```
/// use cache_runtime::{cached, reset_stats};
///
/// #[cached(local)]
/// fn triple(n: u64) -> u64 { n * 3 }
///
/// triple(1);
/// triple(1);
/// reset_stats();
/// assert_eq!(triple::stats().l1_hits, 0);
/// triple(1);
/// assert_eq!((triple::stats().l1_hits, triple::stats().misses), (1, 0));
/// ```
pub fn reset_stats() {
    let listed: Vec<&'static dyn Listed> =
        FUNCTIONS.read().unwrap_or_else(|e| e.into_inner()).clone();
    for function in listed {
        function.reset_stats();
    }
}
