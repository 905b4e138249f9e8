//! How values are stored in Redis: a small envelope header followed by a serde payload.
//!
//! `#[cached]` uses this module on its own; it is public for tools that read or write the
//! shared store's values outside a cached function (seeding Redis in a test or a benchmark,
//! inspecting a key): [`encode`] and [`decode`] with [`DefaultCodec`] give the bytes a
//! function with the same value type writes and reads.
//!
//! ```text
//! offset  size  field
//! 0       1     format version (currently 2)
//! 1       1     codec id (1 = bincode 2, 2 = postcard)
//! 2       8     fingerprint of the value's Rust type (name, size, alignment), little endian
//! 10      8     expiry, milliseconds since the Unix epoch (0 = never), little endian
//! 18      4     how long the body took, microseconds, little endian
//! 22      8     checksum of bytes 0..22 and of the payload, little endian
//! 30      ..    payload
//! ```
//!
//! Anything that does not match — another format (version 1 entries included), another codec,
//! another type (a changed return type), a flipped bit, a truncated or padded payload — is a
//! [`DecodeError`], which the read path treats as a miss and then overwrites.
//!
//! Stored bytes are input from outside. Decoding never panics, never recurses deeper than
//! 128 levels, never reserves memory for more elements than the bytes it was given could
//! hold, and walks at most about a million elements that take no bytes; see `wire`. A value
//! nested deeper than the decoder reads is not written at all (see `depth`).
//!
//! The fingerprint covers what Rust tells at compile time: the type's name, size and
//! alignment. It cannot see a field renamed, or two fields of the same type swapped: after
//! such a change to a value type, bump the function's `version`.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

mod checksum;
mod depth;
mod wire;

const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = 30;
/// Where the checksum sits in the header; it covers everything else.
const CHECKSUM_AT: usize = 22;

