//! The writer's half of the depth rule: a serializer that writes nothing and only checks that
//! a value nests no deeper than the decoder reads ([`wire::MAX_DEPTH`]), counting the same
//! shapes (options, newtypes, structs, tuples, sequences, maps, enum variants).
//!
//! A value that fails it is kept out of the shared store with a warning: it would be written
//! and then be unreadable everywhere.

use std::fmt;

use serde::ser::{self, Serialize};

use super::wire::MAX_DEPTH;

/// Why a value may not be written.
#[derive(Debug)]
pub(crate) struct TooDeep(String);

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooDeep {}

impl ser::Error for TooDeep {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TooDeep(msg.to_string())
    }
}

type Result = std::result::Result<(), TooDeep>;

/// `Ok` when `value` nests at most [`MAX_DEPTH`] levels.
pub(crate) fn check<T: Serialize + ?Sized>(value: &T) -> Result {
    value.serialize(&mut Probe { depth: 0 })
}

struct Probe {
    depth: usize,
}

impl Probe {
    fn enter(&mut self) -> Result {
        if self.depth >= MAX_DEPTH {
            return Err(TooDeep(format!(
                "the value nests deeper than {MAX_DEPTH} levels, which the decoder refuses"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) -> Result {
        self.depth -= 1;
        Ok(())
    }

    fn inside<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.enter()?;
        value.serialize(&mut *self)?;
        self.leave()
    }
}

macro_rules! leaves {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method(self, _: $ty) -> Result {
            Ok(())
        }
    )*};
}

impl ser::Serializer for &mut Probe {
    type Ok = ();
    type Error = TooDeep;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    leaves!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
        serialize_str: &str,
        serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> Result {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.inside(value)
    }

    fn serialize_unit(self) -> Result {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result {
        self.enter()?;
        self.leave()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        self.inside(value)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result {
        self.inside(value)
    }

    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, TooDeep> {
        self.enter()?;
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Every compound shape: elements are probed one level down, `end` comes back up.
macro_rules! compound {
    ($($trait:ident { $($element:ident $(($name:ty))?),* }),* $(,)?) => {$(
        impl ser::$trait for &mut Probe {
            type Ok = ();
            type Error = TooDeep;
            $(
                fn $element<T: Serialize + ?Sized>(&mut self, $(_: $name,)? value: &T) -> Result {
                    value.serialize(&mut **self)
                }
            )*
            fn end(self) -> Result {
                self.leave()
            }
        }
    )*};
}

compound!(
    SerializeSeq { serialize_element },
    SerializeTuple { serialize_element },
    SerializeTupleStruct { serialize_field },
    SerializeTupleVariant { serialize_field },
    SerializeMap { serialize_key, serialize_value },
    SerializeStruct { serialize_field(&'static str) },
    SerializeStructVariant { serialize_field(&'static str) },
);
