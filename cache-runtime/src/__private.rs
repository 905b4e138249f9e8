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

/// A value that can go to Redis. Only here so that a missing serde impl is reported with a
/// message that names the fix (`local`, or the derives) instead of a bare trait bound.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in Redis: it does not implement serde's `Serialize` and \
               `Deserialize`",
    label = "the value type of this cached function",
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or write \
            `#[cached(local)]` to keep its values in memory only"
)]
pub trait RemoteValue: serde::Serialize + serde::de::DeserializeOwned {}

impl<V: serde::Serialize + serde::de::DeserializeOwned> RemoteValue for V {}

/// The codec of a function whose values go to Redis.
pub fn shared<V: RemoteValue>() -> Option<RemoteCodec<V>> {
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
