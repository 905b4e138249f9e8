//! Reading bincode 2's standard format (varint integers, little endian) with bounds.
//!
//! Bytes from Redis or disk come from outside, and bincode's own decoder trusts them in two
//! ways a cache cannot afford: it recurses as deep as the bytes say (a value nested a few
//! thousand levels overflows a 2 MiB stack and aborts the process), and it reserves what a
//! length prefix announces before reading it (a 30-byte value can make it zero-fill 512 MiB).
//! This decoder reads the same format with three limits:
//!
//! - **Depth**: at most [`MAX_DEPTH`] nested options, structs, tuples, sequences, maps and enum
//!   variants; deeper is an error, found before the stack is at risk. The writer checks the
//!   same rule ([`super::depth`]) so that a value the library writes can be read back.
//! - **Memory**: strings and byte strings are checked against the bytes actually left before
//!   anything is allocated, and the size hints given to collections add up to at most the
//!   input's length, so what a decode reserves ahead stays proportional to what it was given.
//! - **Work**: elements that take no bytes (zero-sized types) are counted, at most
//!   [`MAX_EMPTY_ELEMENTS`] per decode, so a huge announced length cannot spin forever.
//!
//! The writer stays bincode's own serializer; the tests check that this decoder reads what it
//! writes, for every serde shape.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Deepest nesting a stored value may have (serde_json's default recursion limit too).
pub(crate) const MAX_DEPTH: usize = 128;

/// Most zero-byte elements (sequences of `()`, say) one decode walks through.
pub(crate) const MAX_EMPTY_ELEMENTS: usize = 1 << 20;

/// Why bytes could not be decoded.
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

fn fail<T>(what: impl Into<String>) -> Result<T> {
    Err(Error(what.into()))
}

/// Decodes a `T` that must take up all of `bytes`.
pub(crate) fn from_slice<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut decoder = Decoder {
        input: bytes,
        depth: 0,
        hint_budget: bytes.len(),
        empty_elements: 0,
    };
    let value = T::deserialize(&mut decoder)?;
    if !decoder.input.is_empty() {
        return fail(format!("{} trailing bytes", decoder.input.len()));
    }
    Ok(value)
}

struct Decoder<'de> {
    /// What is left to read.
    input: &'de [u8],
    depth: usize,
    /// Elements that collections' size hints may still announce, in all.
    hint_budget: usize,
    empty_elements: usize,
}

impl<'de> Decoder<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return fail(format!("{n} bytes announced, {} left", self.input.len()));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// An unsigned varint: below 251 the byte itself, then 251/252/253 announce a u16, u32
    /// or u64 in little endian (254, a u128, is read by [`Self::varint_u128`]).
    #[inline]
    fn varint(&mut self) -> Result<u64> {
        let Some((&first, rest)) = self.input.split_first() else {
            return fail("no varint");
        };
        if first < 251 {
            self.input = rest;
            return Ok(first as u64);
        }
        self.input = rest;
        Ok(match first {
            251 => u16::from_le_bytes(self.array()?) as u64,
            252 => u32::from_le_bytes(self.array()?) as u64,
            253 => u64::from_le_bytes(self.array()?),
            254 => return fail("a 128-bit varint where at most 64 bits fit"),
            _ => return fail("invalid varint tag 255"),
        })
    }

    fn varint_u128(&mut self) -> Result<u128> {
        if self.input.first() == Some(&254) {
            self.input = &self.input[1..];
            return Ok(u128::from_le_bytes(self.array()?));
        }
        self.varint().map(u128::from)
    }

    #[inline]
    fn unsigned<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T> {
        let n = self.varint()?;
        T::try_from(n).or_else(|_| fail(format!("{n} does not fit in {what}")))
    }

    /// A zigzag-encoded signed varint.
    #[inline]
    fn signed<T: TryFrom<i64>>(&mut self, what: &str) -> Result<T> {
        let n = self.varint()?;
        let value = (n >> 1) as i64 ^ -((n & 1) as i64);
        T::try_from(value).or_else(|_| fail(format!("{value} does not fit in {what}")))
    }

    fn len(&mut self) -> Result<usize> {
        self.unsigned("a length")
    }

    /// A length-prefixed byte string, borrowed from the input (checked before any copy).
    fn bytes(&mut self) -> Result<&'de [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).or_else(|e| fail(format!("invalid UTF-8: {e}")))
    }

    /// Runs `inside` one level deeper, or fails past [`MAX_DEPTH`].
    fn nested<T>(&mut self, inside: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return fail(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let out = inside(self);
        self.depth -= 1;
        out
    }

    /// A collection of `len` elements.
    fn elements(&mut self, len: usize) -> Elements<'_, 'de> {
        let hint = len.min(self.hint_budget);
        self.hint_budget -= hint;
        Elements {
            decoder: self,
            left: len,
            hint,
        }
    }

    /// Counts an element that took no bytes.
    fn element_done(&mut self, left_before: usize) -> Result<()> {
        if self.input.len() == left_before {
            self.empty_elements += 1;
            if self.empty_elements > MAX_EMPTY_ELEMENTS {
                return fail(format!(
                    "more than {MAX_EMPTY_ELEMENTS} elements that take no bytes"
                ));
            }
        }
        Ok(())
    }
}

