//! The only items generated code touches. Not part of the public API: no stability promise.

use std::future::Future;
pub use std::sync::LazyLock;
use std::sync::OnceLock;
pub use std::time::Duration;

pub use crate::freshness::Lifetime;
pub use crate::front::Front;
pub use crate::key::{Key, KeyBuf, KeyPart, Shortcut};
pub use crate::layered::{
    BatchOutcome, CachedFn, FrontKey, Layers, Pending, Probed, RemoteCodec, Settings,
};
pub use crate::outcome::{Outcome, Plain};
pub use crate::stats::Stats;
pub use crate::store::local::Policy;

/// `ttl = N` (seconds).
pub const fn ttl_secs(secs: u64) -> Option<Duration> {
    Some(Duration::from_secs(secs))
}

/// The lifetime of a value under `expires`: its own, at most `ttl`.
pub fn expires_within<V: crate::Expires>(value: &V, ttl: Option<Duration>) -> Option<Duration> {
    crate::freshness::capped(value.expires_in(), ttl)
}

/// The lifetime of a value under `cache_none`: `none_ttl` for a `None`, the `ttl` otherwise.
pub fn none_lifetime<T>(value: &Option<T>, none_ttl: Option<Duration>) -> Option<Duration> {
    if value.is_none() {
        none_ttl
    } else {
        None
    }
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

/// A call's whole key on its way to [`CachedFn::probe_key`]: `ShortcutOf(&key).shortcut()`
/// is the key's [`KeyPart::shortcut`], or no shortcut when its type is not a `KeyPart` (the
/// key's encoding reports that error once, at the key).
#[derive(Clone, Copy)]
pub struct ShortcutOf<'a, T: ?Sized>(pub &'a T);

/// [`ShortcutOf`] for a key type that implements [`KeyPart`].
pub trait ViaKeyPart<'a> {
    /// The key's shortcut.
    fn shortcut(self) -> Shortcut<'a>;
}

impl<'a, T: KeyPart + ?Sized> ViaKeyPart<'a> for ShortcutOf<'a, T> {
    #[inline]
    fn shortcut(self) -> Shortcut<'a> {
        self.0.shortcut()
    }
}

/// [`ShortcutOf`] for any other type (found by autoref when [`ViaKeyPart`] does not apply).
pub trait ViaNothing<'a> {
    /// No shortcut.
    fn shortcut(self) -> Shortcut<'a>;
}

impl<'a, T: ?Sized> ViaNothing<'a> for &ShortcutOf<'a, T> {
    #[inline]
    fn shortcut(self) -> Shortcut<'a> {
        Shortcut::Encoded
    }
}

/// Whether a method's `Self` adds nothing to its keys (no type arguments; see
/// [`SelfTypeArgs`]): then the front table may be probed with the key's shortcut.
#[inline]
pub fn plain_self(type_name: &str) -> bool {
    self_type_args(type_name).is_none()
}

/// A value an L1 bounded by `max_bytes` can weigh: by the length of its encoding.
#[diagnostic::on_unimplemented(
    message = "`max_bytes` cannot weigh `{Self}`: it does not implement serde's `Serialize`",
    label = "`max_bytes` sizes each value by its encoded length",
    note = "derive `serde::Serialize` for `{Self}`, or bound L1 by entries with `capacity = N`"
)]
pub trait SizedValue: serde::Serialize {}

impl<V: serde::Serialize> SizedValue for V {}

/// How a `local` function under `max_bytes` weighs its values (a shared one weighs them with
/// its codec: `None`).
pub fn sizer<V: SizedValue>() -> Option<fn(&V) -> usize> {
    Some(crate::codec::encoded_len::<V, crate::codec::DefaultCodec>)
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
    // `Self` is a nominal type: no `<` comes before its own argument list. (Byte loops: these
    // names are short, and `str::find` costs more than the scan on them.)
    let open = type_name.bytes().position(|b| b == b'<')?;
    let (path, args) = type_name.split_at(open);
    let lifetimes_only = args.bytes().any(|b| b == b'\'')
        && args[1..args.len() - 1]
            .split(',')
            .all(|arg| arg.trim() == "'_");
    (!lifetimes_only).then_some((path, args))
}

/// The encoded type arguments of each generic `Self` one method has seen, so that a call
/// copies them into its key instead of parsing and escaping `type_name` each time. An
/// append-only list (instantiations are few), one per expansion.
pub struct SelfTypeArgs {
    head: OnceLock<&'static SelfTypeNode>,
}

