//! `#[cached(..)]` arguments, parsed into a typed struct, then checked against the function.

mod batch;

pub(crate) use batch::BatchShape;

use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, FnArg, Lit, LitStr, Pat, Path, ReturnType, Signature, Token};

/// Every argument, as the error messages list them.
pub(crate) const VALID: &str = "`ttl`, `key`, `name`, `version`, `capacity`, `max_bytes`, \
                                 `local`, `batch`, \
                                 `lock`, `lock_timeout`, `jitter`, `refresh`, `beta`, `stale`, \
                                 `stale_if_error`, `cache_none`, `none_ttl`, `expires`, \
                                 `local_ttl`, `idle`, `policy`, `store`, `crate`";

/// A length of time: `60` (seconds) or a `Duration` expression.
pub(crate) enum Ttl {
    Secs(u64),
    Duration(Expr),
}

/// The arguments of one `#[cached(..)]`.
#[derive(Default)]
pub(crate) struct CachedArgs {
    pub(crate) ttl: Option<Ttl>,
    pub(crate) key: Option<Expr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<u32>,
    pub(crate) capacity: Option<u64>,
    /// `max_bytes = N`: L1 bounded by the encoded size of its values (an integer literal, or
    /// a constant expression of type `u64`), and where it was given.
    pub(crate) max_bytes: Option<(Expr, Path)>,
    pub(crate) local: bool,
    /// `batch`: the function takes a slice of ids and returns a map; each element is cached
    /// on its own (see `batch`).
    pub(crate) batch: Option<Path>,
    pub(crate) lock: Option<Path>,
    pub(crate) lock_timeout: Option<(Ttl, Path)>,
    pub(crate) jitter: Option<f64>,
    pub(crate) refresh_early: Option<Path>,
    pub(crate) beta: Option<(f64, Path)>,
    pub(crate) stale: Option<(Ttl, Path)>,
    pub(crate) stale_if_error: Option<(Ttl, Path)>,
    pub(crate) cache_none: Option<Path>,
    pub(crate) none_ttl: Option<(Ttl, Path)>,
    pub(crate) expires: Option<Path>,
    pub(crate) local_ttl: Option<(Ttl, Path)>,
    pub(crate) idle: Option<(Ttl, Path)>,
    pub(crate) policy: Option<LitStr>,
    pub(crate) store: Option<LitStr>,
    pub(crate) krate: Option<Path>,
}

/// Collects every error instead of stopping at the first (serde's `Ctxt`).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Seen arguments, for duplicate detection.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    /// `false` (and an error at `path`) when `name` was already given.
    fn first(&mut self, name: &str, path: &Path, errors: &mut Errors) -> bool {
        if self.0.iter().any(|n| n == name) {
            errors.at(path, format!("duplicate `cached` argument `{name}`"));
            return false;
        }
        self.0.push(name.to_owned());
        true
    }
}

impl CachedArgs {
    /// Parses the attribute's arguments, reporting every bad one.
    pub(crate) fn parse(tokens: proc_macro2::TokenStream) -> (Self, Errors) {
        let mut args = CachedArgs::default();
        let mut errors = Errors::default();
        let mut seen = Seen::default();
        // Whether syn stopped inside one argument (its value) or between arguments.
        let mut in_argument = false;
        let parser = syn::meta::parser(|meta| {
            in_argument = true;
            args.parse_one(&meta, &mut seen, &mut errors)?;
            in_argument = false;
            Ok(())
        });
        if let Err(error) = syn::parse::Parser::parse2(parser, tokens) {
            if in_argument {
                errors.push(error);
            } else {
                let message = format!(
                    "{error}; `cached` takes comma-separated arguments, each one of {VALID}"
                );
                errors.push(syn::Error::new(error.span(), message));
            }
        }
        (args, errors)
    }