macro_rules! unsigned {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(self.unsigned::<$ty>(stringify!($ty))?)
        }
    )*};
}

macro_rules! signed {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(self.signed::<$ty>(stringify!($ty))?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        fail("the format does not describe itself (deserialize_any)")
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        fail("the format cannot skip unknown values (deserialize_ignored_any)")
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        fail("the format stores no identifiers")
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            other => fail(format!("invalid bool {other}")),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(self.byte()? as i8)
    }

    unsigned!(
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    );

    signed!(
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
    );

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u128(self.varint_u128()?)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_u128()?;
        visitor.visit_i128((n >> 1) as i128 ^ -((n & 1) as i128))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    /// A char is written as its UTF-8 bytes.
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let first = *self.input.first().ok_or_else(|| Error("no char".into()))?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return fail(format!("invalid char start {first:#x}")),
        };
        let bytes = self.take(width)?;
        let text = std::str::from_utf8(bytes).or_else(|e| fail(format!("invalid char: {e}")))?;
        match text.chars().next() {
            Some(c) => visitor.visit_char(c),
            None => fail("no char"),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            other => fail(format!("invalid option tag {other}")),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.len()?;
        self.nested(|de| visitor.visit_seq(de.elements(len)))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.nested(|de| visitor.visit_seq(de.elements(len)))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.len()?;
        self.nested(|de| visitor.visit_map(de.elements(len)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_enum(de))
    }

    fn is_human_readable(&self) -> bool {
        // As bincode's serializer says: types with two forms (addresses, times) are written
        // in their compact one.
        false
    }
}

/// The elements of a sequence, tuple, struct or map.
struct Elements<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    left: usize,
    hint: usize,
}

