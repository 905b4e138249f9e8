//! The shape of a `batch` function: one slice parameter `ids: &[K]`, and `HashMap<K, V>` or
//! `Result<HashMap<K, V>, E>` returned.

use syn::{FnArg, GenericArgument, Pat, PathArguments, ReturnType, Signature, Type};

use super::Errors;

/// What the expansion of a `batch` function needs to know.
pub(crate) struct BatchShape {
    /// The parameter's pattern (`ids`).
    pub(crate) pat: Pat,
    /// The element type `K` of `&[K]`.
    pub(crate) id: Type,
    /// The value type `V` of the map.
    pub(crate) value: Type,
}

const EXAMPLE: &str = "e.g. `#[cached(batch)] fn users(ids: &[u64]) -> HashMap<u64, User>`";

/// Checks the signature of a `batch` function; `None` (and errors) when it is not one.
pub(crate) fn shape(sig: &Signature, errors: &mut Errors) -> Option<BatchShape> {
    let param = one_slice_param(sig, errors);
    let map = map_type(&sig.output, errors);
    let ((pat, id), (key, value)) = (param?, map?);
    if tokens(&key) != tokens(&id) {
        errors.at(
            &key,
            format!(
                "the map's key type must be the slice's element type `{}`: a `batch` function \
                 returns the value of each id it was given, {EXAMPLE}",
                tokens(&id)
            ),
        );
        return None;
    }
    Some(BatchShape { pat, id, value })
}

fn tokens(ty: &Type) -> String {
    quote::quote!(#ty).to_string()
}

/// The pattern and element type of the one `ids: &[K]` parameter.
fn one_slice_param(sig: &Signature, errors: &mut Errors) -> Option<(Pat, Type)> {
    let typed: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let [typed] = typed.as_slice() else {
        let message = format!(
            "a `batch` function takes exactly one parameter, a slice of ids ({} given); {EXAMPLE}",
            typed.len()
        );
        if sig.inputs.is_empty() {
            errors.at(&sig.ident, message);
        } else {
            errors.at(&sig.inputs, message);
        }
        return None;
    };
    let slice = match &*typed.ty {
        Type::Reference(reference) if reference.mutability.is_none() => match &*reference.elem {
            Type::Slice(slice) => Some((*slice.elem).clone()),
            _ => None,
        },
        _ => None,
    };
    let Some(id) = slice else {
        errors.at(
            &typed.ty,
            format!("a `batch` function takes its ids as a slice `&[K]`; {EXAMPLE}"),
        );
        return None;
    };
    Some(((*typed.pat).clone(), id))
}

/// `K` and `V` of a `HashMap<K, V>` or `Result<HashMap<K, V>, E>` return type.
fn map_type(output: &ReturnType, errors: &mut Errors) -> Option<(Type, Type)> {
    let ReturnType::Type(_, ty) = output else {
        // `validate` reports a function returning `()`.
        return None;
    };
    let found = match last_segment(ty, "Result").and_then(|args| args.first().cloned()) {
        Some(ok) => map_args(&ok),
        None => map_args(ty),
    };
    if found.is_none() {
        errors.at(
            ty,
            format!(
                "a `batch` function returns `HashMap<K, V>` or `Result<HashMap<K, V>, E>`, \
                 with `K` the slice's element type; {EXAMPLE}"
            ),
        );
    }
    found
}

fn map_args(ty: &Type) -> Option<(Type, Type)> {
    match last_segment(ty, "HashMap")?.as_slice() {
        [key, value, ..] => Some((key.clone(), value.clone())),
        _ => None,
    }
}

/// The type arguments of `ty` when its path ends in `name<..>`.
fn last_segment(ty: &Type, name: &str) -> Option<Vec<Type>> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(generic) = &last.arguments else {
        return None;
    };
    Some(
        generic
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty.clone()),
                _ => None,
            })
            .collect(),
    )
}