    fn parse_one(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        seen: &mut Seen,
        errors: &mut Errors,
    ) -> syn::Result<()> {
        let path = &meta.path;
        let Some(name) = path.get_ident().map(|i| i.to_string()) else {
            errors.at(
                path,
                format!("unknown `cached` argument; expected one of {VALID}"),
            );
            return skip_value(meta);
        };
        let fresh = match name.as_str() {
            "ttl" | "key" | "name" | "version" | "capacity" | "max_bytes" | "local" | "batch"
            | "lock" | "lock_timeout" | "jitter" | "refresh" | "beta" | "stale"
            | "stale_if_error" | "cache_none" | "none_ttl" | "expires" | "local_ttl" | "idle"
            | "policy" | "store" | "crate" => seen.first(&name, path, errors),
            _ => {
                errors.at(
                    path,
                    format!("unknown `cached` argument `{name}`; expected one of {VALID}"),
                );
                return skip_value(meta);
            }
        };
        if matches!(
            name.as_str(),
            "local" | "lock" | "cache_none" | "expires" | "batch"
        ) {
            if meta.input.peek(Token![=]) {
                errors.at(
                    path,
                    format!("`{name}` takes no value: write `#[cached({name})]`"),
                );
                return skip_value(meta);
            }
            match name.as_str() {
                "local" => self.local = true,
                "cache_none" => self.cache_none = Some(path.clone()),
                "expires" => self.expires = Some(path.clone()),
                "batch" => self.batch = Some(path.clone()),
                _ => self.lock = Some(path.clone()),
            }
            return Ok(());
        }
        if !meta.input.peek(Token![=]) {
            errors.at(
                path,
                format!("`{name}` needs a value, e.g. `{}`", example(&name)),
            );
            return skip_value(meta);
        }
        let value = ungroup(meta.value()?.parse()?);
        if !fresh {
            return Ok(());
        }
        match name.as_str() {
            "ttl" => self.ttl = duration(value, "ttl", errors),
            "lock_timeout" => {
                self.lock_timeout =
                    duration(value, "lock_timeout", errors).map(|t| (t, path.clone()))
            }
            "stale" => self.stale = duration(value, "stale", errors).map(|t| (t, path.clone())),
            "stale_if_error" => {
                self.stale_if_error =
                    duration(value, "stale_if_error", errors).map(|t| (t, path.clone()))
            }
            "none_ttl" => {
                self.none_ttl = duration(value, "none_ttl", errors).map(|t| (t, path.clone()))
            }
            "local_ttl" => {
                self.local_ttl = duration(value, "local_ttl", errors).map(|t| (t, path.clone()))
            }
            "idle" => self.idle = duration(value, "idle", errors).map(|t| (t, path.clone())),
            "policy" => self.policy = policy(value, errors),
            "jitter" => {
                self.jitter = float(&value, "jitter", errors).filter(|&j| {
                    let ok = j > 0.0 && j < 1.0;
                    if !ok {
                        errors.at(
                            &value,
                            "`jitter` must be a fraction between 0 and 1, e.g. `jitter = 0.1`",
                        );
                    }
                    ok
                })
            }
            "beta" => {
                self.beta = float(&value, "beta", errors)
                    .filter(|&b| {
                        if b <= 0.0 {
                            errors.at(
                                &value,
                                "`beta` must be more than zero (1.0 is the usual choice)",
                            );
                        }
                        b > 0.0
                    })
                    .map(|b| (b, path.clone()))
            }
            "refresh" => match &value {
                Expr::Path(p) if p.path.is_ident("early") => {
                    self.refresh_early = Some(path.clone())
                }
                other => errors.at(
                    other,
                    "`refresh` takes `early`: `#[cached(ttl = 60, refresh = early)]`",
                ),
            },
            "key" => self.key = Some(value),
            "name" => self.name = cache_name(value, errors),
            "version" => self.version = int::<u32>(&value, "version", errors),
            "capacity" => {
                self.capacity = int(&value, "capacity", errors).filter(|&n: &u64| {
                    if n == 0 {
                        errors.at(&value, "`capacity` must be at least 1");
                    }
                    n > 0
                })
            }
            "max_bytes" => self.max_bytes = max_bytes(value, errors).map(|e| (e, path.clone())),
            "store" => self.store = store_name(value, errors),
            "crate" => self.krate = crate_path(value, errors),
            _ => unreachable!("every known argument is handled above"),
        }
        Ok(())
    }
}

/// How an argument that takes a value is written.
fn example(name: &str) -> &'static str {
    match name {
        "ttl" => "ttl = 60",
        "key" => "key = note.id",
        "name" => "name = \"notes::markup\"",
        "version" => "version = 2",
        "capacity" => "capacity = 1000",
        "max_bytes" => "max_bytes = 64_000_000",
        "lock_timeout" => "lock_timeout = 5",
        "jitter" => "jitter = 0.1",
        "refresh" => "refresh = early",
        "beta" => "beta = 1.0",
        "stale" => "stale = 30",
        "stale_if_error" => "stale_if_error = 300",
        "none_ttl" => "none_ttl = 30",
        "local_ttl" => "local_ttl = 5",
        "idle" => "idle = 600",
        "policy" => "policy = \"lru\"",
        "store" => "store = \"pages\"",
        "crate" => "crate = \"my_cache\"",
        _ => "argument = value",
    }
}