impl<'de> Elements<'_, 'de> {
    fn next<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let before = self.decoder.input.len();
        let value = seed.deserialize(&mut *self.decoder)?;
        self.decoder.element_done(before)?;
        Ok(Some(value))
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.next(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.hint)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        self.next(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.decoder)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.hint)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self)> {
        let index: u32 = self.unsigned("a variant index")?;
        let value = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(self.elements(len))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(self.elements(fields.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    enum Shape {
        Unit,
        New(i16),
        Tuple(u8, char),
        Struct { a: Option<u128>, b: Vec<i8> },
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct UnitStruct;

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct Newtype(u32);

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct Rich {
        ints: (i8, i16, i32, i64, i128),
        uints: (u8, u16, u32, u64, u128),
        floats: (f32, f64),
        flags: (bool, char, (), UnitStruct, Newtype),
        text: String,
        bytes: Vec<u8>,
        maybe: Option<String>,
        shapes: Vec<Shape>,
        boxed: Box<Shape>,
        sorted: BTreeMap<String, u64>,
        keyed: BTreeMap<u32, Vec<Shape>>,
        array: [u16; 3],
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Unit),
            any::<i16>().prop_map(Shape::New),
            (any::<u8>(), any::<char>()).prop_map(|(a, b)| Shape::Tuple(a, b)),
            (
                any::<Option<u128>>(),
                proptest::collection::vec(any::<i8>(), 0..4)
            )
                .prop_map(|(a, b)| Shape::Struct { a, b }),
        ]
    }

    prop_compose! {
        fn rich()(
            ints in any::<(i8, i16, i32, i64, i128)>(),
            uints in any::<(u8, u16, u32, u64, u128)>(),
            floats in any::<(f32, f64)>(),
            flag in any::<(bool, char, u32)>(),
            text in ".{0,40}",
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            maybe in proptest::option::of(".{0,10}"),
            shapes in proptest::collection::vec(shape(), 0..6),
            boxed in shape(),
            sorted in proptest::collection::btree_map(".{0,6}", any::<u64>(), 0..4),
            keyed in proptest::collection::btree_map(any::<u32>(), proptest::collection::vec(shape(), 0..3), 0..3),
            array in any::<[u16; 3]>(),
        ) -> Rich {
            Rich {
                ints, uints, floats,
                flags: (flag.0, flag.1, (), UnitStruct, Newtype(flag.2)),
                text, bytes, maybe, shapes, boxed: Box::new(boxed), sorted, keyed, array,
            }
        }
    }

    fn bincode_bytes<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn bincode_decode<T: de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        let config = bincode::config::standard().with_limit::<{ 1 << 24 }>();
        match bincode::serde::decode_from_slice::<T, _>(bytes, config) {
            Ok((value, read)) if read == bytes.len() => Some(value),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Everything bincode writes, this decoder reads back to the same value (compared
        /// through bincode again, so NaNs compare equal).
        #[test]
        fn reads_what_bincode_writes(value in rich()) {
            let bytes = bincode_bytes(&value);
            let back: Rich = from_slice(&bytes).unwrap();
            prop_assert_eq!(bincode_bytes(&back), bytes);
        }

        /// Hash maps (whose order bincode keeps as it found it) read back equal.
        #[test]
        fn reads_hash_maps(map in proptest::collection::hash_map(".{0,8}", proptest::collection::vec(shape(), 0..3), 0..8)) {
            let back: HashMap<String, Vec<Shape>> = from_slice(&bincode_bytes(&map)).unwrap();
            prop_assert_eq!(back, map);
        }

        /// On damaged encodings (a byte changed, a cut) it agrees with bincode's own decoder:
        /// the same value, or an error.
        #[test]
        fn agrees_with_bincode_on_damaged_bytes(
            value in rich(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = bincode_bytes(&value);
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let damaged = [bytes.clone(), bytes[..cut.index(bytes.len())].to_vec()];
            for bytes in damaged {
                let ours = from_slice::<Rich>(&bytes).ok().map(|v| bincode_bytes(&v));
                let theirs = bincode_decode::<Rich>(&bytes).map(|v| bincode_bytes(&v));
                prop_assert_eq!(ours, theirs);
            }
        }

        /// Every proper prefix of a valid encoding is an error, never a value.
        #[test]
        fn prefixes_are_errors(value in rich()) {
            let bytes = bincode_bytes(&value);
            for len in 0..bytes.len() {
                prop_assert!(from_slice::<Rich>(&bytes[..len]).is_err(), "prefix of {len}");
            }
        }

        /// Large random inputs, read as several types: errors or values, never a panic.
        #[test]
        fn large_random_inputs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..65536)) {
            let _ = from_slice::<Rich>(&bytes);
            let _ = from_slice::<Vec<String>>(&bytes);
            let _ = from_slice::<Vec<Vec<Shape>>>(&bytes);
            let _ = from_slice::<HashMap<String, Vec<u8>>>(&bytes);
            let _ = from_slice::<Tree>(&bytes);
        }
    }

    use crate::codec::fixtures::{chain, Tree};

    /// Runs `f` on a thread with a small stack (a tokio worker has 2 MiB).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_stack_overflow() {
        // A million levels of `Tree { children: [..] }`: each level is one length byte.
        let bytes = vec![1u8; 1_000_000];
        let error = on_small_stack(move || from_slice::<Tree>(&bytes).unwrap_err());
        assert!(error.to_string().contains("nested deeper"), "{error}");
    }

    #[test]
    fn the_deepest_allowed_value_reads_back_on_a_small_stack() {
        // Each tree level is a struct and a sequence: two levels of depth.
        let tree = chain(MAX_DEPTH / 2);
        let bytes = bincode_bytes(&tree);
        let back = on_small_stack(move || from_slice::<Tree>(&bytes).unwrap());
        assert_eq!(back, tree);
        let too_deep = bincode_bytes(&chain(MAX_DEPTH / 2 + 1));
        assert!(from_slice::<Tree>(&too_deep).is_err());
    }

    #[test]
    fn announced_lengths_beyond_the_input_are_refused_before_allocating() {
        // A String of 500 MB announced by 9 bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&500_000_000u64.to_le_bytes());
        let error = from_slice::<String>(&bytes).unwrap_err();
        assert!(error.to_string().contains("announced"), "{error}");
        assert!(from_slice::<Vec<u8>>(&bytes).is_err());
        assert!(from_slice::<Vec<u64>>(&bytes).is_err());
        assert!(from_slice::<HashMap<u64, u64>>(&bytes).is_err());
    }

    #[test]
    fn zero_sized_elements_are_bounded() {
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let error = from_slice::<Vec<()>>(&bytes).unwrap_err();
        assert!(error.to_string().contains("take no bytes"), "{error}");
        let fine = bincode_bytes(&vec![(); 1000]);
        assert_eq!(from_slice::<Vec<()>>(&fine).unwrap().len(), 1000);
    }
}
