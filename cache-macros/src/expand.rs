//! Code generation for `#[cached]`.
//!
//! A free function `f` becomes:
//!
//! ```text
//! fn f(args) -> R {
//!     #![inner attributes of the body]
//!     let front = { thread_local!(static FRONT); &FRONT };   // this thread's front table
//!     let args = encode([types of a generic fn,] args or key expr);   // before the body moves them
//!     (&Cache(f::__cache())).call(front, &args, move || body)         // or call_async(..)
//! }
//! enum f {}  impl f { fn __cache(); fn key(..); fn invalidate(..); fn stats(); fn clear_local(); }
//! ```
//!
//! A method (a `self` receiver) keeps its cache in a hidden associated function and gets
//! `f_key`, `f_invalidate`, `f_stats`, `f_clear_local` beside it; its keys start with the type
//! arguments of `Self` when it is generic. `Cache(..)` picks `CachedFn`'s methods only when the
//! value type can be cached (see `__private::Cache`), so that a wrong one is a single error.
//! Generated locals are `Span::mixed_site()` identifiers; on bad arguments the function is
//! expanded without them, plus the errors.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::attr::{self, CachedArgs, Ttl};

mod batch;
mod block;

pub(crate) use block::cached_block;

/// Lease of the fleet-wide lock when `lock` is given without `lock_timeout`: long enough for
/// most bodies; a crashed owner delays the others by at most this much.
const DEFAULT_LOCK_SECS: u64 = 10;

/// Which results are cached.
enum Mode {
    /// Every value (`T`).
    Plain,
    /// `Ok` of a `Result<T, E>`, or `Some` of an `Option<T>`.
    Wrapped,
}

pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            // Another kind of item gets our message; a function that does not parse keeps
            // syn's own error, which points into it.
            let error = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(_) => syn::Error::new(
                    Span::call_site(),
                    "`#[cached]` goes on a function or a method",
                ),
                Err(_) => error,
            };
            return with_errors(item, error);
        }
    };
    let mut function = function;
    syn::visit_mut::VisitMut::visit_signature_mut(&mut Ungroup, &mut function.sig);
    let (mut args, mut errors) = CachedArgs::parse(args);
    let shape = attr::validate(&function.sig, &mut args, &mut errors);
    let errors = match (shape.broken, errors.finish()) {
        (true, Err(error)) => return with_errors(function.into_token_stream(), error),
        (_, errors) => errors,
    };
    if shape.force_local {
        args.local = true;
    }
    let output = match &function.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => unreachable!("validate rejects functions returning ()"),
    };
    let (mode, mut value) = match analyze(&output) {
        // `cache_none` keeps the whole `Option`: a `None` is a value to cache too.
        (Mode::Wrapped, _) if args.cache_none.is_some() && wrapper(&output) == (true, true) => {
            match &output {
                Type::Path(path)
                    if path
                        .path
                        .segments
                        .last()
                        .is_some_and(|s| s.ident == "Option") =>
                {
                    (Mode::Plain, output.clone())
                }
                _ => analyze(&output),
            }
        }
        analyzed => analyzed,
    };
    if let Some(batch) = &shape.batch {
        value = batch.value.clone();
    }
    let rt = args
        .krate
        .clone()
        .map(|path| quote!(#path))
        .unwrap_or_else(|| quote!(::cache_runtime));
    let gen = Gen {
        rt,
        function: &function,
        args: &args,
        shape: &shape,
        output,
        value,
        mode,
    };
    let expanded = if shape.batch.is_some() {
        gen.batch()
    } else if shape.in_impl {
        gen.method()
    } else {
        gen.free()
    };
    // Bad arguments were dropped: the expansion with the others (or the defaults) keeps `f`
    // and its companions, so callers see only the arguments' errors (tokio's fallback).
    match errors {
        Ok(()) => expanded,
        Err(error) => {
            let errors = error.to_compile_error();
            quote!(#expanded #errors)
        }
    }
}

/// Strips the invisible groups `macro_rules!` wraps around `$name:ty` fragments, so that a
/// function written by a user's macro is read as the same function written out (a
/// `&[u64]` or a `HashMap<..>` recognised as one). A trait object or `impl Trait` keeps its
/// group, which may be what keeps its `+` bounds apart from what surrounds it.
struct Ungroup;

impl syn::visit_mut::VisitMut for Ungroup {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        while let Type::Group(group) = ty {
            if matches!(*group.elem, Type::TraitObject(_) | Type::ImplTrait(_)) {
                break;
            }
            *ty = (*group.elem).clone();
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// The user's item unchanged, plus the errors: call sites keep type-checking against the real
/// signature, so one bad argument does not cascade.
fn with_errors(item: TokenStream, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    quote!(#item #errors)
}

/// The type a function's cache holds (`T` of a `Result<T, E>` or `Option<T>`).
pub(crate) fn value_type(output: &Type) -> Type {
    analyze(output).1
}

/// A generated local or static: `Span::mixed_site()` keeps it apart from the user's names
/// (a parameter called `__cache_buf` stays the user's).
fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

/// Whether `output` is a `Result<..>` or an `Option<..>` (by its last path segment), and
/// whether the value it caches is an `Option` (`Option<T>` itself, or `Result<Option<T>, E>`).
pub(crate) fn wrapper(output: &Type) -> (bool, bool) {
    let last_ident = |ty: &Type| match ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let outer = last_ident(output);
    let (mode, value) = analyze(output);
    let wrapped = matches!(mode, Mode::Wrapped);
    let option = outer.as_deref() == Some("Option")
        || (outer.as_deref() == Some("Result") && last_ident(&value).as_deref() == Some("Option"));
    (wrapped, option)
}

/// `Result<T, E>` / `Option<T>` (by their last path segment, so `io::Result<T>` works) cache
/// `T`; anything else caches itself.
fn analyze(output: &Type) -> (Mode, Type) {
    if let Type::Path(path) = output {
        if let Some(last) = path.path.segments.last() {
            if last.ident == "Result" || last.ident == "Option" {
                if let PathArguments::AngleBracketed(generic) = &last.arguments {
                    if let Some(GenericArgument::Type(inner)) = generic.args.first() {
                        return (Mode::Wrapped, inner.clone());
                    }
                }
            }
        }
    }
    (Mode::Plain, output.clone())
}

struct Gen<'a> {
    rt: TokenStream,
    function: &'a ItemFn,
    args: &'a CachedArgs,
    shape: &'a attr::FnShape,
    output: Type,
    value: Type,
    mode: Mode,
}

impl Gen<'_> {
    /// The user's outer attributes (kept before the signature) and inner ones (`#![..]` at
    /// the top of the body, which syn moves into `attrs`: they go back inside the body).
    fn attrs(&self) -> (Vec<&syn::Attribute>, Vec<&syn::Attribute>) {
        self.function
            .attrs
            .iter()
            .partition(|attr| matches!(attr.style, syn::AttrStyle::Outer))
    }

    fn free(&self) -> TokenStream {
        let ItemFn { vis, sig, .. } = self.function;
        let (outer, _) = self.attrs();
        let ident = &sig.ident;
        let cache = self.cache(quote!(#ident::__cache()));
        let body = self.body(&cache);
        let accessor = self.accessor(&format_ident!("__cache"), free_fn_name(ident));
        let companions = self.companions(&cache, &quote!(#vis), "");
        let doc = format!("Cache companions of [`{ident}`](fn@{ident}), generated by `#[cached]`.");
        // An uninhabited enum holds the companions: `f::key(..)` reads like a module path, but
        // unlike a module it resolves names in the function's own scope (also inside a block).
        quote! {
            #(#outer)*
            #vis #sig #body

            #[doc = #doc]
            #[allow(non_camel_case_types)]
            #vis enum #ident {}

            impl #ident {
                #accessor
                #companions
            }
        }
    }

    /// A hidden associated function owning the function's cache in a `static`. In a generic
    /// function or an `impl` whose `Self` may be generic, every instantiation shares it: the
    /// concrete types are the first part of each key (see `encode_key`).
    fn accessor(&self, accessor: &syn::Ident, default_name: TokenStream) -> TokenStream {
        let rt = &self.rt;
        let value = &self.value;
        let settings = self.settings(default_name);
        let codec = self.codec();
        let cache = local("__CACHE");
        let value_ttl = self.value_ttl();
        let max_bytes = self.max_bytes();
        // The one check of the value type, at the return type; the cache's methods are picked
        // only when it passes (see `__private::Cache`), so nothing else repeats the error.
        let check = quote_spanned!(value.span()=> #rt::__private::assert_cache_value::<#value>(););
        quote! {
            #[doc(hidden)]
            fn #accessor() -> &'static #rt::__private::CachedFn<#value> {
                static #cache: ::std::sync::OnceLock<#rt::__private::CachedFn<#value>> =
                    ::std::sync::OnceLock::new();
                #rt::__private::cache_in(&#cache, || {
                    use #rt::__private::{BuildCache as _, BuildNever as _};
                    #check
                    (&#rt::__private::Build(::core::marker::PhantomData::<#value>))
                        .build(#rt::__private::checked_settings(#settings), #codec)
                        #value_ttl
                        #max_bytes
                })
            }
        }
    }

    fn method(&self) -> TokenStream {
        let ItemFn { vis, sig, .. } = self.function;
        let (outer, _) = self.attrs();
        let accessor_name = format_ident!("__cache_{}", sig.ident);
        let cache = self.cache(quote!(Self::#accessor_name()));
        let body = self.body(&cache);
        let fn_name = sig.ident.to_string();
        let rt = &self.rt;
        let accessor = self.accessor(
            &accessor_name,
            quote!(#rt::__private::method_cache_name(
                ::core::any::type_name::<Self>(),
                #fn_name
            )),
        );
        let companions = self.companions(&cache, &quote!(#vis), &format!("{}_", sig.ident));
        quote! {
            #(#outer)*
            #vis #sig #body

            #accessor
            #companions
        }
    }

    /// The cache as generated code calls it: `(&Cache(accessor())).call(..)` picks
    /// `CachedFn`'s methods when the value type can be cached, stand-ins otherwise (see
    /// `__private::Cache`). The traits come into scope with [`Gen::uses`].
    fn cache(&self, accessor: TokenStream) -> TokenStream {
        let rt = &self.rt;
        quote!((&#rt::__private::Cache(#accessor)))
    }

    /// The function's layers (`__private::Layers`, reached from its `CachedFn` by deref),
    /// for the companions that call them by path.
    fn layers(&self, cache: &TokenStream) -> TokenStream {
        quote!(#cache.0)
    }

    /// Brings the cache's methods into scope (unnamed, so they shadow nothing).
    fn uses(&self) -> TokenStream {
        let rt = &self.rt;
        quote!(use #rt::__private::{CacheCalls as _, CacheNever as _};)
    }

    /// The new function body: front table, key, then the layered call around the old body.
    fn body(&self, cache: &TokenStream) -> TokenStream {
        let rt = &self.rt;
        let value = &self.value;
        let (_, inner) = self.attrs();
        let uses = self.uses();
        let encode = self.encode_key();
        let (front, args) = (local("__cache_front"), local("__cache_args"));
        let front_static = local("__CACHE_FRONT");
        // The thread-local lives in a block of its own, where neither the key expression nor
        // the body can see its name.
        let declare_front = quote! {
            let #front: &'static #rt::__private::FrontKey<#value> = {
                ::std::thread_local! {
                    static #front_static: #rt::__private::Front<#value> =
                        const { #rt::__private::Front::new() };
                }
                &#front_static
            };
        };
        if let Some(whole) = self.whole_key() {
            let call = self.call_by_shortcut(cache, &whole, &front, &encode);
            return quote!({
                #(#inner)*
                #uses
                #declare_front
                #call
            });
        }
        let call = self.layers_call(cache, &front, &args, None);
        quote!({
            #(#inner)*
            #uses
            #declare_front
            let #args = #encode;
            #call
        })
    }

    /// The call into the layers with the encoded key `args`: `call` / `call_async` (or
    /// `call_async_detached`), or their `*_pending` forms after a front-table probe.
    fn layers_call(
        &self,
        cache: &TokenStream,
        front: &syn::Ident,
        args: &syn::Ident,
        pending: Option<&syn::Ident>,
    ) -> TokenStream {
        let rt = &self.rt;
        let (output, block) = (&self.output, &self.function.block);
        let out = local("__cache_out");
        let suffix = if pending.is_some() { "_pending" } else { "" };
        let pending = pending.map(|p| quote!(#p,));
        if self.function.sig.asyncness.is_some() {
            let future = quote!(async move { let #out: #output = #block; #out });
            let method = if self.refreshes_in_background() {
                format_ident!("call_async_detached{suffix}")
            } else {
                format_ident!("call_async{suffix}")
            };
            match self.mode {
                Mode::Wrapped => {
                    quote!(#cache.#method(#front, &#args, #pending #future).await)
                }
                Mode::Plain => quote! {
                    #cache.#method(
                        #front,
                        &#args,
                        #pending
                        async move { #rt::__private::Plain(#future.await) },
                    ).await.0
                },
            }
        } else {
            let closure = quote!(move || -> #output #block);
            let method = format_ident!("call{suffix}");
            match self.mode {
                Mode::Wrapped => quote!(#cache.#method(#front, &#args, #pending #closure)),
                Mode::Plain => quote! {
                    #cache.#method(
                        #front,
                        &#args,
                        #pending
                        move || #rt::__private::Plain((#closure)()),
                    ).0
                },
            }
        }
    }

    /// A call whose key is one value (see [`whole_key`](Self::whole_key)): the front table is
    /// probed with the value itself when its type allows (`KeyPart::shortcut`: integers and
    /// text), and the key is encoded only after a miss. The probe is a statement of its own,
    /// so that its borrow of the parameters ends before the body takes them.
    fn call_by_shortcut(
        &self,
        cache: &TokenStream,
        whole: &TokenStream,
        front: &syn::Ident,
        encode: &TokenStream,
    ) -> TokenStream {
        let rt = &self.rt;
        let (value, output) = (&self.value, &self.output);
        let (args, probed, hit, pending) = (
            local("__cache_args"),
            local("__cache_probed"),
            local("__cache_hit"),
            local("__cache_pending"),
        );
        let (shortcut, plain) = self.shortcut_of(whole);
        let shortcut_uses = self.shortcut_uses();
        let miss = self.layers_call(cache, front, &args, Some(&pending));
        let from_hit = match self.mode {
            Mode::Wrapped => {
                quote!(<#output as #rt::__private::Outcome<#value>>::from_cached(#hit))
            }
            Mode::Plain => quote!(#hit),
        };
        quote! {
            let #probed = {
                #shortcut_uses
                #cache.probe_key(#front, #shortcut, #plain)
            };
            match #probed {
                #rt::__private::Probed::Hit(#hit) => #from_hit,
                #rt::__private::Probed::Miss(#pending) => {
                    let #args = #encode;
                    #miss
                }
            }
        }
    }

    /// The front-table shortcut of a call whose whole key is `whole` (a reference), and
    /// whether the call site may use it (`plain`): what it passes to `probe_key`, and what
    /// its `key` companions give a preload scope.
    fn shortcut_of(&self, whole: &TokenStream) -> (TokenStream, TokenStream) {
        let rt = &self.rt;
        // In an impl block, a generic `Self`'s type arguments are part of every key.
        let plain = if self.shape.in_impl {
            quote!(#rt::__private::plain_self(::core::any::type_name::<Self>()))
        } else {
            quote!(true)
        };
        let shortcut = quote!(#rt::__private::ShortcutOf(#whole).shortcut());
        (shortcut, plain)
    }

    /// Brings the methods [`shortcut_of`](Self::shortcut_of)'s expression calls into scope.
    fn shortcut_uses(&self) -> TokenStream {
        let rt = &self.rt;
        quote!(use #rt::__private::{ViaKeyPart as _, ViaNothing as _};)
    }

    /// A reference to the one value that is a call's whole key: the `key = ...` expression,
    /// the only named parameter, or a tuple of two or three parameters. `None` for more, and
    /// when type parameters of the function are part of its keys (they come first).
    fn whole_key(&self) -> Option<TokenStream> {
        if !self.shape.type_params.is_empty() {
            return None;
        }
        if let Some(expr) = &self.args.key {
            return Some(quote_spanned!(expr.span()=> &(#expr)));
        }
        let names = self
            .function
            .sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Typed(typed) => Some(&*typed.pat),
                FnArg::Receiver(_) => None,
            })
            .map(|pat| match pat {
                Pat::Ident(pat) => Some(&pat.ident),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        // Two or three parameters: a tuple of references, whose shortcut exists when all of
        // them are integers (and encodes as the parameters do, joined by `:`).
        match names.as_slice() {
            [name] => Some(quote_spanned!(name.span()=> &#name)),
            [_, _] | [_, _, _] => Some(quote!(&(#(&#names,)*))),
            _ => None,
        }
    }

    /// Whether refreshes of this async function run in a spawned task: it has `stale` or
    /// `refresh = early`, no type parameter, and every parameter is owned (no reference,
    /// lifetime, `impl Trait` or `self`), so its body can outlive the call that started the
    /// refresh. Otherwise the picked caller refreshes inline.
    fn refreshes_in_background(&self) -> bool {
        let refreshes = self.args.stale.is_some() || self.args.refresh_early.is_some();
        // A type parameter may not be `Send + 'static`, which a spawned refresh needs.
        refreshes
            && self.shape.type_params.is_empty()
            && self.function.sig.inputs.iter().all(|arg| match arg {
                FnArg::Receiver(_) => false,
                FnArg::Typed(typed) => {
                    let ty = &typed.ty;
                    !borrows(&quote!(#ty))
                }
            })
    }

    /// Encodes the key: the `key = ...` expression, or every named parameter in order. In a
    /// generic function the concrete type parameters come first, and in an `impl` block the
    /// type arguments of a generic `Self` (nothing for a non-generic one, whose keys are as
    /// before): one static serves every instantiation, so the types must tell their entries,
    /// front-table slots and Redis keys apart.
    fn encode_key(&self) -> TokenStream {
        let rt = &self.rt;
        let buf = local("__cache_buf");
        let first = local("__cache_first");
        let mut types = self.self_types(&buf, &first);
        if !self.shape.type_params.is_empty() {
            let params = &self.shape.type_params;
            let params = match params.as_slice() {
                [one] => quote!(#one),
                several => quote!((#(#several),*)),
            };
            types.extend(quote! {
                #rt::__private::push_arg(
                    &mut #buf,
                    #first,
                    ::core::any::type_name::<#params>(),
                );
                let #first = false;
            });
        }
        let pushes = match &self.args.key {
            Some(expr) => {
                // Spanned at the expression, so that a `KeyPart` error points at it; `#buf`
                // and `#first` keep their own (mixed-site) spans.
                quote_spanned!(expr.span()=> #rt::__private::push_arg(&mut #buf, #first, &(#expr));)
            }
            None => {
                let names: Vec<_> = self
                    .function
                    .sig
                    .inputs
                    .iter()
                    .filter_map(|arg| match arg {
                        FnArg::Typed(typed) => match &*typed.pat {
                            Pat::Ident(pat) => Some(pat.ident.clone()),
                            _ => None,
                        },
                        FnArg::Receiver(_) => None,
                    })
                    .collect();
                if names.is_empty() {
                    quote!(#rt::__private::push_arg(&mut #buf, #first, &());)
                } else {
                    let pushes = names.iter().enumerate().map(|(i, name)| {
                        let first = if i == 0 { quote!(#first) } else { quote!(false) };
                        quote_spanned!(name.span()=> #rt::__private::push_arg(&mut #buf, #first, &#name);)
                    });
                    quote!(#(#pushes)*)
                }
            }
        };
        quote!({
            let mut #buf = #rt::__private::KeyBuf::new();
            #types
            #pushes
            #buf
        })
    }

    /// The function called again with the companion's own parameters (`f(a, b)`,
    /// `self.f(a, b)`, `Self::f(a, b)`), when every parameter is a plain name and the function
    /// has no type parameters to infer; `None` otherwise (no `uncached` / `refresh` then).
    fn forward_call(&self) -> Option<TokenStream> {
        let sig = &self.function.sig;
        if !self.shape.type_params.is_empty() {
            return None;
        }
        let mut receiver = false;
        let mut names = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => receiver = true,
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                        names.push(pat.ident.clone())
                    }
                    _ => return None,
                },
            }
        }
        let name = &sig.ident;
        Some(if receiver {
            quote!(self.#name(#(#names),*))
        } else if self.shape.in_impl {
            quote!(Self::#name(#(#names),*))
        } else {
            quote!(#name(#(#names),*))
        })
    }

    /// `uncached(..)` and `refresh(..)`: the function called under a mode (see the runtime's
    /// `mode`) that makes that one call skip the layers or compute now.
    fn rerun_companions(
        &self,
        cache: &TokenStream,
        vis: &TokenStream,
        prefix: &str,
    ) -> TokenStream {
        let Some(call) = self.forward_call() else {
            return TokenStream::new();
        };
        let sig = &self.function.sig;
        let (generics, where_clause, inputs, output) = (
            &sig.generics,
            &sig.generics.where_clause,
            &sig.inputs,
            &sig.output,
        );
        let fn_name = &sig.ident;
        let uncached = format_ident!("{prefix}uncached");
        let refresh = format_ident!("{prefix}refresh");
        let uncached_doc = format!(
            "Runs the body of `{fn_name}` for these arguments, reading and storing nothing (the \
             calls the body makes use their caches as usual)."
        );
        let refresh_doc = format!(
            "Runs the body of `{fn_name}` for these arguments now and stores the result in every \
             layer; other callers keep getting the current value until it is stored."
        );
        let allow = quote!(#[allow(unused_mut, non_snake_case, clippy::needless_pass_by_value)]);
        if sig.asyncness.is_some() && !borrows_anything(sig) {
            // Nothing borrowed: the call's future can be returned as it is, with no state
            // machine of the companion's own (see `companions`).
            let value = match output {
                syn::ReturnType::Default => quote!(()),
                syn::ReturnType::Type(_, ty) => quote!(#ty),
            };
            quote! {
                #[doc = #uncached_doc]
                #allow
                #vis fn #uncached #generics(#inputs) -> impl ::core::future::Future<Output = #value> #where_clause {
                    #cache.uncached_async(#call)
                }

                #[doc = #refresh_doc]
                #allow
                #vis fn #refresh #generics(#inputs) -> impl ::core::future::Future<Output = #value> #where_clause {
                    #cache.refreshing_async(#call)
                }
            }
        } else if sig.asyncness.is_some() {
            quote! {
                #[doc = #uncached_doc]
                #allow
                #vis async fn #uncached #generics(#inputs) #output #where_clause {
                    #cache.uncached_async(#call).await
                }

                #[doc = #refresh_doc]
                #allow
                #vis async fn #refresh #generics(#inputs) #output #where_clause {
                    #cache.refreshing_async(#call).await
                }
            }
        } else {
            quote! {
                #[doc = #uncached_doc]
                #allow
                #vis fn #uncached #generics(#inputs) #output #where_clause {
                    #cache.uncached(|| #call)
                }

                #[doc = #refresh_doc]
                #allow
                #vis fn #refresh #generics(#inputs) #output #where_clause {
                    #cache.refreshing(|| #call)
                }
            }
        }
    }

    /// The start of a key: in an `impl`, the type arguments of a generic `Self` (parsed
    /// once per function); `#first` tells whether the next part is the key's first.
    fn self_types(&self, buf: &syn::Ident, first: &syn::Ident) -> TokenStream {
        let rt = &self.rt;
        if !self.shape.in_impl {
            return quote!(let #first = true;);
        }
        let seen = local("__CACHE_SELF_TYPES");
        quote! {
            let #first = !{
                static #seen: #rt::__private::SelfTypeArgs =
                    #rt::__private::SelfTypeArgs::new();
                #seen.push(&mut #buf, ::core::any::type_name::<Self>())
            };
        }
    }

    /// `key_for(k)`, for functions with `key = ..` and no type parameters of their own: the
    /// key of a call whose key expression is `k`, encoded as `encode_key` encodes it.
    fn key_for(&self, cache: &TokenStream, vis: &TokenStream, prefix: &str) -> TokenStream {
        if self.args.key.is_none() || !self.shape.type_params.is_empty() {
            return TokenStream::new();
        }
        let rt = &self.rt;
        let uses = self.uses();
        let buf = local("__cache_buf");
        let first = local("__cache_first");
        let k = local("__cache_k");
        let param = local("__CacheKey");
        let name = format_ident!("{prefix}key_for");
        let fn_name = &self.function.sig.ident;
        let doc = format!(
            "The key of a call of `{fn_name}` whose `key` expression is `k`: a preload scope \
             can name it without building the call's arguments."
        );
        let types = self.self_types(&buf, &first);
        // The call probes with the key expression's shortcut; `k` stands for it.
        let (shortcut, plain) = self.shortcut_of(&quote!(#k));
        let shortcut_uses = self.shortcut_uses();
        quote! {
            #[doc = #doc]
            #vis fn #name<#param: #rt::__private::KeyPart + ?::core::marker::Sized>(
                #k: &#param,
            ) -> #rt::__private::Key {
                #uses
                let mut #buf = #rt::__private::KeyBuf::new();
                #types
                #rt::__private::push_arg(&mut #buf, #first, #k);
                #shortcut_uses
                #cache.key_probed(#buf, #shortcut, #plain)
            }
        }
    }

    fn settings(&self, default_name: TokenStream) -> TokenStream {
        let rt = &self.rt;
        let name = match &self.args.name {
            Some(name) => quote!(::std::string::String::from(#name)),
            None => default_name,
        };
        let version = self.args.version.unwrap_or(0);
        let capacity = self.args.capacity.unwrap_or(10_000);
        let ttl = self.duration(self.args.ttl.as_ref());
        let stale = self.duration(self.args.stale.as_ref().map(|(t, _)| t));
        let stale_if_error = self.duration(self.args.stale_if_error.as_ref().map(|(t, _)| t));
        let local_ttl = self.duration(self.args.local_ttl.as_ref().map(|(t, _)| t));
        let idle = self.duration(self.args.idle.as_ref().map(|(t, _)| t));
        let policy = match self.args.policy.as_ref().map(|p| p.value()).as_deref() {
            Some("lru") => quote!(#rt::__private::Policy::Lru),
            _ => quote!(#rt::__private::Policy::TinyLfu),
        };
        let jitter = self.args.jitter.unwrap_or(0.0);
        let early_beta = match (&self.args.refresh_early, &self.args.beta) {
            (None, _) => quote!(::core::option::Option::None),
            (Some(_), beta) => {
                let beta = beta.as_ref().map_or(1.0, |(b, _)| *b);
                quote!(::core::option::Option::Some(#beta))
            }
        };
        let store = match &self.args.store {
            None => quote!(::core::option::Option::None),
            Some(name) => quote!(::core::option::Option::Some(#name)),
        };
        let lock = match (&self.args.lock, &self.args.lock_timeout) {
            (None, _) => quote!(::core::option::Option::None),
            (Some(_), None) => quote!(#rt::__private::ttl_secs(#DEFAULT_LOCK_SECS)),
            (Some(_), Some((timeout, _))) => self.duration(Some(timeout)),
        };
        quote! {
            #rt::__private::Settings {
                name: #name,
                version: #version,
                capacity: #capacity,
                lifetime: #rt::__private::Lifetime {
                    ttl: #ttl,
                    jitter: #jitter,
                    stale: #stale,
                    early_beta: #early_beta,
                    stale_if_error: #stale_if_error,
                    local_ttl: #local_ttl,
                },
                lock: #lock,
                store: #store,
                idle: #idle,
                policy: #policy,
            }
        }
    }

    /// `Option<Duration>` from seconds or a `Duration` expression.
    fn duration(&self, value: Option<&Ttl>) -> TokenStream {
        let rt = &self.rt;
        match value {
            None => quote!(::core::option::Option::None),
            Some(Ttl::Secs(secs)) => quote!(#rt::__private::ttl_secs(#secs)),
            Some(Ttl::Duration(expr)) => {
                quote_spanned!(expr.span()=> #rt::__private::ttl_duration(#expr))
            }
        }
    }

    /// `.with_value_ttl(..)` when values decide their lifetime (`cache_none`, `expires`).
    fn value_ttl(&self) -> TokenStream {
        let rt = &self.rt;
        let value = &self.value;
        let v = local("__cache_v");
        if self.args.cache_none.is_some() {
            let none_ttl = self.duration(
                self.args
                    .none_ttl
                    .as_ref()
                    .map(|(t, _)| t)
                    .or(self.args.ttl.as_ref()),
            );
            quote!(.with_value_ttl(|#v: &#value| #rt::__private::none_lifetime(#v, #none_ttl)))
        } else if let Some(expires) = &self.args.expires {
            let ttl = self.duration(self.args.ttl.as_ref());
            quote_spanned!(expires.span()=> .with_value_ttl(|#v: &#value| #rt::__private::expires_within(#v, #ttl)))
        } else {
            quote!()
        }
    }

    /// `.with_max_bytes(..)` under `max_bytes`: the bound is a `const` (spanned at the
    /// argument, so that a non-constant or non-`u64` one is reported there); a `local`
    /// function weighs its values with a sizer that needs `Serialize`.
    fn max_bytes(&self) -> TokenStream {
        let Some((max, at)) = &self.args.max_bytes else {
            return quote!();
        };
        let rt = &self.rt;
        let value = &self.value;
        let bound = local("__CACHE_MAX_BYTES");
        let size = if self.args.local {
            quote_spanned!(at.span()=> #rt::__private::sizer::<#value>())
        } else {
            quote!(::core::option::Option::None)
        };
        let constant = quote_spanned!(max.span()=>
            const #bound: u64 = #max;
            const _: () = ::core::assert!(#bound > 0, "`max_bytes` must be more than zero");
        );
        quote!(.with_max_bytes({ #constant #bound }, #size))
    }

    fn codec(&self) -> TokenStream {
        let rt = &self.rt;
        let value = &self.value;
        if self.args.local {
            quote!(#rt::__private::local::<#value>())
        } else {
            quote_spanned!(self.value.span()=> #rt::__private::shared::<#value>())
        }
    }

    /// `key`, `invalidate`, `stats` (with `prefix` before each name in impl blocks).
    fn companions(&self, cache: &TokenStream, vis: &TokenStream, prefix: &str) -> TokenStream {
        let rt = &self.rt;
        let sig = &self.function.sig;
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let inputs = &sig.inputs;
        let args = local("__cache_args");
        let uses = self.uses();
        let fn_name = &sig.ident;
        let key = format_ident!("{prefix}key");
        let invalidate = format_ident!("{prefix}invalidate");
        let stats = format_ident!("{prefix}stats");
        let clear_local = format_ident!("{prefix}clear_local");
        let encode = self.encode_key();
        // An async function's `invalidate`, `clear`, `peek` and `put` return the layers'
        // future (`fn .. -> impl Future`, awaited the same way) rather than being `async fn`s
        // of their own: the key is encoded when called, and no state machine is generated for
        // each (`peek` and `put` return a boxed one, `__private::Companion`). `invalidate`
        // and `clear` call the layers by path: no value type bound is involved.
        let layers = self.layers(cache);
        let invalidate_fn = if sig.asyncness.is_some() {
            quote! {
                #vis fn #invalidate #generics(#inputs) -> impl ::core::future::Future<Output = ()> #where_clause {
                    let #args = #encode;
                    #rt::__private::Layers::invalidate_async(#layers, #args)
                }
            }
        } else {
            quote! {
                #vis fn #invalidate #generics(#inputs) #where_clause {
                    #uses
                    let #args = #encode;
                    #cache.invalidate(#args)
                }
            }
        };
        let value = &self.value;
        let key_for = self.key_for(cache, vis, prefix);
        let rerun = self.rerun_companions(cache, vis, prefix);
        let put_value = local("__cache_value");
        let sep = if inputs.is_empty() || inputs.trailing_punct() {
            quote!()
        } else {
            quote!(,)
        };
        let peek = format_ident!("{prefix}peek");
        let put = format_ident!("{prefix}put");
        let clear = format_ident!("{prefix}clear");
        let peek_doc = format!(
            "What the layers hold for a call of `{fn_name}` with these arguments (fresh, or \
             servable while being refreshed), without running the body."
        );
        let put_doc = format!(
            "Stores `value` as the result of a call of `{fn_name}` with these arguments, in L1 \
             (every thread's copy replaced) and in the shared store, with a new lifetime."
        );
        let clear_doc = format!(
            "Removes every entry of `{fn_name}` from the shared store and from this process's \
             in-process layer."
        );
        let (peek_fn, put_fn, clear_fn) = if sig.asyncness.is_some() {
            (
                quote! {
                    #vis fn #peek #generics(#inputs) -> impl ::core::future::Future<Output = ::core::option::Option<#value>> #where_clause {
                        #uses
                        let #args = #encode;
                        #cache.peek_async(#args)
                    }
                },
                quote! {
                    #vis fn #put #generics(#inputs #sep #put_value: #value) -> impl ::core::future::Future<Output = ()> #where_clause {
                        #uses
                        let #args = #encode;
                        #cache.put_async(#args, #put_value)
                    }
                },
                quote! {
                    #vis fn #clear #generics() -> impl ::core::future::Future<Output = ()> #where_clause {
                        #rt::__private::Layers::clear_async(#layers)
                    }
                },
            )
        } else {
            (
                quote! {
                    #vis fn #peek #generics(#inputs) -> ::core::option::Option<#value> #where_clause {
                        #uses
                        let #args = #encode;
                        #cache.peek(#args)
                    }
                },
                quote! {
                    #vis fn #put #generics(#inputs #sep #put_value: #value) #where_clause {
                        #uses
                        let #args = #encode;
                        #cache.put(#args, #put_value)
                    }
                },
                quote! {
                    #vis fn #clear #generics() #where_clause {
                        #uses
                        #cache.clear()
                    }
                },
            )
        };
        let key_doc = format!("The cache key a call of `{fn_name}` with these arguments uses.");
        // The call's front-table probe goes with the key (a preload scope asks the front
        // table as the call will).
        let (shortcut, plain) = match self.whole_key() {
            Some(whole) => self.shortcut_of(&whole),
            None => (quote!(#rt::__private::Shortcut::Encoded), quote!(true)),
        };
        let shortcut_uses = self.shortcut_uses();
        let invalidate_doc =
            format!("Removes the entry of `{fn_name}` for these arguments from L1 and Redis.");
        let stats_doc = format!("Counters of `{fn_name}` since the process started.");
        let clear_local_doc = format!(
            "Empties the in-process layer of `{fn_name}` (the shared store keeps its entries): \
             the next calls read from the shared store."
        );
        quote! {
            #[doc = #key_doc]
            #[allow(unused_variables, unused_mut, non_snake_case, clippy::needless_pass_by_value)]
            #vis fn #key #generics(#inputs) -> #rt::__private::Key #where_clause {
                #uses
                #shortcut_uses
                let #args = #encode;
                #cache.key_probed(#args, #shortcut, #plain)
            }

            #[doc = #invalidate_doc]
            #[allow(unused_variables, unused_mut, non_snake_case, clippy::needless_pass_by_value)]
            #invalidate_fn

            #[doc = #stats_doc]
            #vis fn #stats() -> #rt::__private::Stats {
                #uses
                #cache.stats()
            }

            #[doc = #clear_local_doc]
            #vis fn #clear_local() {
                #uses
                #cache.clear_local()
            }

            #[doc = #peek_doc]
            #[allow(unused_variables, unused_mut, non_snake_case, clippy::needless_pass_by_value)]
            #peek_fn

            #[doc = #put_doc]
            #[allow(unused_variables, unused_mut, non_snake_case, clippy::needless_pass_by_value)]
            #put_fn

            #[doc = #clear_doc]
            #clear_fn

            #key_for

            #rerun
        }
    }
}

/// Whether a type's tokens hold a reference, a lifetime or an `impl Trait`.
fn borrows(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Punct(p) => p.as_char() == '&' || p.as_char() == '\'',
        proc_macro2::TokenTree::Ident(ident) => ident == "impl" || ident == "dyn",
        proc_macro2::TokenTree::Group(group) => borrows(&group.stream()),
        proc_macro2::TokenTree::Literal(_) => false,
    })
}

/// The default cache name of a free function: its module path and name, one string made at
/// compile time (a `format!` would be generated in every function).
pub(crate) fn free_fn_name(ident: &syn::Ident) -> TokenStream {
    quote!(::std::string::String::from(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#ident)
    )))
}

/// Whether a signature can borrow: a lifetime, a reference or an `impl` type anywhere in its
/// generics or parameters (a returned future would then have to capture what it borrows,
/// which edition 2021 cannot name for elided lifetimes).
fn borrows_anything(sig: &syn::Signature) -> bool {
    fn scan(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Punct(p) => p.as_char() == '&' || p.as_char() == '\'',
            proc_macro2::TokenTree::Ident(ident) => ident == "impl" || ident == "dyn",
            proc_macro2::TokenTree::Group(group) => scan(group.stream()),
            proc_macro2::TokenTree::Literal(_) => false,
        })
    }
    let generics = &sig.generics;
    let inputs = &sig.inputs;
    scan(quote!(#generics #inputs))
}