/// Strips the invisible groups `macro_rules!` wraps around fragments (`$name:literal`), so a
/// literal passed through a user's macro is still recognised as one.
pub(crate) fn ungroup(value: Expr) -> Expr {
    match value {
        Expr::Group(group) => ungroup(*group.expr),
        other => other,
    }
}

/// Consumes `= value` after an argument that is reported as wrong, so parsing goes on.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

/// `name = 60` (seconds, more than zero) or `name = <Duration expression>`.
pub(crate) fn duration(value: Expr, name: &str, errors: &mut Errors) -> Option<Ttl> {
    let help = format!(
        "`{name}` takes whole seconds (`{name} = 60`) or a `Duration` expression \
         (`{name} = Duration::from_millis(300)`)"
    );
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(0) if name == "ttl" => {
                errors.at(&value, "`ttl` must be more than zero; to keep entries until they are evicted, leave `ttl` out");
                None
            }
            Ok(0) => {
                errors.at(&value, format!("`{name}` must be more than zero"));
                None
            }
            Ok(secs) => Some(Ttl::Secs(secs)),
            Err(e) => {
                errors.at(&value, format!("{help}: {e}"));
                None
            }
        },
        Expr::Lit(_) => {
            errors.at(&value, help);
            None
        }
        _ if is_zero_duration(&value) => {
            let message = if name == "ttl" {
                "`ttl` must be more than zero; to keep entries until they are evicted, leave `ttl` out".to_owned()
            } else {
                format!("`{name}` must be more than zero")
            };
            errors.at(&value, message);
            None
        }
        _ => Some(Ttl::Duration(value)),
    }
}

/// `Duration::ZERO` or `Duration::from_secs(0)` (any `from_*` with a literal zero), the
/// same mistake as `ttl = 0`. A zero the macro cannot see is logged at run time instead.
fn is_zero_duration(value: &Expr) -> bool {
    // `Duration::{item}`, as the last two segments of the path.
    let duration_item = |path: &syn::Path| {
        let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        match names.as_slice() {
            [.., ty, item] if ty == "Duration" => Some(item.clone()),
            _ => None,
        }
    };
    match value {
        Expr::Path(path) => duration_item(&path.path).as_deref() == Some("ZERO"),
        Expr::Call(call) if call.args.len() == 1 => {
            let Expr::Path(func) = &*call.func else {
                return false;
            };
            let constructor =
                duration_item(&func.path).is_some_and(|name| name.starts_with("from_"));
            let zero = match &call.args[0] {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) => int.base10_parse::<u64>().ok() == Some(0),
                Expr::Lit(ExprLit {
                    lit: Lit::Float(float),
                    ..
                }) => float.base10_parse::<f64>().ok() == Some(0.0),
                _ => false,
            };
            constructor && zero
        }
        _ => false,
    }
}

/// `max_bytes = 64_000_000` (more than zero), or a constant expression (`64 << 20`,
/// `L1_BYTES`), checked by the compiler as a `const` of type `u64`.
fn max_bytes(value: Expr, errors: &mut Errors) -> Option<Expr> {
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(_), ..
        }) => match int::<u64>(&value, "max_bytes", errors)? {
            0 => {
                errors.at(&value, "`max_bytes` must be more than zero");
                None
            }
            _ => Some(value),
        },
        Expr::Lit(_) => {
            errors.at(
                &value,
                "`max_bytes` takes a number of bytes: an integer (`max_bytes = 64_000_000`) or \
                 a constant expression of type `u64` (`max_bytes = 64 << 20`)",
            );
            None
        }
        _ => Some(value),
    }
}

fn float(value: &Expr, name: &str, errors: &mut Errors) -> Option<f64> {
    let parsed = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<f64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        errors.at(
            value,
            format!("`{name}` must be a number literal, e.g. `{name} = 0.1`"),
        );
    }
    parsed
}

pub(crate) fn int<N: std::str::FromStr>(value: &Expr, name: &str, errors: &mut Errors) -> Option<N>
where
    N::Err: std::fmt::Display,
{
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<N>() {
            Ok(n) => Some(n),
            Err(e) => {
                errors.at(value, format!("`{name}` must be an integer literal: {e}"));
                None
            }
        },
        _ => {
            errors.at(
                value,
                format!("`{name}` must be an integer literal, e.g. `{name} = 2`"),
            );
            None
        }
    }
}

