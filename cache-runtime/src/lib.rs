//! Two-layer memoization for Rust: an in-process moka cache (L1) in front of Redis shared by
//! every process (L2), with preload scopes that fetch all the keys a request needs in one
//! MGET.
//!
//! ```
//! use cache_runtime::cached;
//!
//! #[cached(ttl = 60)]
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! assert_eq!(square(12), 144); // runs the body
//! assert_eq!(square(12), 144); // answered from memory
//! assert_eq!(square::stats().misses, 1);
//! assert_eq!(square::stats().l1_hits, 1);
//! println!("{}", square::key(12)); // the key in Redis, e.g. `rust_out::square:v0:12`
//! ```
//!
//! See the README for set-up with Redis, [`preload`](fn@preload) for scopes, and [`cached`] for every
//! argument of the attribute.
#![warn(missing_docs)]

mod block;
#[cfg(feature = "redis")]
mod breaker;
mod clock;
pub mod codec;
mod coherence;
mod config;
mod error;
mod flight;
mod freshness;
mod front;
mod hash;
mod io;
mod key;
mod layered;
mod lock;
mod mode;
mod outcome;
#[cfg(feature = "metrics")]
mod publish;
mod random;
mod registry;
mod scope;
mod stats;
mod store;
mod sync;

#[doc(hidden)]
pub mod __private;

pub use block::{block_clear_local, block_invalidate, block_key};
#[doc = include_str!("cached.md")]
pub use cache_macros::cached;
#[doc = include_str!("block.md")]
pub use cache_macros::cached_block;
pub use config::{Config, Error, Store};
pub use freshness::Expires;
pub use key::{encode as encode_key, Key, KeyBuf, KeyPart};
pub use mode::{bypass, bypass_async};
pub use outcome::{Outcome, Plain};
#[cfg(feature = "metrics")]
pub use publish::publish_metrics;
pub use registry::{clear_all_local, functions, FunctionInfo};
pub use scope::{preload, preload_async};
pub use stats::Stats;
#[cfg(feature = "disk")]
pub use store::disk::{default_cache_dir, disk_usage, DiskUsage};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
