//! Keys: how arguments become the stable, readable, injective string a cache entry is stored
//! under.
//!
//! # Encoding
//!
//! A call's arguments are encoded part by part into a [`KeyBuf`]; parts are separated by `:`.
//! Each [`KeyPart`] writes a text that never contains an unescaped separator, so the joined
//! string maps back to exactly one argument tuple (the encoding is *injective*):
//!
//! | value | encoding |
//! |---|---|
//! | integers | decimal: `42`, `-7` |
//! | `bool` | `true`, `false` |
//! | floats | Rust's shortest round-trip form: `0.1`, `-0.0`, `NaN`, `inf` |
//! | `str`, `String`, `char` | the text, with `\`, `:`, `,`, `[`, `]`, `~`, `+` escaped by `\` |
//! | `Option<T>` | `~` for `None`, `+` then `T` for `Some` |
//! | tuples | the elements joined by `:` |
//! | `Vec<T>`, slices, arrays | `[`, each element followed by `,`, then `]`: `[a,b,]` |
//! | `()` | `()` |
//!
//! The full remote key is `{prefix}:{name}:v{version}:{arguments}` (no `{prefix}:` when no
//! prefix is configured). Nothing here uses `std::hash`, so keys are the same in every process,
//! build and compiler version.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// Bytes kept inline before a key spills to the heap; most keys (a few integers or a short
/// string) fit, so building a key on the hit path allocates nothing.
const INLINE: usize = 32;

/// A growable buffer that encoded key parts are written into.
///
/// It keeps short keys inline (no allocation) and always holds valid UTF-8.
#[derive(Clone)]
pub struct KeyBuf {
    len: usize,
    inline: [u8; INLINE],
    spilled: Option<String>,
}

impl KeyBuf {
    /// An empty buffer.
    #[inline]
    pub fn new() -> Self {
        KeyBuf {
            len: 0,
            inline: [0; INLINE],
            spilled: None,
        }
    }

    /// Appends text as it is (no escaping). Used for separators and already-safe text.
    #[inline]
    pub fn push_raw(&mut self, s: &str) {
        if let Some(heap) = &mut self.spilled {
            heap.push_str(s);
            return;
        }
        let end = self.len + s.len();
        if end <= INLINE {
            self.inline[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            let mut heap = String::with_capacity(end * 2);
            heap.push_str(self.inline_str());
            heap.push_str(s);
            self.spilled = Some(heap);
        }
    }

    /// Appends `n` in decimal, writing the digits in place (the hit path of integer keys).
    #[inline]
    pub fn push_u64(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let text = format_u64(n, &mut digits);
        let end = self.len + text.len();
        if self.spilled.is_none() && end <= INLINE {
            // A byte loop: at most 20 bytes, cheaper than a `memcpy` call.
            for (dst, src) in self.inline[self.len..end].iter_mut().zip(text.bytes()) {
                *dst = src;
            }
            self.len = end;
        } else {
            self.push_raw(text);
        }
    }

    /// The first [`HEAD`] bytes of the key, zero-padded, and the key's length: with the hash,
    /// all a front-table lookup compares for keys that fit.
    #[inline]
    pub(crate) fn head(&self) -> ([u8; HEAD], usize) {
        match &self.spilled {
            None => {
                let mut head = [0u8; HEAD];
                head.copy_from_slice(&self.inline[..HEAD]);
                (head, self.len)
            }
            Some(heap) => head_of(heap),
        }
    }

    /// Appends text, escaping every byte that has a meaning in the encoding.
    pub fn push_escaped(&mut self, s: &str) {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            if is_meta(b) {
                self.push_raw(&s[start..i]);
                let pair = [b'\\', b];
                // Both bytes are ASCII, so the pair is valid UTF-8.
                self.push_raw(std::str::from_utf8(&pair).unwrap_or("\\"));
                start = i + 1;
            }
        }
        self.push_raw(&s[start..]);
    }

    /// Appends the part separator `:`.
    #[inline]
    pub fn separator(&mut self) {
        self.push_raw(":");
    }

