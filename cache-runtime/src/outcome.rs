//! What a function returns, and which of its results are worth caching.

/// A return type `#[cached]` knows how to cache: `Result<V, E>` caches only `Ok`,
/// `Option<V>` only `Some`, and any other type `V` (wrapped in [`Plain`]) always.
pub trait Outcome<V>: Sized {
    /// Rebuilds the return value from a cached value.
    fn from_cached(value: V) -> Self;
    /// The part to cache, if this result should be cached.
    fn cacheable(&self) -> Option<&V>;
}

/// A return value that is always cached.
pub struct Plain<V>(pub V);

impl<V> Outcome<V> for Plain<V> {
    #[inline]
    fn from_cached(value: V) -> Self {
        Plain(value)
    }

    fn cacheable(&self) -> Option<&V> {
        Some(&self.0)
    }
}

impl<V, E> Outcome<V> for Result<V, E> {
    #[inline]
    fn from_cached(value: V) -> Self {
        Ok(value)
    }

    fn cacheable(&self) -> Option<&V> {
        self.as_ref().ok()
    }
}

impl<V> Outcome<V> for Option<V> {
    #[inline]
    fn from_cached(value: V) -> Self {
        Some(value)
    }

    fn cacheable(&self) -> Option<&V> {
        self.as_ref()
    }
}
