//! `cached_block!(..)` arguments: `[async] name = "..", value = Type, [key = expr,]
//! [ttl = 60,] [capacity = N,] [local,] [store = ".."] [crate = ".."], { block }`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{Block, Expr, Ident, LitStr, Path, Token, Type};

use crate::attr::{self, Errors, Ttl};

/// Every argument of `cached_block!`, as the error messages list them.
pub(crate) const VALID: &str =
    "`name`, `value`, `key`, `ttl`, `capacity`, `local`, `store`, `crate`";

const EXAMPLE: &str = "e.g. `cached_block!(name = \"note_comments\", ttl = 60, key = note.id, \
                       value = String, { .. })`";

/// One `cached_block!(..)`.
pub(crate) struct BlockArgs {
    pub(crate) asyncness: Option<Token![async]>,
    pub(crate) name: Option<LitStr>,
    pub(crate) value: Option<Type>,
    pub(crate) key: Option<Expr>,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) capacity: Option<u64>,
    pub(crate) local: bool,
    pub(crate) store: Option<LitStr>,
    pub(crate) krate: Option<Path>,
    pub(crate) block: Option<Block>,
    /// Every bad argument; the block is still expanded (as a plain block) when there are some.
    pub(crate) errors: Errors,
}

impl Parse for BlockArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = BlockArgs {
            asyncness: input.parse()?,
            name: None,
            value: None,
            key: None,
            ttl: None,
            capacity: None,
            local: false,
            store: None,
            krate: None,
            block: None,
            errors: Errors::default(),
        };
        if args.asyncness.is_some() {
            let _: Option<Token![,]> = input.parse()?;
        }
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            if input.peek(syn::token::Brace) {
                args.block = Some(input.parse()?);
                let _: Option<Token![,]> = input.parse()?;
                if !input.is_empty() {
                    return Err(
                        input.error("the block comes last in `cached_block!`, after the arguments")
                    );
                }
                break;
            }
            let ident: Ident = if input.peek(Token![crate]) {
                let krate: Token![crate] = input.parse()?;
                Ident::new("crate", krate.span)
            } else {
                input.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        format!(
                            "`cached_block!` takes comma-separated arguments, each one of \
                             {VALID}, then the block; {EXAMPLE}"
                        ),
                    )
                })?
            };
            let name = ident.to_string();
            if seen.contains(&name) {
                args.errors.at(
                    &ident,
                    format!("duplicate `cached_block!` argument `{name}`"),
                );
            }
            seen.push(name.clone());
            if name == "local" {
                args.local = true;
            } else {
                if !input.peek(Token![=]) {
                    args.errors
                        .at(&ident, format!("`{name}` needs a value; {EXAMPLE}"));
                } else {
                    let _: Token![=] = input.parse()?;
                    args.parse_value(&ident, input)?;
                }
            }
            if input.is_empty() {
                break;
            }
            let _: Token![,] = input.parse()?;
        }
        Ok(args)
    }
}

impl BlockArgs {
    fn parse_value(&mut self, ident: &Ident, input: ParseStream<'_>) -> syn::Result<()> {
        let errors = &mut self.errors;
        match ident.to_string().as_str() {
            "value" => self.value = Some(input.parse()?),
            "key" => self.key = Some(input.parse()?),
            "name" => self.name = attr::cache_name(attr::ungroup(input.parse()?), errors),
            "ttl" => self.ttl = attr::duration(attr::ungroup(input.parse()?), "ttl", errors),
            "capacity" => {
                let value = attr::ungroup(input.parse()?);
                self.capacity = attr::int::<u64>(&value, "capacity", errors).filter(|&n| {
                    if n == 0 {
                        errors.at(&value, "`capacity` must be at least 1");
                    }
                    n > 0
                });
            }
            "store" => self.store = attr::store_name(attr::ungroup(input.parse()?), errors),
            "crate" => self.krate = attr::crate_path(attr::ungroup(input.parse()?), errors),
            other => {
                errors.at(
                    ident,
                    format!("unknown `cached_block!` argument `{other}`; expected one of {VALID}"),
                );
                // Skip the value: a type or an expression, up to the next comma.
                while !input.is_empty() && !input.peek(Token![,]) {
                    let _: proc_macro2::TokenTree = input.parse()?;
                }
            }
        }
        Ok(())
    }

    /// The rules between arguments, once all are parsed.
    pub(crate) fn validate(&mut self) {
        let span = Span::call_site();
        if self.block.is_none() {
            self.errors.push(syn::Error::new(
                span,
                format!("`cached_block!` ends with the block to cache; {EXAMPLE}"),
            ));
        }
        if self.name.is_none() {
            self.errors.push(syn::Error::new(
                span,
                format!(
                    "`cached_block!` needs `name = \"..\"`: it names the block's entries in \
                     keys (`cache_runtime::block_key(name, &key)`); {EXAMPLE}"
                ),
            ));
        }
        if self.value.is_none() {
            self.errors.push(syn::Error::new(
                span,
                format!(
                    "`cached_block!` needs `value = Type`, the type the block evaluates to (its \
                     cache is a `static`, which needs a type it can name); {EXAMPLE}"
                ),
            ));
        }
        if let (Some(store), true) = (&self.store, self.local) {
            self.errors.at(
                store,
                "`store` names a shared store, which a `local` block never uses",
            );
            self.store = None;
        }
    }
}
