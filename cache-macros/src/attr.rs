//! `#[cached(..)]` arguments, parsed into a typed struct, then checked against the function.

use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, FnArg, Lit, LitStr, Pat, Path, Signature, Token};

/// Every argument, as the error messages list them.
pub(crate) const VALID: &str = "`ttl`, `key`, `name`, `version`, `capacity`, `local`, `lock`, \
                                 `lock_timeout`, `jitter`, `refresh`, `beta`, `stale`, `crate`";

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
    pub(crate) local: bool,
    pub(crate) lock: Option<Path>,
    pub(crate) lock_timeout: Option<(Ttl, Path)>,
    pub(crate) jitter: Option<f64>,
    pub(crate) refresh_early: Option<Path>,
    pub(crate) beta: Option<(f64, Path)>,
    pub(crate) stale: Option<(Ttl, Path)>,
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
            "ttl" | "key" | "name" | "version" | "capacity" | "local" | "lock" | "lock_timeout"
            | "jitter" | "refresh" | "beta" | "stale" | "crate" => seen.first(&name, path, errors),
            _ => {
                errors.at(
                    path,
                    format!("unknown `cached` argument `{name}`; expected one of {VALID}"),
                );
                return skip_value(meta);
            }
        };
        if name == "local" || name == "lock" {
            if meta.input.peek(Token![=]) {
                errors.at(
                    path,
                    format!("`{name}` takes no value: write `#[cached({name})]`"),
                );
                return skip_value(meta);
            }
            match name.as_str() {
                "local" => self.local = true,
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
        "lock_timeout" => "lock_timeout = 5",
        "jitter" => "jitter = 0.1",
        "refresh" => "refresh = early",
        "beta" => "beta = 1.0",
        "stale" => "stale = 30",
        "crate" => "crate = \"my_cache\"",
        _ => "argument = value",
    }
}

/// Strips the invisible groups `macro_rules!` wraps around fragments (`$name:literal`), so a
/// literal passed through a user's macro is still recognised as one.
fn ungroup(value: Expr) -> Expr {
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
fn duration(value: Expr, name: &str, errors: &mut Errors) -> Option<Ttl> {
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
        _ => Some(Ttl::Duration(value)),
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

fn int<N: std::str::FromStr>(value: &Expr, name: &str, errors: &mut Errors) -> Option<N>
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
fn cache_name(value: Expr, errors: &mut Errors) -> Option<LitStr> {
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

fn crate_path(value: Expr, errors: &mut Errors) -> Option<Path> {
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
}

/// Checks the rules that involve the function and the arguments together.
pub(crate) fn validate(sig: &Signature, args: &CachedArgs, errors: &mut Errors) -> FnShape {
    if let Some(constness) = &sig.constness {
        errors.at(constness, "`#[cached]` cannot be used on a `const fn`");
    }
    for param in &sig.generics.params {
        match param {
            syn::GenericParam::Lifetime(_) => {}
            other => errors.at(
                other,
                "`#[cached]` does not support type or const generic parameters: one cache \
                 cannot hold values of several types; cache a non-generic wrapper instead",
            ),
        }
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "`#[cached]` does not support variadic functions");
    }
    let receiver = sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Receiver(r) => Some(r),
        FnArg::Typed(_) => None,
    });
    if let (Some(receiver), None) = (receiver, &args.key) {
        errors.at(
            receiver,
            "`#[cached]` on a method needs `key = ...`: the cache cannot tell calls on different \
             `self` values apart; e.g. `#[cached(key = (self.id, n))]`",
        );
    }
    if args.key.is_none() {
        for arg in &sig.inputs {
            if let FnArg::Typed(typed) = arg {
                if !matches!(&*typed.pat, Pat::Ident(_)) {
                    errors.at(
                        &typed.pat,
                        "`#[cached]` builds the key from named parameters; give this one a name \
                         or choose the key with `key = ...`",
                    );
                }
            }
        }
    }
    let needs_ttl = [
        args.jitter.as_ref().map(|_| "jitter"),
        args.refresh_early.as_ref().map(|_| "refresh"),
        args.stale.as_ref().map(|_| "stale"),
    ];
    if args.ttl.is_none() {
        for name in needs_ttl.into_iter().flatten() {
            errors.at(
                sig.ident.clone(),
                format!("`{name}` needs a `ttl`: entries without one never expire"),
            );
        }
    }
    if let (Some(lock), true) = (&args.lock, args.local) {
        errors.at(
            lock,
            "`lock` coordinates processes through Redis, which a `local` function never uses",
        );
    }
    if let (Some((_, at)), None) = (&args.lock_timeout, &args.lock) {
        errors.at(at, "`lock_timeout` needs `lock`");
    }
    if let (Some((_, at)), None) = (&args.beta, &args.refresh_early) {
        errors.at(at, "`beta` tunes `refresh = early`, which is not set");
    }
    match &sig.output {
        syn::ReturnType::Default => errors.at(
            sig.ident.clone(),
            "`#[cached]` needs a return value to cache; this function returns `()`",
        ),
        syn::ReturnType::Type(_, ty) => {
            if let syn::Type::ImplTrait(_) = &**ty {
                errors.at(
                    ty,
                    "`#[cached]` cannot store an `impl Trait` return value; name the type",
                );
            } else if mentions_self(&quote::quote!(#ty)) {
                errors.at(
                    ty,
                    "`#[cached]` cannot name `Self` in the return type; write the type out",
                );
            }
        }
    }
    let in_impl = receiver.is_some() || mentions_self(&quote::quote!(#sig));
    FnShape { in_impl }
}

/// Whether `Self` appears anywhere in `tokens`.
pub(crate) fn mentions_self(tokens: &proc_macro2::TokenStream) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == "Self",
        proc_macro2::TokenTree::Group(group) => mentions_self(&group.stream()),
        _ => false,
    })
}