    /// The encoded text so far.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.spilled {
            Some(heap) => heap,
            None => self.inline_str(),
        }
    }

    #[inline]
    fn inline_str(&self) -> &str {
        let bytes = &self.inline[..self.len];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `push_raw` is the only writer; it copies whole `&str`s (and `push_escaped`
        // passes it whole `&str` pieces split at ASCII bytes, plus ASCII escape pairs), so
        // `inline[..len]` is always a concatenation of valid UTF-8 strings.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl Default for KeyBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The text whose escaped form `encoded` is, when `encoded` is one text part (no unescaped
/// meta byte); `None` for any other encoding.
pub(crate) fn unescape_text(encoded: &str) -> Option<Cow<'_, str>> {
    let bytes = encoded.as_bytes();
    if !bytes.iter().any(|&b| is_meta(b)) {
        return Some(Cow::Borrowed(encoded));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let &next = bytes.get(i + 1)?;
                if !is_meta(next) {
                    return None;
                }
                out.push(next);
                i += 2;
            }
            b if is_meta(b) => return None,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII escape bytes were removed from valid UTF-8, at ASCII positions.
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[inline]
fn is_meta(b: u8) -> bool {
    matches!(b, b'\\' | b':' | b',' | b'[' | b']' | b'~' | b'+')
}

/// Bytes of a key compared inline by the front table.
pub(crate) const HEAD: usize = 24;

/// The zero-padded first [`HEAD`] bytes of `text`, and its length.
pub(crate) fn head_of(text: &str) -> ([u8; HEAD], usize) {
    let mut head = [0u8; HEAD];
    let n = text.len().min(HEAD);
    head[..n].copy_from_slice(&text.as_bytes()[..n]);
    (head, text.len())
}

/// A value that can be part of a cache key.
///
/// Implemented for integers, `bool`, `char`, floats, strings, paths, `Option`, tuples (up to
/// 8), slices, arrays, `Vec`, and through `&T`, `Box<T>`, `Rc<T>`, `Arc<T>`, `Cow<T>`.
/// Implement it for your own types by encoding their identifying fields in order:
///
/// ```
/// use cache_runtime::{KeyBuf, KeyPart};
///
/// struct UserId { tenant: String, id: u64 }
///
/// impl KeyPart for UserId {
///     fn encode_key(&self, out: &mut KeyBuf) {
///         (&self.tenant, self.id).encode_key(out);
///     }
/// }
/// ```
///
/// To stay injective an implementation must write a fixed number of parts, each through
/// another `KeyPart` (or [`KeyBuf::push_escaped`] for text).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `KeyPart`",
    label = "used in the cache key",
    note = "implement `cache_runtime::KeyPart` for `{Self}`, or choose what identifies a call \
            with `#[cached(key = ...)]` (e.g. `key = note.id`)"
)]
pub trait KeyPart {
    /// Appends this value's encoding to `out`.
    fn encode_key(&self, out: &mut KeyBuf);

    /// How a front table may recognise this value without encoding it, when it is a
    /// function's whole key. Integers and text have one; everything else is encoded.
    #[doc(hidden)]
    #[inline]
    fn shortcut(&self) -> Shortcut<'_> {
        Shortcut::Encoded
    }
}

/// A whole key as a front table can probe it without encoding: see [`KeyPart::shortcut`].
///
/// A shortcut stands for exactly one encoding: `Int(bits)` for the decimal text of the
/// integer whose bits (sign-extended to 64) they are, `Ints` for such texts joined by `:`,
/// `Text(t)` for `t` escaped. The
/// listener of other processes' invalidations maps encoded text back to both (see
/// `front::probe_hashes`).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Shortcut<'a> {
    /// An integer of at most 64 bits.
    Int(u64),
    /// Two or three such integers (a tuple): their bits, then zeros.
    Ints([u64; 3], usize),
    /// Text, unescaped.
    Text(&'a str),
    /// No shortcut: encode the key.
    Encoded,
}

macro_rules! unsigned_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                out.push_u64(*self as u64);
            }

            #[inline]
            fn shortcut(&self) -> Shortcut<'_> {
                Shortcut::Int(*self as u64)
            }
        }
    )*};
}
unsigned_key_part!(u8, u16, u32, u64, usize);