struct SelfTypeNode {
    type_name: &'static str,
    /// The key part, already escaped; `None` for a `Self` with lifetimes only.
    encoded: Option<String>,
    next: OnceLock<&'static SelfTypeNode>,
}

impl SelfTypeNode {
    fn is(&self, type_name: &'static str) -> bool {
        std::ptr::eq(self.type_name, type_name) || self.type_name == type_name
    }
}

impl SelfTypeArgs {
    /// An empty list.
    pub const fn new() -> Self {
        SelfTypeArgs {
            head: OnceLock::new(),
        }
    }

    /// Starts the key of a method with the type arguments of `Self` when it is generic, so
    /// that `Holder<u8>` and `Holder<u16>` never share an entry (the cache, a `static`, is
    /// shared by every instantiation of the `impl`). Returns whether it wrote a part. A
    /// non-generic `Self` writes nothing: `ends_with('>')` on the constant `type_name` is all
    /// its call pays.
    #[inline]
    pub fn push(&'static self, buf: &mut KeyBuf, type_name: &'static str) -> bool {
        if !type_name.ends_with('>') {
            return false;
        }
        match &self.node(type_name).encoded {
            Some(encoded) => {
                buf.push_raw(encoded);
                true
            }
            None => false,
        }
    }

    fn node(&'static self, type_name: &'static str) -> &'static SelfTypeNode {
        let mut slot = &self.head;
        loop {
            match slot.get() {
                Some(node) if node.is(type_name) => return node,
                Some(node) => slot = &node.next,
                None => {
                    let node: &'static SelfTypeNode = Box::leak(Box::new(SelfTypeNode {
                        type_name,
                        encoded: self_type_args(type_name).map(|(_, args)| {
                            let mut part = KeyBuf::new();
                            push_arg(&mut part, true, args);
                            part.as_str().to_owned()
                        }),
                        next: OnceLock::new(),
                    }));
                    // Another thread may have appended first: then walk on from its node
                    // (this one is dropped from the list; a few bytes, once).
                    let _ = slot.set(node);
                }
            }
        }
    }
}

impl Default for SelfTypeArgs {
    fn default() -> Self {
        Self::new()
    }
}

/// The default cache name of a method: `type_name::<Self>()` and the method's name, without
/// the type arguments of a generic `Self` (they start each key instead, see
/// [`SelfTypeArgs::push`]), so the name is the same whichever instantiation runs first.
pub fn method_cache_name(self_type: &str, method: &str) -> String {
    let path = self_type_args(self_type).map_or(self_type, |(path, _)| path);
    format!("{path}::{method}")
}

/// A value a cache can hold: what [`CachedFn`]'s methods require of it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must be `Clone + Send + Sync + 'static`",
    label = "the value type of this cached function",
    note = "every hit hands out a clone of the stored value, possibly on another thread: derive \
            `Clone`, or return an `Arc<{Self}>`"
)]
pub trait CacheValue: Clone + Send + Sync + 'static {}

impl<V: Clone + Send + Sync + 'static> CacheValue for V {}

/// The one check of the value type (generated once per function, spanned at its return type).
#[inline(always)]
pub fn assert_cache_value<V: CacheValue>() {}

/// The cache of one function, as generated code calls it.
///
/// Generated code calls its methods as `(&Cache(f)).call(..)`: when the value type is a
/// [`CacheValue`], [`CacheCalls`] (implemented for `&Cache<V>`) is picked and forwards to
/// [`CachedFn`]; otherwise method resolution falls through to [`CacheNever`] (implemented
/// for `Cache<V>` with no bound), whose methods are never run because the crate does not
/// compile: [`assert_cache_value`] has reported the value type once, and the uses of the
/// cache add no error of their own (autoref specialization).
pub struct Cache<V: 'static>(pub &'static CachedFn<V>);

impl<V: 'static> Cache<V> {
    /// [`CachedFn::run_refreshing`] (needs no bound on the value type).
    pub fn refreshing<R>(self, call: impl FnOnce() -> R) -> R {
        self.0.run_refreshing(call)
    }
    /// [`CachedFn::run_refreshing_async`].
    pub async fn refreshing_async<F: Future>(self, call: F) -> F::Output {
        self.0.run_refreshing_async(call).await
    }
    /// [`CachedFn::run_uncached`].
    pub fn uncached<R>(self, call: impl FnOnce() -> R) -> R {
        self.0.run_uncached(call)
    }
    /// [`CachedFn::run_uncached_async`].
    pub async fn uncached_async<F: Future>(self, call: F) -> F::Output {
        self.0.run_uncached_async(call).await
    }
}

