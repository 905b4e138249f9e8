//! Every `#[cached]` function of the process that has been called: [`functions`] lists them
//! (a stats page, metrics), [`clear_all_local`] empties their in-process layers (tests).
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