/// A serde format that values are written with.
pub trait Codec {
    /// Stored in the envelope so bytes written by another codec are recognised.
    const ID: u8;
    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes a value that must take up all of `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;
}

/// bincode 2.x's standard configuration: written by bincode's serializer, read by a decoder
/// of the same format that bounds depth, memory and work (bytes in a shared store come from
/// outside the process).
pub struct Bincode;

impl Codec for Bincode {
    const ID: u8 = 1;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        depth::check(value).map_err(|e| e.to_string())?;
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        wire::from_slice(bytes).map_err(|e| e.to_string())
    }
}
/// postcard 1.x (enable the `postcard` feature to write values with it).
#[cfg(feature = "postcard")]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    const ID: u8 = 2;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        let bytes = postcard::to_allocvec(value).map_err(|e| e.to_string())?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes", rest.len()));
        }
        Ok(value)
    }
}

/// The codec values are written with: postcard with the `postcard` feature, else bincode.
#[cfg(feature = "postcard")]
pub type DefaultCodec = Postcard;
/// The codec values are written with: postcard with the `postcard` feature, else bincode.
#[cfg(not(feature = "postcard"))]
pub type DefaultCodec = Bincode;

/// The decoded header of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Expiry in milliseconds since the Unix epoch; `None` means never.
    pub expires_at_ms: Option<u64>,
    /// How long the body took to compute the value.
    pub compute_time: Duration,
}

/// Why stored bytes could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "undecodable cache value: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A stable fingerprint of `T`: FNV-1a over its type name, size and alignment.
pub fn fingerprint<T>() -> u64 {
    fingerprint_of(
        std::any::type_name::<T>(),
        std::mem::size_of::<T>(),
        std::mem::align_of::<T>(),
    )
}

/// [`fingerprint`] of a type's name, size and alignment: not generic, so compiled once.
fn fingerprint_of(name: &str, size: usize, align: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let size = (size as u64).to_le_bytes();
    let align = (align as u64).to_le_bytes();
    for part in [name.as_bytes(), &size, &align] {
        for &b in part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Encodes `value` with its envelope.
///
/// # Errors
///
/// When the codec refuses the value, or it nests deeper than the decoder reads.
pub fn encode<T: Serialize, C: Codec>(value: &T, header: Header) -> Result<Vec<u8>, String> {
    encode_fingerprinted::<T, C>(value, header, fingerprint::<T>())
}

/// [`encode`] with `T`'s [`fingerprint`] computed once by the caller: hashing the type's
/// name costs more than the rest of the envelope.
pub(crate) fn encode_fingerprinted<T: Serialize, C: Codec>(
    value: &T,
    header: Header,
    fingerprint: u64,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    out.push(C::ID);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&header.expires_at_ms.unwrap_or(0).to_le_bytes());
    let micros = header.compute_time.as_micros().min(u32::MAX as u128) as u32;
    out.extend_from_slice(&micros.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    C::encode(value, &mut out)?;
    reseal(&mut out);
    Ok(out)
}

/// The length of `value`'s envelope as [`encode`] writes it (header and payload), what an L1
/// bounded by `max_bytes` weighs it by; 0 when the codec refuses it (it is not stored in the
/// shared store either).
pub fn encoded_len<T: Serialize, C: Codec>(value: &T) -> usize {
    let mut payload = Vec::new();
    match C::encode(value, &mut payload) {
        Ok(()) => HEADER_LEN + payload.len(),
        Err(_) => 0,
    }
}

/// The checksum of an envelope at least [`HEADER_LEN`] long.
fn checksum_of(bytes: &[u8]) -> u64 {
    let mut header = [0u8; CHECKSUM_AT];
    header.copy_from_slice(&bytes[..CHECKSUM_AT]);
    checksum::of(&header, &bytes[HEADER_LEN..])
}

/// Recomputes the checksum of an envelope whose bytes were changed on purpose, as tests that
/// craft stored values (or someone able to write to the store) do. Shorter input is left as
/// it is.
#[doc(hidden)]
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let sum = checksum_of(bytes);
        bytes[CHECKSUM_AT..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Decodes bytes written by [`encode`] for the same type and codec.
///
/// # Errors
///
/// A [`DecodeError`] for anything else; see the module docs.
pub fn decode<T: DeserializeOwned, C: Codec>(bytes: &[u8]) -> Result<(T, Header), DecodeError> {
    decode_fingerprinted::<T, C>(bytes, fingerprint::<T>())
}

/// [`decode`] with `T`'s [`fingerprint`] computed once by the caller (see
/// [`encode_fingerprinted`]).
pub(crate) fn decode_fingerprinted<T: DeserializeOwned, C: Codec>(
    bytes: &[u8],
    fingerprint: u64,
) -> Result<(T, Header), DecodeError> {
    let header = read_header::<C>(bytes, fingerprint)?;
    let value = C::decode(&bytes[HEADER_LEN..]).map_err(DecodeError)?;
    Ok((value, header))
}

/// The header of an envelope written for a type with this `fingerprint` by codec `C`.
fn read_header<C: Codec>(bytes: &[u8], fingerprint: u64) -> Result<Header, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError(format!(
            "{} bytes is shorter than the header",
            bytes.len()
        )));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(DecodeError(format!("format version {}", bytes[0])));
    }
    if bytes[1] != C::ID {
        return Err(DecodeError(format!(
            "codec {} (expected {})",
            bytes[1],
            C::ID
        )));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if word(2) != fingerprint {
        return Err(DecodeError("written for another type".into()));
    }
    if word(CHECKSUM_AT) != checksum_of(bytes) {
        return Err(DecodeError(
            "checksum mismatch: the bytes were damaged".into(),
        ));
    }
    let expires = word(10);
    let mut micros = [0u8; 4];
    micros.copy_from_slice(&bytes[18..22]);
    Ok(Header {
        expires_at_ms: (expires != 0).then_some(expires),
        compute_time: Duration::from_micros(u32::from_le_bytes(micros) as u64),
    })
}

/// Values the codec's tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    /// A recursive value: each level is a struct and a sequence (two levels of depth).
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    pub(crate) struct Tree {
        pub(crate) children: Vec<Tree>,
    }

    /// A tree `depth` levels of `Tree` deep, one child each.
    pub(crate) fn chain(depth: usize) -> Tree {
        let mut tree = Tree { children: vec![] };
        for _ in 1..depth {
            tree = Tree {
                children: vec![tree],
            };
        }
        tree
    }
}

#[cfg(test)]
/// The envelope and bincode's bounded reading (the default codec; with the `postcard` feature
/// values are read by postcard's own decoder, which these bounds do not cover).
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            expires_at_ms: Some(1_700_000_000_000),
            compute_time: Duration::from_micros(1234),
        }
    }

    #[test]
    fn round_trips_with_its_header() {
        let bytes = encode::<_, Bincode>(&("note".to_string(), 7u64), header()).unwrap();
        let (value, h) = decode::<(String, u64), Bincode>(&bytes).unwrap();
        assert_eq!(value, ("note".to_string(), 7));
        assert_eq!(h, header());
    }

    #[test]
    fn another_type_is_rejected() {
        let bytes = encode::<_, Bincode>(&7u64, header()).unwrap();
        assert!(decode::<u32, Bincode>(&bytes).is_err());
        assert!(decode::<i64, Bincode>(&bytes).is_err());
    }

    #[test]
    fn truncated_or_padded_payloads_are_rejected() {
        let bytes = encode::<_, Bincode>(&"hello".to_string(), header()).unwrap();
        assert!(decode::<String, Bincode>(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode::<String, Bincode>(&padded).is_err());
    }

    use fixtures::{chain, Tree};

    #[test]
    fn every_single_bit_flip_is_a_decode_error() {
        let values: Vec<(String, Vec<u64>)> = (0..8)
            .map(|i| ("a note's markup ü".repeat(i), (0..i as u64 * 5).collect()))
            .collect();
        let mut flips = 0;
        for value in &values {
            let bytes = encode::<_, Bincode>(value, header()).unwrap();
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let decoded = decode::<(String, Vec<u64>), Bincode>(&flipped);
                assert!(decoded.is_err(), "bit {bit} of {value:?}: {decoded:?}");
                flips += 1;
            }
        }
        assert!(flips > 3000, "{flips} flips");
    }

    #[test]
    fn entries_of_the_first_format_are_misses() {
        let mut bytes = encode::<_, Bincode>(&7u64, header()).unwrap();
        bytes[0] = 1;
        let error = decode::<u64, Bincode>(&bytes).unwrap_err();
        assert!(error.to_string().contains("format version 1"), "{error}");
    }

    #[test]
    fn the_fingerprint_covers_size_and_alignment() {
        // The same name cannot have two layouts in one build; types whose names agree up to
        // their generic argument show that layout moves the fingerprint at all.
        assert_ne!(fingerprint::<[u8; 2]>(), fingerprint::<[u8; 3]>());
        assert_ne!(fingerprint::<u32>(), fingerprint::<u64>());
        assert_eq!(fingerprint::<u32>(), fingerprint::<u32>());
    }

    #[test]
    fn a_value_too_deep_to_read_back_is_refused_at_write() {
        let deepest = chain(wire::MAX_DEPTH / 2);
        let bytes = encode::<_, Bincode>(&deepest, header()).unwrap();
        let back = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || decode::<Tree, Bincode>(&bytes).unwrap().0)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(back, deepest);
        let error = encode::<_, Bincode>(&chain(wire::MAX_DEPTH / 2 + 1), header());
        assert!(error.unwrap_err().contains("deeper than"));
    }

    proptest! {
        #[test]
        fn random_prefixes_of_valid_values_are_errors(
            v in proptest::collection::vec(".{0,30}", 0..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode::<_, Bincode>(&v, header()).unwrap();
            let cut = cut.index(bytes.len());
            prop_assert!(decode::<Vec<String>, Bincode>(&bytes[..cut]).is_err());
        }

        #[test]
        fn large_payloads_round_trip(v in proptest::collection::vec(any::<u8>(), 0..200_000)) {
            let bytes = encode::<_, Bincode>(&v, header()).unwrap();
            prop_assert_eq!(decode::<Vec<u8>, Bincode>(&bytes).unwrap().0, v);
        }

        #[test]
        fn nested_values_round_trip(v in proptest::collection::vec(
            proptest::collection::vec(proptest::option::of(".{0,5}"), 0..5), 0..10)
        ) {
            let bytes = encode::<_, Bincode>(&v, header()).unwrap();
            let (back, _) = decode::<Vec<Vec<Option<String>>>, Bincode>(&bytes).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn large_arbitrary_payloads_under_a_valid_header_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..65536)
        ) {
            let mut bytes = encode::<_, Bincode>(&Vec::<String>::new(), header()).unwrap();
            bytes.truncate(HEADER_LEN);
            bytes.extend_from_slice(&payload);
            reseal(&mut bytes);
            let _ = decode::<Vec<String>, Bincode>(&bytes);
            let _ = decode::<Vec<Tree>, Bincode>(&bytes);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<(String, Vec<u64>, Option<i32>), Bincode>(&bytes);
            let _ = decode::<String, Bincode>(&bytes);
        }

        #[test]
        fn a_valid_header_with_arbitrary_payload_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            let mut bytes = encode::<_, Bincode>(&Vec::<String>::new(), header()).unwrap();
            bytes.truncate(HEADER_LEN);
            bytes.extend_from_slice(&payload);
            let _ = decode::<Vec<String>, Bincode>(&bytes);
        }

        #[test]
        fn values_round_trip(v in proptest::collection::vec(".*", 0..8), n in any::<i64>()) {
            let bytes = encode::<_, Bincode>(&(v.clone(), n), header()).unwrap();
            let (back, _) = decode::<(Vec<String>, i64), Bincode>(&bytes).unwrap();
            prop_assert_eq!(back, (v, n));
        }
    }
}
