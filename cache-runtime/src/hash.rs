//! A fast, non-cryptographic hasher for the crate's own maps (L1 and preload scopes).
//!
//! The keys it hashes are our own encoded argument strings, not text an attacker chooses
//! for a public hash map, and SipHash (std's and moka's default) was a visible share of
//! every L1 access and of a scope's bookkeeping. It mixes one 8-byte word at a time, the way
//! rustc's FxHash does.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FastHasher`]s; all start from the same state.
#[derive(Clone, Copy, Default)]
pub(crate) struct FastHash;

/// The hasher: rotate, xor a word, multiply.
#[derive(Default)]
pub(crate) struct FastHasher(u64);

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher::default()
    }
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hash of `bytes` from a starting state `seed` (the front tables' probes).
#[inline]
pub(crate) fn of_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut hasher = FastHasher(seed);
    hasher.write(bytes);
    hasher.finish()
}

/// The hash of `words` from a starting state `seed`: the same as [`of_bytes`] of their
/// little-endian bytes, without going through bytes.
#[inline]
pub(crate) fn of_words(seed: u64, words: &[u64]) -> u64 {
    let mut hasher = FastHasher(seed);
    for &word in words {
        hasher.mix(word);
    }
    hasher.finish()
}

impl FastHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29) ^ (self.0 >> 47)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> u64 {
        let mut h = FastHash.build_hasher();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn words_hash_as_their_bytes() {
        let words = [7u64, u64::MAX, 0x0102_0304_0506_0708];
        for n in 0..=words.len() {
            let bytes: Vec<u8> = words[..n].iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(of_words(n as u64, &words[..n]), of_bytes(n as u64, &bytes));
        }
    }

    #[test]
    fn every_byte_counts() {
        // Short, exactly one word, and a word plus a tail; then a change in each position.
        for text in ["7", "12345678", "123456789abc"] {
            let base = hash(text.as_bytes());
            for at in 0..text.len() {
                let mut changed = text.as_bytes().to_vec();
                changed[at] ^= 1;
                assert_ne!(hash(&changed), base, "{text:?} at {at}");
            }
        }
    }
}