macro_rules! signed_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                if *self < 0 {
                    out.push_raw("-");
                }
                out.push_u64((*self as i64).unsigned_abs());
            }

            #[inline]
            fn shortcut(&self) -> Shortcut<'_> {
                Shortcut::Int(*self as i64 as u64)
            }
        }
    )*};
}
signed_key_part!(i8, i16, i32, i64, isize);

impl KeyPart for u128 {
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_raw(&self.to_string());
    }
}

impl KeyPart for i128 {
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_raw(&self.to_string());
    }
}

/// Writes `n` in decimal at the end of `buf` and returns the written text.
#[inline]
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: only ASCII digits were written to `buf[pos..]`.
    unsafe { std::str::from_utf8_unchecked(&buf[pos..]) }
}

impl KeyPart for bool {
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_raw(if *self { "true" } else { "false" });
    }
}

macro_rules! float_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn encode_key(&self, out: &mut KeyBuf) {
                // Debug prints the shortest text that parses back to the same value.
                out.push_escaped(&format!("{:?}", self));
            }
        }
    )*};
}
float_key_part!(f32, f64);

impl KeyPart for char {
    fn encode_key(&self, out: &mut KeyBuf) {
        let mut utf8 = [0u8; 4];
        out.push_escaped(self.encode_utf8(&mut utf8));
    }
}

impl KeyPart for str {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_escaped(self);
    }

    #[inline]
    fn shortcut(&self) -> Shortcut<'_> {
        Shortcut::Text(self)
    }
}

impl KeyPart for String {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_escaped(self);
    }

    #[inline]
    fn shortcut(&self) -> Shortcut<'_> {
        Shortcut::Text(self)
    }
}

impl KeyPart for Path {
    fn encode_key(&self, out: &mut KeyBuf) {
        match self.to_str() {
            Some(text) => out.push_escaped(text),
            None => {
                // Not UTF-8: write the raw bytes' debug form, marked so it cannot equal a
                // UTF-8 path's encoding (`\x` never appears in escaped text).
                out.push_raw("\\x");
                out.push_escaped(&format!("{:?}", self.as_os_str()));
            }
        }
    }
}

impl KeyPart for PathBuf {
    fn encode_key(&self, out: &mut KeyBuf) {
        self.as_path().encode_key(out);
    }
}

impl KeyPart for () {
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_raw("()");
    }
}

impl<T: KeyPart> KeyPart for Option<T> {
    fn encode_key(&self, out: &mut KeyBuf) {
        match self {
            None => out.push_raw("~"),
            Some(value) => {
                out.push_raw("+");
                value.encode_key(out);
            }
        }
    }
}

impl<T: KeyPart> KeyPart for [T] {
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push_raw("[");
        for item in self {
            item.encode_key(out);
            out.push_raw(",");
        }
        out.push_raw("]");
    }
}

impl<T: KeyPart, const N: usize> KeyPart for [T; N] {
    fn encode_key(&self, out: &mut KeyBuf) {
        self.as_slice().encode_key(out);
    }
}

impl<T: KeyPart> KeyPart for Vec<T> {
    fn encode_key(&self, out: &mut KeyBuf) {
        self.as_slice().encode_key(out);
    }
}

macro_rules! deref_key_part {
    ($($wrapper:ty),*) => {$(
        impl<T: KeyPart + ?Sized> KeyPart for $wrapper {
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                (**self).encode_key(out);
            }

            #[inline]
            fn shortcut(&self) -> Shortcut<'_> {
                (**self).shortcut()
            }
        }
    )*};
}
deref_key_part!(&T, &mut T, Box<T>, Rc<T>, Arc<T>);

impl<T: KeyPart + ToOwned + ?Sized> KeyPart for Cow<'_, T> {
    fn encode_key(&self, out: &mut KeyBuf) {
        (**self).encode_key(out);
    }

    #[inline]
    fn shortcut(&self) -> Shortcut<'_> {
        (**self).shortcut()
    }
}