impl<V: 'static> Clone for Cache<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V: 'static> Copy for Cache<V> {}

/// A function's cache, in the `static` of its accessor, built by `init` on first use. `init`
/// is a plain `fn` (the generated closure captures nothing), so the code that builds the
/// cache once is generated per value type, not per function.
#[inline]
pub fn cache_in<V>(
    cell: &'static OnceLock<CachedFn<V>>,
    init: fn() -> CachedFn<V>,
) -> &'static CachedFn<V> {
    match cell.get() {
        Some(cache) => cache,
        None => first_use(cell, init),
    }
}

#[cold]
#[inline(never)]
fn first_use<V>(
    cell: &'static OnceLock<CachedFn<V>>,
    init: fn() -> CachedFn<V>,
) -> &'static CachedFn<V> {
    cell.get_or_init(init)
}

/// Builds a function's cache, like [`Cache`] picks its methods.
pub struct Build<V>(pub std::marker::PhantomData<V>);

impl<V> Clone for Build<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Build<V> {}

/// Builds the cache of a function whose value type can be cached.
pub trait BuildCache<V: 'static> {
    /// [`CachedFn::new`].
    fn build(self, settings: Settings, remote: Option<RemoteCodec<V>>) -> CachedFn<V>;
    /// The cache of a `cached_block!`, registered under its name.
    fn build_block(
        self,
        settings: Settings,
        remote: Option<RemoteCodec<V>>,
    ) -> &'static CachedFn<V>;
}

impl<V: CacheValue> BuildCache<V> for &Build<V> {
    #[inline]
    fn build(self, settings: Settings, remote: Option<RemoteCodec<V>>) -> CachedFn<V> {
        CachedFn::new(settings, remote)
    }
    fn build_block(
        self,
        settings: Settings,
        remote: Option<RemoteCodec<V>>,
    ) -> &'static CachedFn<V> {
        crate::block::register(CachedFn::new(settings, remote))
    }
}

/// The stand-in of [`BuildCache`] for a value type that cannot be cached (never run).
pub trait BuildNever<V: 'static>: Sized {
    /// Never run: the value type was reported by [`assert_cache_value`].
    fn build(self, _: Settings, _: Option<RemoteCodec<V>>) -> CachedFn<V> {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn build_block(self, _: Settings, _: Option<RemoteCodec<V>>) -> &'static CachedFn<V> {
        unreachable!("the value type was reported as not cacheable")
    }
}

impl<V: 'static> BuildNever<V> for Build<V> {}

/// The future of an async function's `peek` or `put` companion: boxed, so that the
/// companion returns it as it is instead of being an `async fn` of its own (a state machine
/// generated for every function), and so that it borrows nothing.
pub type Companion<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// [`CachedFn`]'s methods, for a value type that can be cached.
#[allow(async_fn_in_trait)]
pub trait CacheCalls<V: 'static> {
    /// [`CachedFn::call`].
    fn call<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: impl FnOnce() -> O,
    ) -> O;
    /// [`CachedFn::probe_key`].
    fn probe_key(self, front: &'static FrontKey<V>, key: Shortcut<'_>, plain: bool) -> Probed<V>;
    /// [`CachedFn::call_pending`].
    fn call_pending<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: impl FnOnce() -> O,
    ) -> O;
    /// [`CachedFn::call_async_pending`] (its future itself, not one more around it).
    fn call_async_pending<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: impl Future<Output = O>,
    ) -> impl Future<Output = O>;
    /// [`CachedFn::call_async_detached_pending`].
    async fn call_async_detached_pending<O, F>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static;
    /// [`CachedFn::call_async`] (its future itself).
    fn call_async<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: impl Future<Output = O>,
    ) -> impl Future<Output = O>;
    /// [`CachedFn::call_async_detached`].
    async fn call_async_detached<O, F>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static;
    /// [`Layers::key`].
    fn key(self, args: KeyBuf) -> Key;
    /// [`Layers::key_probed`].
    fn key_probed(self, args: KeyBuf, shortcut: Shortcut<'_>, plain: bool) -> Key;
    /// [`Layers::invalidate`].
    fn invalidate(self, args: KeyBuf);
    /// [`Layers::invalidate_async`].
    async fn invalidate_async(self, args: KeyBuf);
    /// [`Layers::stats`].
    fn stats(self) -> Stats;
    /// [`Layers::clear_local`].
    fn clear_local(self);
    /// [`CachedFn::peek`].
    fn peek(self, args: KeyBuf) -> Option<V>;
    /// [`CachedFn::peek_async`].
    fn peek_async(self, args: KeyBuf) -> Companion<Option<V>>;
    /// [`CachedFn::put`].
    fn put(self, args: KeyBuf, value: V);
    /// [`CachedFn::put_async`].
    fn put_async(self, args: KeyBuf, value: V) -> Companion<()>;
    /// [`Layers::clear`].
    fn clear(self);
    /// [`Layers::clear_async`].
    async fn clear_async(self);
}

