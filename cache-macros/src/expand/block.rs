//! Code generation for `cached_block!`.
//!
//! ```text
//! {
//!     static CACHE: OnceLock<&'static CachedFn<V>>;           // registered under its name
//!     let front = { thread_local!(static FRONT); &FRONT };
//!     let args = encode(key);
//!     (&Cache(CACHE.get_or_init(..))).call(front, &args, || Plain(block)).0
//! }                                                            // or `async { .. call_async .. }`
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::local;
use crate::attr::Ttl;
use crate::block::BlockArgs;

pub(crate) fn cached_block(input: TokenStream) -> TokenStream {
    let mut args: BlockArgs = match syn::parse2(input) {
        Ok(args) => args,
        Err(error) => return error.to_compile_error(),
    };
    args.validate();
    let errors = std::mem::take(&mut args.errors);
    match errors.finish() {
        Ok(()) => expand(&args),
        Err(error) => {
            // The block alone, so that what uses its value sees no second error.
            let errors = error.to_compile_error();
            let block = match &args.block {
                Some(block) => quote!(#block),
                None => quote!({ ::core::unreachable!() }),
            };
            match args.asyncness {
                Some(_) => quote!({ #errors async #block }),
                None => quote!({ #errors #block }),
            }
        }
    }
}

fn expand(args: &BlockArgs) -> TokenStream {
    let rt = match &args.krate {
        Some(path) => quote!(#path),
        None => quote!(::cache_runtime),
    };
    let (Some(value), Some(name), Some(block)) = (&args.value, &args.name, &args.block) else {
        unreachable!("validate requires them");
    };
    let ttl = match &args.ttl {
        None => quote!(::core::option::Option::None),
        Some(Ttl::Secs(secs)) => quote!(#rt::__private::ttl_secs(#secs)),
        Some(Ttl::Duration(expr)) => {
            quote_spanned!(expr.span()=> #rt::__private::ttl_duration(#expr))
        }
    };
    let capacity = args.capacity.unwrap_or(10_000);
    let store = match &args.store {
        None => quote!(::core::option::Option::None),
        Some(name) => quote!(::core::option::Option::Some(#name)),
    };
    let codec = if args.local {
        quote!(#rt::__private::local::<#value>())
    } else {
        quote_spanned!(value.span()=> #rt::__private::shared::<#value>())
    };
    let check = quote_spanned!(value.span()=> #rt::__private::assert_cache_value::<#value>(););
    let key = match &args.key {
        Some(expr) => quote_spanned!(expr.span()=> &(#expr)),
        None => quote!(&()),
    };
    let (cache, front, front_static, args_local, cache_static) = (
        local("__cache"),
        local("__cache_front"),
        local("__CACHE_FRONT"),
        local("__cache_args"),
        local("__CACHE"),
    );
    let setup = quote! {
        use #rt::__private::{BuildCache as _, BuildNever as _, CacheCalls as _, CacheNever as _};
        static #cache_static: ::std::sync::OnceLock<&'static #rt::__private::CachedFn<#value>> =
            ::std::sync::OnceLock::new();
        let #cache = #rt::__private::Cache(*#cache_static.get_or_init(|| {
            #check
            (&#rt::__private::Build(::core::marker::PhantomData::<#value>)).build_block(
                #rt::__private::checked_settings(#rt::__private::Settings {
                    name: ::std::string::String::from(#name),
                    version: 0,
                    capacity: #capacity,
                    lifetime: #rt::__private::Lifetime {
                        ttl: #ttl,
                        jitter: 0.0,
                        stale: ::core::option::Option::None,
                        early_beta: ::core::option::Option::None,
                        stale_if_error: ::core::option::Option::None,
                        local_ttl: ::core::option::Option::None,
                    },
                    lock: ::core::option::Option::None,
                    store: #store,
                    idle: ::core::option::Option::None,
                    policy: #rt::__private::Policy::TinyLfu,
                }),
                #codec,
            )
        }));
        let #front: &'static #rt::__private::FrontKey<#value> = {
            ::std::thread_local! {
                static #front_static: #rt::__private::Front<#value> =
                    const { #rt::__private::Front::new() };
            }
            &#front_static
        };
        let #args_local = #rt::__private::element_args(#key);
    };
    match args.asyncness {
        Some(_) => quote!(async {
            #setup
            (&#cache)
                .call_async(#front, &#args_local, async {
                    #rt::__private::Plain::<#value>(async #block.await)
                })
                .await
                .0
        }),
        None => quote!({
            #setup
            (&#cache)
                .call(#front, &#args_local, || {
                    #rt::__private::Plain::<#value>((|| -> #value #block)())
                })
                .0
        }),
    }
}