macro_rules! tuple_key_part {
    ($first:ident $($rest:ident)* $(; $shortcut:item)?) => {
        impl<$first: KeyPart, $($rest: KeyPart),*> KeyPart for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                let ($first, $($rest,)*) = self;
                $first.encode_key(out);
                $( out.separator(); $rest.encode_key(out); )*
            }
            $($shortcut)?
        }
    };
}
/// The `Ints` shortcut of a pair or triple whose elements are all integers.
macro_rules! int_tuple_shortcut {
    ($count:literal; $($part:ident),*) => {
        #[inline]
        fn shortcut(&self) -> Shortcut<'_> {
            let ($($part,)*) = self;
            match ($($part.shortcut(),)*) {
                ($(Shortcut::Int($part),)*) => {
                    let mut words = [0u64; 3];
                    for (word, bits) in words.iter_mut().zip([$($part),*]) {
                        *word = bits;
                    }
                    Shortcut::Ints(words, $count)
                }
                _ => Shortcut::Encoded,
            }
        }
    };
}

tuple_key_part!(A);
tuple_key_part!(A B; int_tuple_shortcut! {2; a, b});
tuple_key_part!(A B C; int_tuple_shortcut! {3; a, b, c});
tuple_key_part!(A B C D);
tuple_key_part!(A B C D E);
tuple_key_part!(A B C D E F);
tuple_key_part!(A B C D E F G);
tuple_key_part!(A B C D E F G H);

/// The key of one call of one `#[cached]` function.
///
/// Obtained from the generated companion `f::key(..)` and passed to
/// [`preload`](fn@crate::preload). `Display` prints the exact key used in Redis, prefix included.
///
/// Building one allocates nothing when the encoded arguments fit in a [`KeyBuf`]'s inline
/// bytes (a few integers or a short string).
#[derive(Clone)]
pub struct Key {
    owner: &'static dyn KeyOwner,
    args: KeyBuf,
    /// How a call with these arguments probes its function's front table, when the key was
    /// made by a companion that knows (`f::key`, `f::key_for`, ...). Derived from the
    /// arguments: not part of `Eq`, `Hash` or `Display`.
    probe: Option<CallProbe>,
}

/// How a call probes its front table for a key (see `front::Probe`): the call site's
/// [`Shortcut`], without its borrow. A preload scope looks the key up the same way, so that a
/// key this thread's front table holds fresh is left out of its MGET without asking L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallProbe {
    /// One integer, by its bits.
    Int(u64),
    /// Two or three integers (their bits, then zeros), and how many.
    Ints([u64; 3], u8),
    /// One text: the arguments unescaped.
    Text,
    /// The encoded arguments.
    Encoded,
}

impl CallProbe {
    /// The probe of a call whose whole key has this `shortcut`; `plain` as the call site
    /// passes it to `probe_key` (a call that is not plain probes its encoded key).
    #[inline]
    pub(crate) fn of(shortcut: Shortcut<'_>, plain: bool) -> Self {
        match shortcut {
            _ if !plain => CallProbe::Encoded,
            Shortcut::Int(bits) => CallProbe::Int(bits),
            Shortcut::Ints(words, count) => CallProbe::Ints(words, count as u8),
            Shortcut::Text(_) => CallProbe::Text,
            Shortcut::Encoded => CallProbe::Encoded,
        }
    }
}

impl Key {
    pub(crate) fn new(owner: &'static dyn KeyOwner, args: KeyBuf) -> Self {
        Key {
            owner,
            args,
            probe: None,
        }
    }

    /// A key that knows how a call with `args` probes its front table.
    #[inline]
    pub(crate) fn probed(owner: &'static dyn KeyOwner, args: KeyBuf, probe: CallProbe) -> Self {
        Key {
            owner,
            args,
            probe: Some(probe),
        }
    }

    /// Whether this thread's front table holds a fresh value for the key, one a call would
    /// be answered with (`false` when the key does not know how a call probes it).
    #[inline]
    pub(crate) fn fresh_in_front(&self) -> bool {
        self.probe
            .is_some_and(|probe| self.owner.fresh_in_front(probe, &self.args))
    }

    /// The value [`fresh_in_front`](Self::fresh_in_front) finds, shared.
    pub(crate) fn front_value(&self) -> Option<Held> {
        self.owner.front_value(self.probe?, &self.args)
    }

