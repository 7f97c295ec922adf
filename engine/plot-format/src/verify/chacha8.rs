//! The ChaCha8 block function as chiapos uses it for F1 (`plot-format.md` §14.1): D. J.
//! Bernstein's original layout, with a 64-bit block counter in state words 12 (low) and 13
//! (high) and a 64-bit nonce, always zero, in words 14 and 15. The IETF variant (32-bit
//! counter, 96-bit nonce) agrees only below block 2^32 - 1, which F1 passes from k = 36 on.

/// "expand 32-byte k", the constants of a 256-bit key.
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// Bytes in one keystream block.
pub(super) const BLOCK_BYTES: usize = 64;

/// A 256-bit ChaCha8 key, kept as the eight little-endian state words it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key([u32; 8]);

impl Key {
    pub(super) fn new(bytes: &[u8; 32]) -> Self {
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Key(words)
    }

    /// Keystream block number `counter` (nonce zero), serialized little-endian.
    pub(super) fn block(&self, counter: u64) -> [u8; BLOCK_BYTES] {
        let mut input = [0u32; 16];
        input[..4].copy_from_slice(&SIGMA);
        input[4..12].copy_from_slice(&self.0);
        input[12] = counter as u32; // low half; truncation intended
        input[13] = (counter >> 32) as u32;
        // words 14 and 15: the zero nonce

        let mut x = input;
        for _ in 0..4 {
            // one double round = a column round and a diagonal round; 4 of them = 8 rounds
            quarter_round(&mut x, 0, 4, 8, 12);
            quarter_round(&mut x, 1, 5, 9, 13);
            quarter_round(&mut x, 2, 6, 10, 14);
            quarter_round(&mut x, 3, 7, 11, 15);
            quarter_round(&mut x, 0, 5, 10, 15);
            quarter_round(&mut x, 1, 6, 11, 12);
            quarter_round(&mut x, 2, 7, 8, 13);
            quarter_round(&mut x, 3, 4, 9, 14);
        }

        let mut out = [0u8; BLOCK_BYTES];
        for ((chunk, word), start) in out.chunks_exact_mut(4).zip(x).zip(input) {
            chunk.copy_from_slice(&word.wrapping_add(start).to_le_bytes());
        }
        out
    }
}

#[inline(always)]
fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::rand_core::{Rng, SeedableRng};
    use chacha20::ChaCha8Rng;

    fn reference(key: &[u8; 32], counter: u64) -> [u8; BLOCK_BYTES] {
        // ChaCha8Rng: DJB layout, 64-bit block counter, stream (nonce) 0.
        let mut rng = ChaCha8Rng::from_seed(*key);
        rng.set_block_pos(counter);
        let mut out = [0u8; BLOCK_BYTES];
        rng.fill_bytes(&mut out);
        out
    }

    #[test]
    fn keystream_equals_chacha20_crate_at_counter_edges() {
        let keys: [[u8; 32]; 3] = [
            [0u8; 32],
            core::array::from_fn(|i| i as u8),
            core::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(7)),
        ];
        let counters = [
            0,
            1,
            2,
            12_345,
            (1 << 32) - 2,
            (1 << 32) - 1,
            1 << 32,
            (1 << 32) + 1,
            99_999_999_999,
            50 << 44, // beyond anything F1 reaches (k = 50: below 2^50 * 50 / 512)
            u64::MAX,
        ];
        for key in &keys {
            let ours = Key::new(key);
            for &counter in &counters {
                assert_eq!(ours.block(counter), reference(key, counter), "counter {counter}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn keystream_equals_chacha20_crate(key in proptest::array::uniform32(proptest::prelude::any::<u8>()), counter: u64) {
            proptest::prop_assert_eq!(Key::new(&key).block(counter), reference(&key, counter));
        }
    }
}
