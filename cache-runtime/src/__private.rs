//! The only items generated code touches. Not part of the public API: no stability promise.

pub use std::sync::LazyLock;
pub use std::time::Duration;

pub use crate::freshness::Lifetime;
pub use crate::front::Front;
pub use crate::key::{Key, KeyBuf, KeyPart};
pub use crate::layered::{CachedFn, FrontKey, RemoteCodec, Settings};
pub use crate::outcome::{Outcome, Plain};
pub use crate::stats::Stats;

/// `ttl = N` (seconds).
pub const fn ttl_secs(secs: u64) -> Option<Duration> {
    Some(Duration::from_secs(secs))
}

/// `ttl = <Duration expression>`.
pub fn ttl_duration(ttl: Duration) -> Option<Duration> {
    Some(ttl)
}

/// The codec of a function whose values go to Redis.
pub fn shared<V: serde::Serialize + serde::de::DeserializeOwned>() -> Option<RemoteCodec<V>> {
    Some(RemoteCodec::serde())
}

/// The codec of a `local` function: none, and no serde bounds.
pub fn local<V>() -> Option<RemoteCodec<V>> {
    None
}

/// Appends one argument to a key, behind a separator unless it is the first.
#[inline]
pub fn push_arg<T: KeyPart + ?Sized>(buf: &mut KeyBuf, first: bool, arg: &T) {
    if !first {
        buf.separator();
    }
    arg.encode_key(buf);
}
