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
//! [`cached`] documents every argument of the attribute and the companions it generates
//! (`f::invalidate`, `f::stats`, ...), [`Config`] the shared stores, [`preload`](fn@preload)
//! the scopes. The README is the guide:
//!
//! - [Using it](https://github.com/cache-runtime/cache-runtime#using-it): `cargo add`,
//!   features, arguments and companions
//! - [Shared stores](https://github.com/cache-runtime/cache-runtime#shared-stores): Redis, and
//!   what happens when it fails; the [disk store](https://github.com/cache-runtime/cache-runtime#disk-store);
//!   [Redis Cluster](https://github.com/cache-runtime/cache-runtime#redis-cluster); a
//!   [coherent L1](https://github.com/cache-runtime/cache-runtime#a-coherent-l1-across-the-fleet)
//! - [Preload scopes](https://github.com/cache-runtime/cache-runtime#preload-scopes),
//!   [batch functions](https://github.com/cache-runtime/cache-runtime#batch-functions),
//!   [fragment blocks](https://github.com/cache-runtime/cache-runtime#fragment-blocks),
//!   [stampede protection](https://github.com/cache-runtime/cache-runtime#stampede-protection)
//! - [Testing code that uses `#[cached]`](https://github.com/cache-runtime/cache-runtime#testing-code-that-uses-cached):
//!   counting, the test clock, isolation, a real Redis per test (the module `testing`, with
//!   the feature of that name)
//! - [Performance](https://github.com/cache-runtime/cache-runtime#performance)
//!
//! Features: `redis` (default), `cluster` (default), `disk`, `tls`, `postcard`, `testing`.
#![warn(missing_docs)]

mod block;
#[cfg(feature = "redis")]
mod breaker;
mod clock;
pub mod codec;
mod coherence;
mod config;
mod doorkeeper;
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
#[cfg(feature = "testing")]
pub mod testing;
mod writes;

#[doc(hidden)]
pub mod __private;

pub use block::{block_clear_local, block_invalidate, block_key};
#[doc = include_str!("cached.md")]
pub use cache_macros::cached;
#[doc = include_str!("block.md")]
pub use cache_macros::cached_block;
pub use config::{Config, Error, Store};
pub use freshness::Expires;
#[doc(hidden)]
pub use key::Shortcut;
pub use key::{encode as encode_key, Key, KeyBuf, KeyPart};
pub use mode::{bypass, bypass_async};
// What the macro wraps return values in; not for users.
#[doc(hidden)]
pub use outcome::{Outcome, Plain};
#[cfg(feature = "metrics")]
pub use publish::publish_metrics;
pub use registry::{clear_all_local, functions, reset_stats, FunctionInfo};
pub use scope::{preload, preload_async};
pub use stats::Stats;
#[cfg(feature = "disk")]
pub use store::disk::{default_cache_dir, disk_usage, DiskUsage};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
