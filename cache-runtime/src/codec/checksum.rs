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

/// The checksum of `parts` read one after the other, as if they were one slice.
pub(crate) fn of(parts: &[&[u8]]) -> u64 {
    let mut lanes = SEEDS;
    let mut lane = 0;
    let mut len = 0usize;
    // Bytes carried over from the end of one part to the start of the next.
    let mut carry = [0u8; 8];
    let mut carried = 0;
    for part in parts {
        len += part.len();
        let mut rest: &[u8] = part;
        if carried > 0 {
            let take = (8 - carried).min(rest.len());
            carry[carried..carried + take].copy_from_slice(&rest[..take]);
            carried += take;
            rest = &rest[take..];
            if carried < 8 {
                continue;
            }
            lanes[lane] = mix(lanes[lane] ^ word(&carry));
            lane = (lane + 1) % 4;
        }
        let mut blocks = rest.chunks_exact(32);
        for block in &mut blocks {
            // The lane order does not matter for the guarantee; starting from `lane` keeps
            // the result independent of how the input was split into parts.
            for i in 0..4 {
                let at = (lane + i) % 4;
                lanes[at] = mix(lanes[at] ^ word(&block[i * 8..i * 8 + 8]));
            }
        }
        let mut words = blocks.remainder().chunks_exact(8);
        for w in &mut words {
            lanes[lane] = mix(lanes[lane] ^ word(w));
            lane = (lane + 1) % 4;
        }
        let tail = words.remainder();
        carry[..tail.len()].copy_from_slice(tail);
        carried = tail.len();
    }
    if carried > 0 {
        carry[carried..].fill(0);
        lanes[lane] = mix(lanes[lane] ^ word(&carry));
    }
    let mut h = mix(lanes[0] ^ len as u64);
    for lane in &lanes[1..] {
        h = mix(h ^ lane);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_bit_flip_is_caught() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 100] {
            let data: Vec<u8> = (0..len as u32).map(|i| (i * 37 + 11) as u8).collect();
            let base = of(&[&data]);
            for bit in 0..len * 8 {
                let mut flipped = data.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_ne!(of(&[&flipped]), base, "len {len}, bit {bit}");
            }
        }
    }

    #[test]
    fn the_split_into_parts_does_not_matter() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 13) as u8).collect();
        let whole = of(&[&data]);
        for cut in [0, 1, 7, 8, 22, 30, 31, 32, 33, 64, 199, 200] {
            assert_eq!(of(&[&data[..cut], &data[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn length_counts() {
        assert_ne!(of(&[&[0u8; 8]]), of(&[&[0u8; 7]]));
        assert_ne!(of(&[&[]]), of(&[&[0u8]]));
    }
}