fn string(value: Expr, name: &str, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        other => {
            errors.at(
                other,
                format!("`{name}` must be a string literal, e.g. `{name} = \"...\"`"),
            );
            None
        }
    }
}

/// A cache name: non-empty, and its colons only in `::` pairs so that the remote key
/// `{name}:v{version}:{args}` can be split unambiguously.
pub(crate) fn cache_name(value: Expr, errors: &mut Errors) -> Option<LitStr> {
    let lit = string(value, "name", errors)?;
    let text = lit.value();
    let bad_colon = text.split("::").any(|part| part.contains(':'));
    if text.is_empty() || bad_colon || text.chars().any(char::is_whitespace) {
        errors.at(
            &lit,
            "`name` must be non-empty, without spaces, with colons only as `::` (e.g. `name = \"notes::markup\"`)",
        );
        return None;
    }
    Some(lit)
}

fn policy(value: Expr, errors: &mut Errors) -> Option<LitStr> {
    let lit = string(value, "policy", errors)?;
    if !matches!(lit.value().as_str(), "lru" | "tinylfu") {
        errors.at(
            &lit,
            "unknown `policy`; expected `\"tinylfu\"` (the default: new keys must earn their \
             place) or `\"lru\"` (every new key is admitted, the least recently used goes)",
        );
        return None;
    }
    Some(lit)
}

pub(crate) fn store_name(value: Expr, errors: &mut Errors) -> Option<LitStr> {
    let lit = string(value, "store", errors)?;
    if lit.value().is_empty() {
        errors.at(
            &lit,
            "`store` names a store of the config, e.g. `store = \"pages\"` for \
             `Config::named(\"pages\", ..)`",
        );
        return None;
    }
    Some(lit)
}

pub(crate) fn crate_path(value: Expr, errors: &mut Errors) -> Option<Path> {
    let lit = string(value, "crate", errors)?;
    match lit.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.at(
                &lit,
                "`crate` must name a path, e.g. `crate = \"my_cache\"`",
            );
            None
        }
    }
}

/// The shape of the function, as far as the expansion cares.
pub(crate) struct FnShape {
    /// Has a `self` receiver (or mentions `Self`): companions become associated functions.
    pub(crate) in_impl: bool,
    /// The function's own type parameters (only allowed with `key = ...`).
    pub(crate) type_params: Vec<syn::Ident>,
    /// Returns a `&'static` reference without `local`: reported, then expanded as `local` so
    /// that callers and companions see no second error.
    pub(crate) force_local: bool,
    /// The function itself cannot be cached as written (not just one argument): only the
    /// user's item and the errors are emitted, since an expansion would add errors of its own.
    pub(crate) broken: bool,
    /// The shape of a `batch` function (`None` without `batch`).
    pub(crate) batch: Option<BatchShape>,
}

/// Errors about the function's shape, which stop the expansion.
struct ShapeErrors<'a> {
    errors: &'a mut Errors,
    broken: bool,
}

impl ShapeErrors<'_> {
    fn at(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.errors.at(tokens, message);
        self.broken = true;
    }
}

