//! Key encoding is injective: different argument tuples never share a key, however many
//! separators (`:`, `,`, `[`, `]`, `~`, `+`) and escapes (`\`) their strings hold. Default cache
//! names include the module path, so equal function names in two modules never share a key.
//! No config is installed here: keys print without a prefix.

use cache_runtime::{cached, encode_key, KeyPart};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::collections::HashMap;
use std::fmt::Debug;

/// The bytes that mean something in the encoding, plus one plain letter.
const ALPHABET: [char; 8] = ['a', ':', ',', '[', ']', '~', '+', '\\'];

/// Strings made mostly of the encoding's own bytes: half of them so short, over so few
/// characters, that a batch is full of near-collisions; half longer, over all of them.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![r"[a:\\]{0,3}", r"[ab:,\[\]~+\\]{0,8}"]
}

/// Every string over [`ALPHABET`] up to `max_len` characters.
fn all_strings(max_len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut previous = all.clone();
    for _ in 0..max_len {
        previous = previous
            .iter()
            .flat_map(|s| ALPHABET.iter().map(move |c| format!("{s}{c}")))
            .collect();
        all.extend(previous.iter().cloned());
    }
    all
}

/// An error naming two different values that encode to the same key, if there are any.
fn check_injective<T: KeyPart + PartialEq + Debug>(
    values: impl IntoIterator<Item = T>,
) -> Result<(), String> {
    let mut first_by_key: HashMap<String, T> = HashMap::new();
    for value in values {
        let key = encode_key(&value);
        match first_by_key.get(&key) {
            Some(earlier) if *earlier != value => {
                return Err(format!("{earlier:?} and {value:?} both encode to {key:?}"));
            }
            Some(_) => {}
            None => {
                first_by_key.insert(key, value);
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn string_pairs_never_share_a_key(pairs in vec((tricky(), tricky()), 1..128)) {
        check_injective(pairs).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn list_and_string_pairs_never_share_a_key(
        pairs in vec((vec(tricky(), 0..4), tricky()), 1..128),
    ) {
        check_injective(pairs).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn nested_options_never_share_a_key(
        pairs in vec((option::of(tricky()), option::of(option::of(0u8..3))), 1..128),
    ) {
        check_injective(pairs).map_err(TestCaseError::fail)?;
    }
}

/// Every `(x, y)` with `x` from `xs` and `y` from `ys`.
fn product<X: Clone, Y: Clone>(xs: &[X], ys: &[Y]) -> Vec<(X, Y)> {
    xs.iter()
        .flat_map(|x| ys.iter().map(move |y| (x.clone(), y.clone())))
        .collect()
}

#[test]
fn every_pair_of_short_strings_has_its_own_key() {
    let strings = all_strings(2);
    assert_eq!(check_injective(product(&strings, &strings)), Ok(()));
}

#[test]
fn every_short_list_and_string_pair_has_its_own_key() {
    let strings = all_strings(1);
    let lists: Vec<Vec<String>> = std::iter::once(vec![])
        .chain(strings.iter().map(|a| vec![a.clone()]))
        .chain(
            product(&strings, &strings)
                .into_iter()
                .map(|(a, b)| vec![a, b]),
        )
        .collect();
    assert_eq!(check_injective(product(&lists, &strings)), Ok(()));
}

#[test]
fn every_short_option_pair_has_its_own_key() {
    let firsts: Vec<Option<String>> = std::iter::once(None)
        .chain(all_strings(2).into_iter().map(Some))
        .collect();
    let seconds = [None, Some(None), Some(Some(0u8)), Some(Some(1))];
    assert_eq!(check_injective(product(&firsts, &seconds)), Ok(()));
}

#[test]
fn a_separator_inside_a_string_is_escaped() {
    assert_eq!(encode_key(&("a:b", "c")), r"a\:b:c");
    assert_eq!(encode_key(&("a", "b:c")), r"a:b\:c");
}

#[test]
fn list_items_and_options_are_marked_unambiguously() {
    assert_eq!(encode_key(&(vec!["a,b"], "")), r"[a\,b,]:");
    assert_eq!(encode_key(&(vec!["a", "b"], "")), "[a,b,]:");
    assert_eq!(encode_key(&(None::<&str>, Some(None::<u8>))), "~:+~");
    assert_eq!(encode_key(&(Some("~"), None::<Option<u8>>)), r"+\~:~");
    assert_eq!(encode_key(&(Some(r"\"), Some(Some(1u8)))), r"+\\:++1");
}

mod a {
    use cache_runtime::cached;

    #[cached]
    pub fn get(id: u64) -> u64 {
        id
    }
}

mod b {
    use cache_runtime::cached;

    #[cached]
    pub fn get(id: u64) -> u64 {
        id + 1
    }
}

#[test]
fn same_function_name_in_two_modules_gets_two_keys() {
    assert_eq!(a::get::key(1).to_string(), "keys::a::get:v0:1");
    assert_eq!(b::get::key(1).to_string(), "keys::b::get:v0:1");
    assert_ne!(a::get::key(1), b::get::key(1));
    assert_eq!((a::get(1), b::get(1)), (1, 2));
}

#[cached]
fn get(id: u64) -> u64 {
    id + 2
}

#[test]
fn the_crate_root_is_part_of_the_default_name_too() {
    assert_eq!(get::key(1).to_string(), "keys::get:v0:1");
    assert_eq!(get(1), 3);
}

/// Keyed by one text: hits compare the caller's text itself, unencoded.
#[cached(ttl = 600)]
fn echo(text: &str) -> String {
    text.to_owned()
}

proptest! {
    /// Whatever texts share (a long head, the same length, escapes that encode alike only
    /// if misread), each call gets its own text back, also when answered from this thread's
    /// front table.
    #[test]
    fn text_keys_are_told_apart_on_the_hit_path(
        head in r"[a:\\]{20,30}",
        tails in vec(tricky(), 1..6),
    ) {
        let texts: Vec<String> = tails.iter().map(|tail| format!("{head}{tail}")).collect();
        for _ in 0..2 {
            for text in &texts {
                prop_assert_eq!(&echo(text), text);
            }
        }
    }
}
