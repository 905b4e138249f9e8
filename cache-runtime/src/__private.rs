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

/// The settings of one function, checked once as its cache is built: a zero `ttl` (a
/// `Duration` expression the macro could not read, e.g. `Duration::from_millis(ZERO)`) would
/// make every entry expire at once, so that every call runs the body — the mistake `ttl = 0`
/// is a compile error for. It is logged once per function with `tracing::warn!`.
pub fn checked_settings(settings: Settings) -> Settings {
    if settings.lifetime.ttl == Some(Duration::ZERO) {
        tracing::warn!(
            name = %settings.name,
            "`ttl` is zero: every entry expires at once and every call runs the body; \
             leave `ttl` out to keep entries until they are evicted"
        );
    }
    settings
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

/// The type arguments of a generic `Self`, as `type_name` prints them (`<u8>` of
/// `app::Holder<u8>`); `None` for a type without any, or with lifetimes only (`Parser<'_>`),
/// whose instantiations are one type to the cache.
fn self_type_args(type_name: &str) -> Option<(&str, &str)> {
    if !type_name.ends_with('>') {
        return None;
    }
    let mut depth = 0usize;
    for (i, b) in type_name.bytes().enumerate().rev() {
        match b {
            b'>' => depth += 1,
            b'<' => {
                depth -= 1;
                if depth == 0 {
                    let (path, args) = type_name.split_at(i);
                    let lifetimes_only = args[1..args.len() - 1]
                        .split(',')
                        .all(|arg| arg.trim() == "'_");
                    return (!lifetimes_only).then_some((path, args));
                }
            }
            _ => {}
        }
    }
    None
}

/// Starts the key of a method with the type arguments of `Self` when it is generic, so that
/// `Holder<u8>` and `Holder<u16>` never share an entry (the cache, a `static`, is shared by
/// every instantiation of the `impl`). Returns whether it wrote a part. A non-generic `Self`
/// writes nothing: `ends_with('>')` on the constant `type_name` is all its call pays.
#[inline]
pub fn push_self_type_args(buf: &mut KeyBuf, type_name: &'static str) -> bool {
    if !type_name.ends_with('>') {
        return false;
    }
    push_generic_args(buf, type_name)
}

#[inline(never)]
fn push_generic_args(buf: &mut KeyBuf, type_name: &'static str) -> bool {
    match self_type_args(type_name) {
        Some((_, args)) => {
            push_arg(buf, true, args);
            true
        }
        None => false,
    }
}

/// The default cache name of a method: `type_name::<Self>()` and the method's name, without
/// the type arguments of a generic `Self` (they start each key instead, see
/// [`push_self_type_args`]), so the name is the same whichever instantiation runs first.
pub fn method_cache_name(self_type: &str, method: &str) -> String {
    let path = self_type_args(self_type).map_or(self_type, |(path, _)| path);
    format!("{path}::{method}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_arguments_of_self() {
        assert_eq!(self_type_args("app::Repo"), None);
        assert_eq!(self_type_args("app::Parser<'_>"), None);
        assert_eq!(self_type_args("app::Pair<'_, '_>"), None);
        assert_eq!(
            self_type_args("app::Holder<u8>"),
            Some(("app::Holder", "<u8>"))
        );
        assert_eq!(
            self_type_args("app::Holder<'_, alloc::vec::Vec<u8>>"),
            Some(("app::Holder", "<'_, alloc::vec::Vec<u8>>"))
        );
        assert_eq!(method_cache_name("app::Repo", "load"), "app::Repo::load");
        assert_eq!(
            method_cache_name("app::Holder<u8>", "get"),
            "app::Holder::get"
        );
        let mut buf = KeyBuf::new();
        assert!(!push_self_type_args(&mut buf, "app::Repo"));
        assert!(push_self_type_args(&mut buf, "app::Holder<u8, u16>"));
        assert_eq!(buf.as_str(), r"<u8\, u16>");
    }
}