/// Checks the rules that involve the function and the arguments together. An argument that
/// breaks a rule between arguments is reported and dropped from `args`, so that the expansion
/// still goes on with the others (and callers of the companions see no second error).
pub(crate) fn validate(sig: &Signature, args: &mut CachedArgs, errors: &mut Errors) -> FnShape {
    cross_argument_rules(sig, args, errors);
    let mut shape = ShapeErrors {
        errors,
        broken: false,
    };
    if let Some(constness) = &sig.constness {
        shape.at(constness, "`#[cached]` cannot be used on a `const fn`");
    }
    let mut type_params = Vec::new();
    for param in &sig.generics.params {
        match param {
            syn::GenericParam::Lifetime(_) => {}
            syn::GenericParam::Type(_) if args.batch.is_some() => shape.at(
                param,
                "a `batch` function cannot be generic: its cache holds one element type; \
                 take a slice of a concrete type, e.g. `fn users(ids: &[u64]) -> HashMap<u64, User>`",
            ),
            syn::GenericParam::Type(ty) if args.key.is_some() => type_params.push(ty.ident.clone()),
            syn::GenericParam::Type(_) => shape.at(
                param,
                "`#[cached]` on a generic function needs `key = ...`: say what identifies a \
                 call, e.g. `#[cached(key = value.to_string())]` (each concrete type gets its \
                 own entries)",
            ),
            syn::GenericParam::Const(_) => shape.at(
                param,
                "`#[cached]` does not support const generic parameters; take the value as an \
                 argument instead",
            ),
        }
    }
    if let Some(variadic) = &sig.variadic {
        shape.at(variadic, "`#[cached]` does not support variadic functions");
    }
    let receiver = sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Receiver(r) => Some(r),
        FnArg::Typed(_) => None,
    });
    if let (Some(receiver), Some(_)) = (receiver, &args.batch) {
        shape.at(
            receiver,
            "a `batch` function cannot take `self`: each element is keyed by its id alone; \
             make it a free function, e.g. `fn users(ids: &[u64]) -> HashMap<u64, User>`",
        );
    } else if let (Some(receiver), None) = (receiver, &args.key) {
        shape.at(
            receiver,
            "`#[cached]` on a method needs `key = ...`: the cache cannot tell calls on different \
             `self` values apart; e.g. `#[cached(key = (self.id, n))]`",
        );
    }
    for arg in &sig.inputs {
        let FnArg::Typed(typed) = arg else { continue };
        if let Some(mutable) = mutable_reference(&typed.ty) {
            shape.at(
                mutable,
                "`#[cached]` cannot take a `&mut` parameter: a cache hit skips the body, so the \
                 mutation would happen only on a miss; take `&` and return the new value, or \
                 mutate outside the cached function",
            );
        } else if args.key.is_none() && !matches!(&*typed.pat, Pat::Ident(_)) {
            let message = if args.batch.is_some() {
                "a `batch` function names its slice of ids: write `ids: &[u64]`"
            } else {
                "`#[cached]` builds the key from named parameters; give this one a name or \
                 choose the key with `key = ...`"
            };
            shape.at(&typed.pat, message);
        }
    }
    let mut force_local = false;
    match &sig.output {
        syn::ReturnType::Default => shape.at(
            sig.ident.clone(),
            "`#[cached]` needs a return value to cache; this function returns `()`",
        ),
        syn::ReturnType::Type(_, ty) => {
            let tokens = quote::quote!(#ty);
            let value = crate::expand::value_type(ty);
            if let syn::Type::ImplTrait(_) = &**ty {
                shape.at(
                    ty,
                    "`#[cached]` cannot store an `impl Trait` return value; name the type",
                );
            } else if mentions_self(&tokens) {
                shape.at(
                    ty,
                    "`#[cached]` cannot name `Self` in the return type; write the type out",
                );
            } else if let Some(param) = type_params.iter().find(|p| mentions_ident(&tokens, p)) {
                shape.at(
                    ty,
                    format!(
                        "`#[cached]` cannot cache a value whose type depends on the type \
                         parameter `{param}`: one cache holds one value type; return a \
                         concrete type"
                    ),
                );
            } else if let (syn::Type::Reference(reference), false) = (&value, args.local) {
                shape.errors.at(
                    &value,
                    "`#[cached]` cannot store a reference in Redis: return an owned value \
                     (`String` for `&str`, `Vec<T>` for `&[T]`), or write `#[cached(local)]` to \
                     keep `&'static` values in memory only",
                );
                match &reference.lifetime {
                    Some(lifetime) if lifetime.ident == "static" => force_local = true,
                    _ => shape.broken = true,
                }
            }
        }
    }
    let in_impl = receiver.is_some() || mentions_self(&quote::quote!(#sig));
    let mut batch = None;
    if args.batch.is_some() && !shape.broken {
        if in_impl {
            shape.at(
                &sig.inputs,
                "a `batch` function cannot name `Self`: write the types out",
            );
        } else {
            batch = batch::shape(sig, shape.errors);
            shape.broken |= batch.is_none();
        }
    }
    FnShape {
        in_impl,
        type_params,
        force_local,
        broken: shape.broken,
        batch,
    }
}

/// The rules between arguments: each offending argument is reported and dropped.
fn cross_argument_rules(sig: &Signature, args: &mut CachedArgs, errors: &mut Errors) {
    if args.ttl.is_none() {
        let message =
            |name: &str| format!("`{name}` needs a `ttl`: entries without one never expire");
        if args.jitter.take().is_some() {
            errors.at(sig.ident.clone(), message("jitter"));
        }
        if args.refresh_early.take().is_some() {
            errors.at(sig.ident.clone(), message("refresh"));
            args.beta = None;
        }
        if args.stale.take().is_some() {
            errors.at(sig.ident.clone(), message("stale"));
        }
    }
    if args.batch.is_some() {
        if let Some(key) = args.key.take() {
            errors.at(
                &key,
                "`batch` keys each element by its id (`f::key_for(&id)`): remove `key = ...`",
            );
        }
    }
    if let (Some((_, at)), Some(_)) = (&args.max_bytes, args.capacity) {
        errors.at(
            at,
            "`max_bytes` and `capacity` both bound L1, by the values' encoded size and by \
             their count: keep one",
        );
        args.max_bytes = None;
    }
    if let (Some(lock), true) = (&args.lock, args.local) {
        errors.at(
            lock,
            "`lock` coordinates processes through Redis, which a `local` function never uses",
        );
        args.lock = None;
        args.lock_timeout = None;
    }
    if let (Some((_, at)), None) = (&args.none_ttl, &args.cache_none) {
        errors.at(
            at,
            "`none_ttl` is the lifetime of cached `None`s: it needs `cache_none`",
        );
        args.none_ttl = None;
    }
    if let (Some(expires), Some(_)) = (&args.expires, &args.cache_none) {
        errors.at(
            expires,
            "`expires` and `cache_none` both decide a value's lifetime; keep one",
        );
        args.expires = None;
    }
    if let ReturnType::Type(_, output) = &sig.output {
        let (wrapped, option) = crate::expand::wrapper(output);
        if let (Some((_, at)), false) = (&args.stale_if_error, wrapped) {
            errors.at(
                at,
                "`stale_if_error` stands in for a failed body: the return type must be a \
                 `Result` (`Err` fails) or an `Option` (`None` fails)",
            );
            args.stale_if_error = None;
        }
        if let (Some(at), false) = (&args.cache_none, option) {
            errors.at(
                at,
                "`cache_none` caches `None` results: the return type must be an `Option<T>` \
                 or a `Result<Option<T>, E>`",
            );
            args.cache_none = None;
            args.none_ttl = None;
        }
    }
    if let (Some((_, at)), true) = (&args.local_ttl, args.local) {
        errors.at(
            at,
            "`local_ttl` shortens the in-process copy of a shared entry; a `local` function \
             has only that copy: use `ttl`",
        );
        args.local_ttl = None;
    }
    if let (Some((Ttl::Secs(local), at)), Some(Ttl::Secs(ttl))) = (&args.local_ttl, &args.ttl) {
        if local >= ttl {
            errors.at(at, "`local_ttl` must be shorter than `ttl`");
            args.local_ttl = None;
        }
    }
    if let (Some(store), true) = (&args.store, args.local) {
        errors.at(
            store,
            "`store` names a shared store, which a `local` function never uses",
        );
        args.store = None;
    }
    if let (Some((_, at)), None) = (&args.lock_timeout, &args.lock) {
        errors.at(at, "`lock_timeout` needs `lock`");
        args.lock_timeout = None;
    }
    if let (Some((_, at)), None) = (&args.beta, &args.refresh_early) {
        errors.at(at, "`beta` tunes `refresh = early`, which is not set");
        args.beta = None;
    }
}

/// The `&mut` in a parameter's type, anywhere in it (`&mut T`, `Option<&mut T>`, ...).
fn mutable_reference(ty: &syn::Type) -> Option<proc_macro2::TokenStream> {
    struct Find(Option<proc_macro2::TokenStream>);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
            if let (None, Some(mutability)) = (&self.0, &reference.mutability) {
                let and = &reference.and_token;
                self.0 = Some(quote::quote!(#and #mutability));
            }
            syn::visit::visit_type_reference(self, reference);
        }
    }
    let mut find = Find(None);
    syn::visit::Visit::visit_type(&mut find, ty);
    find.0
}

/// Whether the identifier `name` appears anywhere in `tokens`.
fn mentions_ident(tokens: &proc_macro2::TokenStream, name: &syn::Ident) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == *name,
        proc_macro2::TokenTree::Group(group) => mentions_ident(&group.stream(), name),
        _ => false,
    })
}

/// Whether `Self` appears anywhere in `tokens`.
pub(crate) fn mentions_self(tokens: &proc_macro2::TokenStream) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == "Self",
        proc_macro2::TokenTree::Group(group) => mentions_self(&group.stream()),
        _ => false,
    })
}
