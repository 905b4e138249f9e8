//! Procedural macros of `cache-runtime`. Depend on `cache-runtime`, which re-exports them;
//! this crate's items are documented there.

mod attr;
mod block;
mod expand;

use proc_macro::TokenStream;

/// Memoizes a function in the in-process cache (L1) and, when a Redis config is installed,
/// in Redis (L2). See `cache_runtime::cached` for the arguments and the generated companions.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Memoizes a block: `cached_block!(name = "..", value = Type, key = expr, ttl = 60, { .. })`.
/// See `cache_runtime::cached_block`.
#[proc_macro]
pub fn cached_block(input: TokenStream) -> TokenStream {
    expand::cached_block(input.into()).into()
}
