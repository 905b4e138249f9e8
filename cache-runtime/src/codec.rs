//! How values are stored in Redis: a small envelope header followed by a serde payload.
//!
//! ```text
//! offset  size  field
//! 0       1     format version (currently 1)
//! 1       1     codec id (1 = bincode 2, 2 = postcard)
//! 2       8     fingerprint of the value's Rust type (FNV-1a of its type name), little endian
//! 10      8     expiry, milliseconds since the Unix epoch (0 = never), little endian
//! 18      4     how long the body took, microseconds, little endian
//! 22      ..    payload
//! ```
//!
//! Anything that does not match — another format, another codec, another type (a changed
//! return type), a truncated or padded payload — is a [`DecodeError`], which the read path
//! treats as a miss and then overwrites. Decoding never panics on any input.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 22;

/// A serde format that values are written with.
pub trait Codec {
    /// Stored in the envelope so bytes written by another codec are recognised.
    const ID: u8;
    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes a value that must take up all of `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;
}

/// bincode 2.x through its serde API, standard configuration.
pub struct Bincode;

/// Largest value bincode may claim while decoding: Redis' own limit on a string value.
const BINCODE_LIMIT: usize = 512 * 1024 * 1024;

impl Codec for Bincode {
    const ID: u8 = 1;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        let config = bincode::config::standard().with_limit::<BINCODE_LIMIT>();
        let bytes = bincode::serde::encode_to_vec(value, config).map_err(|e| e.to_string())?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let config = bincode::config::standard().with_limit::<BINCODE_LIMIT>();
        let (value, read) =
            bincode::serde::decode_from_slice(bytes, config).map_err(|e| e.to_string())?;
        if read != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - read));
        }
        Ok(value)
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

/// A stable fingerprint of `T`'s type (FNV-1a over its type name).
pub fn fingerprint<T: ?Sized>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Encodes `value` with its envelope.
pub fn encode<T: Serialize, C: Codec>(value: &T, header: Header) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    out.push(C::ID);
    out.extend_from_slice(&fingerprint::<T>().to_le_bytes());
    out.extend_from_slice(&header.expires_at_ms.unwrap_or(0).to_le_bytes());
    let micros = header.compute_time.as_micros().min(u32::MAX as u128) as u32;
    out.extend_from_slice(&micros.to_le_bytes());
    C::encode(value, &mut out)?;
    Ok(out)
}

/// Decodes bytes written by [`encode`] for the same type and codec.
pub fn decode<T: DeserializeOwned, C: Codec>(bytes: &[u8]) -> Result<(T, Header), DecodeError> {
    let header = read_header::<T, C>(bytes)?;
    let value = C::decode(&bytes[HEADER_LEN..]).map_err(DecodeError)?;
    Ok((value, header))
}

fn read_header<T, C: Codec>(bytes: &[u8]) -> Result<Header, DecodeError> {
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
    if word(2) != fingerprint::<T>() {
        return Err(DecodeError("written for another type".into()));
    }
    let expires = word(10);
    let mut micros = [0u8; 4];
    micros.copy_from_slice(&bytes[18..22]);
    Ok(Header {
        expires_at_ms: (expires != 0).then_some(expires),
        compute_time: Duration::from_micros(u32::from_le_bytes(micros) as u64),
    })
}

#[cfg(test)]
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
        let bytes = encode::<_, DefaultCodec>(&("note".to_string(), 7u64), header()).unwrap();
        let (value, h) = decode::<(String, u64), DefaultCodec>(&bytes).unwrap();
        assert_eq!(value, ("note".to_string(), 7));
        assert_eq!(h, header());
    }

    #[test]
    fn another_type_is_rejected() {
        let bytes = encode::<_, DefaultCodec>(&7u64, header()).unwrap();
        assert!(decode::<u32, DefaultCodec>(&bytes).is_err());
        assert!(decode::<i64, DefaultCodec>(&bytes).is_err());
    }

    #[test]
    fn truncated_or_padded_payloads_are_rejected() {
        let bytes = encode::<_, DefaultCodec>(&"hello".to_string(), header()).unwrap();
        assert!(decode::<String, DefaultCodec>(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode::<String, DefaultCodec>(&padded).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<(String, Vec<u64>, Option<i32>), DefaultCodec>(&bytes);
            let _ = decode::<String, DefaultCodec>(&bytes);
        }

        #[test]
        fn a_valid_header_with_arbitrary_payload_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            let mut bytes = encode::<_, DefaultCodec>(&Vec::<String>::new(), header()).unwrap();
            bytes.truncate(HEADER_LEN);
            bytes.extend_from_slice(&payload);
            let _ = decode::<Vec<String>, DefaultCodec>(&bytes);
        }

        #[test]
        fn values_round_trip(v in proptest::collection::vec(".*", 0..8), n in any::<i64>()) {
            let bytes = encode::<_, DefaultCodec>(&(v.clone(), n), header()).unwrap();
            let (back, _) = decode::<(Vec<String>, i64), DefaultCodec>(&bytes).unwrap();
            prop_assert_eq!(back, (v, n));
        }
    }
}