    /// The key's counts in its function (see [`Marks`]); `None` for a key that does not
    /// know how its call probes.
    pub(crate) fn marks(&self) -> Option<Marks> {
        self.owner.marks(self.probe?, &self.args)
    }

    /// The encoded arguments (the part after `v{version}:`).
    #[inline]
    pub fn args(&self) -> &str {
        self.args.as_str()
    }

    /// The cache name of the function this key belongs to.
    pub fn name(&self) -> &str {
        self.owner.name()
    }

    pub(crate) fn owner(&self) -> &'static dyn KeyOwner {
        self.owner
    }

    /// The key as stored in Redis under the given prefix.
    pub(crate) fn remote(&self, prefix: &str) -> String {
        self.remote_name(prefix).to_string()
    }

    /// The parts of the key as stored in Redis under the given prefix.
    pub(crate) fn remote_name<'a>(&'a self, prefix: &'a str) -> RemoteName<'a> {
        RemoteName {
            prefix,
            name: self.owner.name(),
            version: self.owner.version(),
            args: self.args.as_str(),
        }
    }
}

/// A value L1 or a front table held fresh when a scope was planned, with its freshness
/// deadline ([`crate::clock::now`] nanoseconds) and early refresh's Δ·β.
pub(crate) struct Held {
    pub(crate) value: Arc<dyn std::any::Any + Send + Sync>,
    pub(crate) deadline: u64,
    pub(crate) delta_beta: u64,
}

/// A key's counts in its function when a preload scope planned it: its front epoch (moved by
/// a `put`, a refresh, another process's change, an invalidation) and its L1 write count
/// (moved by any value put in L1 for a key of its stripe). A call that reads the same
/// counts is answered by the scope before L1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Marks {
    pub(crate) front_epoch: u64,
    pub(crate) l1_writes: u32,
}

/// What a [`Key`] needs from the function it belongs to.
pub(crate) trait KeyOwner: Send + Sync {
    /// The cache name.
    fn name(&self) -> &str;
    /// The `version` argument.
    fn version(&self) -> u32;
    /// `true` for `local` functions, which never use Redis.
    fn is_local(&self) -> bool;
    /// The named shared store the function uses (`None`: the default store).
    fn store_name(&self) -> Option<&'static str>;
    /// The fresh entry L1 holds for these arguments, if any: a scope keeps it, so a call it
    /// makes later is answered even if L1 evicts the entry meanwhile. `read`: look the key up
    /// as a call does, which moka's admission policy counts (the call will not, see
    /// `scope`); else an absent key is told without counting.
    fn held(&self, args: &str, read: bool) -> Option<Held>;
    /// Whether this thread's front table holds a value for these encoded arguments that a
    /// call probing it as `probe` says would serve as fresh.
    fn fresh_in_front(&self, probe: CallProbe, args: &KeyBuf) -> bool;
    /// The value [`fresh_in_front`](Self::fresh_in_front) finds, shared.
    fn front_value(&self, probe: CallProbe, args: &KeyBuf) -> Option<Held>;
    /// The key's counts now: a call that reads the same ones knows that nothing replaced or
    /// voided the key's value in between (see [`Marks`]).
    fn marks(&self, probe: CallProbe, args: &KeyBuf) -> Option<Marks>;
    /// Counts a Redis failure against this function.
    fn count_l2_error(&self);
    /// An identity for maps keyed by function.
    fn id(&self) -> usize;
    /// Bumped by every `invalidate` and `clear_local`: an answer read at an older epoch may
    /// predate them.
    fn epoch(&self) -> u64;
}

/// The key prefix of the installed config, kept here for `Display for Key` (set by
/// `Config::install`): the key module depends on nothing of the crate's.
static PREFIX: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

/// Sets the prefix keys are displayed with.
pub(crate) fn set_prefix(prefix: &str) {
    let mut current = PREFIX.write().unwrap_or_else(|e| e.into_inner());
    current.clear();
    current.push_str(prefix);
}

