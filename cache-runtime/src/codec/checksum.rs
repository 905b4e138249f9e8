//! The envelope's integrity check: a 64-bit checksum over the header and the payload.
//!
//! Four lanes each fold every fourth 8-byte word into their state with `state = mix(state ^
//! word)`, where `mix` (multiply by an odd constant, then xor-shift) is a bijection. For a
//! fixed state, a step is therefore one-to-one in its word, and every later step is one-to-one
//! in its state: two inputs of the same length that differ inside one word always end in
//! different lanes, and the lanes are folded together the same way. So every error confined to
//! one aligned 8-byte word (any single-bit flip, any byte changed) is caught with certainty,
//! and other corruption escapes with a chance of about 2⁻⁶⁴. The length is folded in last, so
//! a truncated or padded value is caught too. It is not a defence against someone who can
//! write to the store on purpose (they can write a valid envelope), only against damage.

const K: u64 = 0x9e37_79b9_7f4a_7c15;
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

#[inline(always)]
fn mix(state: u64) -> u64 {
    let x = state.wrapping_mul(K);
    x ^ (x >> 29)
}

#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// The checksum of an envelope's `header` (22 bytes, without the checksum itself) and its
/// `payload`: the payload's words go round the four lanes, 32 bytes at a time, then its last
/// partial word (zero-padded), then the header's three words.
#[inline]
pub(crate) fn of(header: &[u8; 22], payload: &[u8]) -> u64 {
    let mut lanes = SEEDS;
    let mut blocks = payload.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = mix(*lane ^ word(w));
        }
    }
    let mut lane = 0;
    for w in blocks.remainder().chunks(8) {
        lanes[lane] = mix(lanes[lane] ^ word(w));
        lane += 1;
    }
    for w in header.chunks(8) {
        lanes[lane % 4] = mix(lanes[lane % 4] ^ word(w));
        lane += 1;
    }
    let mut h = mix(lanes[0] ^ payload.len() as u64);
    for lane in &lanes[1..] {
        h = mix(h ^ lane);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: [u8; 22] = [3; 22];

    #[test]
    fn every_single_bit_flip_is_caught() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 100] {
            let data: Vec<u8> = (0..len as u32).map(|i| (i * 37 + 11) as u8).collect();
            let base = of(&HEADER, &data);
            for bit in 0..len * 8 {
                let mut flipped = data.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_ne!(of(&HEADER, &flipped), base, "len {len}, bit {bit}");
            }
            for bit in 0..22 * 8 {
                let mut header = HEADER;
                header[bit / 8] ^= 1 << (bit % 8);
                assert_ne!(of(&header, &data), base, "len {len}, header bit {bit}");
            }
        }
    }

    #[test]
    fn length_counts() {
        assert_ne!(of(&HEADER, &[0u8; 8]), of(&HEADER, &[0u8; 7]));
        assert_ne!(of(&HEADER, &[]), of(&HEADER, &[0u8]));
    }
}