impl<V: CacheValue> CacheCalls<V> for &Cache<V> {
    #[inline]
    fn call<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: impl FnOnce() -> O,
    ) -> O {
        self.0.call(front, args, body)
    }
    #[inline]
    fn probe_key(self, front: &'static FrontKey<V>, key: Shortcut<'_>, plain: bool) -> Probed<V> {
        self.0.probe_key(front, key, plain)
    }
    #[inline]
    fn call_pending<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: impl FnOnce() -> O,
    ) -> O {
        self.0.call_pending(front, args, pending, body)
    }
    #[inline]
    fn call_async_pending<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: impl Future<Output = O>,
    ) -> impl Future<Output = O> {
        self.0.call_async_pending(front, args, pending, body)
    }
    #[inline]
    async fn call_async_detached_pending<O, F>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        pending: Pending,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static,
    {
        self.0
            .call_async_detached_pending(front, args, pending, body)
            .await
    }
    #[inline]
    fn call_async<O: Outcome<V>>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: impl Future<Output = O>,
    ) -> impl Future<Output = O> {
        self.0.call_async(front, args, body)
    }
    #[inline]
    async fn call_async_detached<O, F>(
        self,
        front: &'static FrontKey<V>,
        args: &KeyBuf,
        body: F,
    ) -> O
    where
        O: Outcome<V> + Send + 'static,
        F: Future<Output = O> + Send + 'static,
    {
        self.0.call_async_detached(front, args, body).await
    }
    #[inline]
    fn key(self, args: KeyBuf) -> Key {
        self.0.key(args)
    }
    #[inline]
    fn key_probed(self, args: KeyBuf, shortcut: Shortcut<'_>, plain: bool) -> Key {
        self.0.key_probed(args, shortcut, plain)
    }
    fn invalidate(self, args: KeyBuf) {
        self.0.invalidate(args)
    }
    async fn invalidate_async(self, args: KeyBuf) {
        self.0.invalidate_async(args).await
    }
    fn stats(self) -> Stats {
        self.0.stats()
    }
    fn clear_local(self) {
        self.0.clear_local()
    }
    fn peek(self, args: KeyBuf) -> Option<V> {
        self.0.peek(args)
    }
    fn peek_async(self, args: KeyBuf) -> Companion<Option<V>> {
        Box::pin(self.0.peek_async(args))
    }
    fn put(self, args: KeyBuf, value: V) {
        self.0.put(args, value)
    }
    fn put_async(self, args: KeyBuf, value: V) -> Companion<()> {
        Box::pin(self.0.put_async(args, value))
    }
    fn clear(self) {
        self.0.clear()
    }
    async fn clear_async(self) {
        self.0.clear_async().await
    }
}