/// The parts of an entry's key in Redis, written out as `{prefix}:{name}:v{version}:{args}`
/// (without `{prefix}:` when the prefix is empty). The one definition of that layout.
pub(crate) struct RemoteName<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) name: &'a str,
    pub(crate) version: u32,
    pub(crate) args: &'a str,
}

/// Encoded arguments longer than this are shortened in the shared store's key (see
/// [`RemoteName::write_to`]).
pub(crate) const LONG_ARGS: usize = 250;

/// How much of long arguments a shortened key keeps, readable, before their digest.
const LONG_HEAD: usize = 200;

impl RemoteName<'_> {
    /// Hands the key's bytes to `out`, piece by piece (no allocation for arguments up to
    /// [`LONG_ARGS`] bytes).
    ///
    /// Longer arguments (a 100 kB document as a key) would make keys of that size in the
    /// store: they are written as their first [`LONG_HEAD`] bytes (cut at a character
    /// boundary), `\#`, and the SHA-256 of the whole encoded arguments in hex. Such a key's
    /// argument part is longer than [`LONG_ARGS`] (at least 197 + 2 + 64 bytes), so it never
    /// equals the arguments of a short key, and two long ones share a key only if SHA-256
    /// collides. In-process layers keep the arguments whole.
    #[inline]
    pub(crate) fn write_to(&self, mut out: impl FnMut(&str)) {
        if !self.prefix.is_empty() {
            out(self.prefix);
            out(":");
        }
        out(self.name);
        out(":v");
        let mut digits = [0u8; 20];
        out(format_u64(self.version as u64, &mut digits));
        out(":");
        if self.args.len() <= LONG_ARGS {
            out(self.args);
        } else {
            let mut cut = LONG_HEAD;
            while !self.args.is_char_boundary(cut) {
                cut -= 1;
            }
            out(&self.args[..cut]);
            out("\\#");
            out(&digest_hex(self.args));
        }
    }
}

/// The SHA-256 of `text`, in lowercase hex.
fn digest_hex(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[(byte >> 4) as usize]));
        hex.push(char::from(b"0123456789abcdef"[(byte & 15) as usize]));
    }
    hex
}

impl fmt::Display for RemoteName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut result = Ok(());
        self.write_to(|piece| {
            if result.is_ok() {
                result = f.write_str(piece);
            }
        });
        result
    }
}

/// The [`RemoteName`] of these parts, as a string.
pub(crate) fn remote_key(prefix: &str, name: &str, version: u32, args: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + name.len() + args.len() + 16);
    let parts = RemoteName {
        prefix,
        name,
        version,
        args,
    };
    parts.write_to(|piece| out.push_str(piece));
    out
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = PREFIX.read().unwrap_or_else(|e| e.into_inner());
        f.write_str(&self.remote(&prefix))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.owner.name())
            .field("version", &self.owner.version())
            .field("args", &self.args.as_str())
            .finish()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.owner.name() == other.owner.name()
            && self.owner.version() == other.owner.version()
            && self.args() == other.args()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.owner.name().hash(state);
        self.owner.version().hash(state);
        self.args().hash(state);
    }
}

/// Encodes any key part into a fresh buffer (a helper for tests and custom code).
pub fn encode<T: KeyPart + ?Sized>(part: &T) -> String {
    let mut buf = KeyBuf::new();
    part.encode_key(&mut buf);
    buf.as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_encodings() {
        assert_eq!(encode(&42u64), "42");
        assert_eq!(encode(&-7i32), "-7");
        assert_eq!(encode(&i64::MIN), "-9223372036854775808");
        assert_eq!(encode(&("a:b", "c")), "a\\:b:c");
        assert_eq!(encode(&("a", "b:c")), "a:b\\:c");
        assert_eq!(encode(&Some(5u8)), "+5");
        assert_eq!(encode(&None::<u8>), "~");
        assert_eq!(encode(&vec!["x", ""]), "[x,,]");
        assert_eq!(encode(&Vec::<String>::new()), "[]");
        assert_eq!(encode(&()), "()");
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let long = "k".repeat(200);
        assert_eq!(encode(&(long.as_str(), 1u8)), format!("{long}:1"));
    }
}