/// The stand-ins of [`CacheCalls`] for a value type that cannot be cached: never run, since
/// the crate does not compile ([`assert_cache_value`] reported the value type).
#[allow(async_fn_in_trait)]
pub trait CacheNever<V: 'static>: Sized {
    /// Never run.
    fn call<O>(self, _: &'static FrontKey<V>, _: &KeyBuf, _: impl FnOnce() -> O) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn probe_key(self, _: &'static FrontKey<V>, _: Shortcut<'_>, _: bool) -> Probed<V> {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn call_pending<O>(
        self,
        _: &'static FrontKey<V>,
        _: &KeyBuf,
        _: Pending,
        _: impl FnOnce() -> O,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    async fn call_async_pending<O>(
        self,
        _: &'static FrontKey<V>,
        _: &KeyBuf,
        _: Pending,
        _: impl Future<Output = O>,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    async fn call_async_detached_pending<O>(
        self,
        _: &'static FrontKey<V>,
        _: &KeyBuf,
        _: Pending,
        _: impl Future<Output = O>,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    async fn call_async<O>(
        self,
        _: &'static FrontKey<V>,
        _: &KeyBuf,
        _: impl Future<Output = O>,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    async fn call_async_detached<O>(
        self,
        _: &'static FrontKey<V>,
        _: &KeyBuf,
        _: impl Future<Output = O>,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn key(self, _: KeyBuf) -> Key {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn key_probed(self, _: KeyBuf, _: Shortcut<'_>, _: bool) -> Key {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn invalidate(self, _: KeyBuf) {}
    /// Never run.
    async fn invalidate_async(self, _: KeyBuf) {}
    /// Never run.
    fn stats(self) -> Stats {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn clear_local(self) {}
    /// Never run.
    fn peek(self, _: KeyBuf) -> Option<V> {
        None
    }
    /// Never run.
    fn peek_async(self, _: KeyBuf) -> Companion<Option<V>> {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn put(self, _: KeyBuf, _: V) {}
    /// Never run.
    fn put_async(self, _: KeyBuf, _: V) -> Companion<()> {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    fn clear(self) {}
    /// Never run.
    async fn clear_async(self) {}
}

impl<V: 'static> CacheNever<V> for Cache<V> {}

/// The key of one element of a batch function: the key a one-argument call with `id` uses,
/// so that `f::key_for(&id)`, preload scopes and `f::invalidate` name the same entry.
#[inline]
pub fn element_args<K: KeyPart + ?Sized>(id: &K) -> KeyBuf {
    let mut buf = KeyBuf::new();
    push_arg(&mut buf, true, id);
    buf
}

/// The batch calls of [`CachedFn`], for a value type that can be cached (see [`Cache`]).
#[allow(async_fn_in_trait)]
pub trait BatchCalls<V: 'static> {
    /// [`CachedFn::call_batch`].
    fn call_batch<K, O>(
        self,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        body: impl FnMut(Vec<K>) -> O,
    ) -> O
    where
        K: Clone + Eq + std::hash::Hash,
        O: BatchOutcome<K, V>;
    /// [`CachedFn::call_batch_async`].
    async fn call_batch_async<K, O, F>(
        self,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        body: impl FnMut(Vec<K>) -> F,
    ) -> O
    where
        K: Clone + Eq + std::hash::Hash,
        O: BatchOutcome<K, V>,
        F: Future<Output = O>;
}

impl<V: CacheValue> BatchCalls<V> for &Cache<V> {
    #[inline]
    fn call_batch<K, O>(
        self,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        body: impl FnMut(Vec<K>) -> O,
    ) -> O
    where
        K: Clone + Eq + std::hash::Hash,
        O: BatchOutcome<K, V>,
    {
        self.0.call_batch(front, ids, encode, body)
    }
    #[inline]
    async fn call_batch_async<K, O, F>(
        self,
        front: &'static FrontKey<V>,
        ids: &[K],
        encode: impl Fn(&K) -> KeyBuf,
        body: impl FnMut(Vec<K>) -> F,
    ) -> O
    where
        K: Clone + Eq + std::hash::Hash,
        O: BatchOutcome<K, V>,
        F: Future<Output = O>,
    {
        self.0.call_batch_async(front, ids, encode, body).await
    }
}

/// The stand-ins of [`BatchCalls`] for a value type that cannot be cached (never run).
#[allow(async_fn_in_trait)]
pub trait BatchNever<V: 'static>: Sized {
    /// Never run.
    fn call_batch<K, O>(
        self,
        _: &'static FrontKey<V>,
        _: &[K],
        _: impl Fn(&K) -> KeyBuf,
        _: impl FnMut(Vec<K>) -> O,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
    /// Never run.
    async fn call_batch_async<K, O, F>(
        self,
        _: &'static FrontKey<V>,
        _: &[K],
        _: impl Fn(&K) -> KeyBuf,
        _: impl FnMut(Vec<K>) -> F,
    ) -> O {
        unreachable!("the value type was reported as not cacheable")
    }
}

impl<V: 'static> BatchNever<V> for Cache<V> {}

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
        static SEEN: SelfTypeArgs = SelfTypeArgs::new();
        let mut buf = KeyBuf::new();
        assert!(!SEEN.push(&mut buf, "app::Repo"));
        assert!(!SEEN.push(&mut buf, "app::Parser<'_>"));
        assert!(SEEN.push(&mut buf, "app::Holder<u8, u16>"));
        assert_eq!(buf.as_str(), r"<u8\, u16>");
        assert!(SEEN.push(&mut buf, "app::Holder<u8, u16>"));
        assert!(SEEN.push(&mut buf, "app::Holder<u8>"));
        assert_eq!(buf.as_str(), r"<u8\, u16><u8\, u16><u8>");
    }
}
