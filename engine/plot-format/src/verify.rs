//! The proof-of-space verifier and the arithmetic it shares with the prover
//! (`plot-format.md` §12 to §15): F1 (ChaCha8), Fx (BLAKE3), the matching function, the two
//! proof orderings, proof packing and the quality string.
//!
//! Everything works on fixed-size values on the stack: no table is precomputed (chiapos builds
//! a 3.7 MiB `L_targets` table; [`matches()`] solves for `m` directly), and the only heap
//! allocation is the `Vec` that [`pack_proof`] returns. [`validate_proof`] never panics,
//! whatever `k` and bytes it gets; the lower-level functions take a `k` the caller has already
//! checked and panic on a `k` outside 18..=50 (a programmer error).
//!
//! k = 50: chiapos cannot evaluate table 4 there (the end bit `k + 6 + 4k = 256` of the
//! metadata slice wraps to 0 in a `uint8_t`, §14.2, trap 23; a C++ build of its `FxCalculator`
//! dies with SIGSEGV on it), so chiapos cannot verify a k = 50 proof that gets past table 3.
//! This module follows the math (bits 56..256 of the hash) and accepts a correct k = 50 proof.
//!
//! Length: a proof must be exactly 8k bytes. chiapos' `ValidateProof` takes the length as a
//! `uint16_t`, so its Python binding also accepts a valid proof followed by 65536 * n extra
//! bytes; this verifier rejects that.

use sha2::{Digest, Sha256};

use crate::bits::get_bits;

mod chacha8;

/// x values in a proof (2^6: one leaf per table-1 entry of the 6-level tree).
pub const PROOF_XS: usize = 64;
/// F1/Fx outputs have `k + EXTRA_BITS` bits (`kExtraBits`).
pub const EXTRA_BITS: u8 = 6;
/// b groups per bucket of the matching function (`kB`, §14.3).
pub const MATCH_B: u64 = 119;
/// c groups per b group (`kC`).
pub const MATCH_C: u64 = 127;
/// y values per bucket (`kBC` = 15113).
pub const MATCH_BC: u64 = MATCH_B * MATCH_C;
/// Number of `m` values the matching function tries (`kExtraBitsPow`).
const MATCH_M: u64 = 1 << EXTRA_BITS;
/// Metadata width entering table t, in units of k (`kVectorLens`).
const VECTOR_LENS: [u8; 8] = [0, 0, 1, 2, 4, 4, 3, 2];
/// k accepted by the chiapos verifier (`kMinPlotSize`, `kMaxPlotSize`).
const K_MIN: u8 = 18;
const K_MAX: u8 = 50;

const _: () = assert!(MATCH_BC == 15113);
// at most one m can satisfy b(yR) == b(yL) + m (mod kB): what `matches` relies on
const _: () = assert!(MATCH_M < MATCH_B);
// the widest Fx input, 9k + 6 bits, fits the 576-bit buffer of `fx`; the widest metadata fits
const _: () = assert!(9 * K_MAX as u32 + EXTRA_BITS as u32 <= 576);
const _: () = assert!(4 * K_MAX as u32 <= Metadata::MAX_BITS);
// the last hash slice (table 4: bits k+6 .. 5k+6) stays inside BLAKE3's 256-bit output
const _: () = assert!(5 * K_MAX as u32 + EXTRA_BITS as u32 <= 256);

/// Why a proof is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("k = {k} is outside the range the verifier accepts (18..=50)")]
    KOutOfRange { k: u8 },
    #[error("proof is {found} bytes; 64 x values of k bits take exactly {expected}")]
    WrongLength { expected: usize, found: usize },
    #[error(
        "table {table}, pair {pair}: the left entry does not match the right one \
         (not in adjacent buckets, or no m satisfies the matching function)"
    )]
    NoMatch { table: u8, pair: usize },
    #[error("the proof's f7 (top k bits of its table-7 output) differs from the challenge's first k bits")]
    WrongChallenge,
}

/// Checks a full proof (§15) and returns its quality string (§12).
///
/// `proof` holds 64 x values of k bits in proof ordering, exactly 8k bytes. The checks run in
/// chiapos' order: k, length, then the 63 matches table by table (left to right), then f7
/// against the challenge; the first failure is reported.
pub fn validate_proof(
    plot_id: &[u8; 32],
    k: u8,
    challenge: &[u8; 32],
    proof: &[u8],
) -> Result<[u8; 32], VerifyError> {
    let xs = unpack_proof(k, proof)?;
    let f1 = F1::new(k, plot_id);
    let mut ys = [0u64; PROOF_XS / 2];
    let mut metas = [Metadata::EMPTY; PROOF_XS / 2];
    // Table 2 evaluates F1 pair by pair, so a bad proof is usually rejected after 2 F1 calls.
    for (pair, x) in xs.chunks_exact(2).enumerate() {
        let (y_left, y_right) = (f1.eval(x[0]), f1.eval(x[1]));
        if !matches(y_left, y_right) {
            return Err(VerifyError::NoMatch { table: 2, pair });
        }
        let (m_left, m_right) = (Metadata::from_x(x[0], k), Metadata::from_x(x[1], k));
        (ys[pair], metas[pair]) = fx(k, 2, y_left, &m_left, &m_right);
    }
    let mut entries = PROOF_XS / 2;
    for table in 3..=7u8 {
        entries /= 2;
        for pair in 0..entries {
            let (left, right) = (2 * pair, 2 * pair + 1);
            if !matches(ys[left], ys[right]) {
                return Err(VerifyError::NoMatch { table, pair });
            }
            let (y, meta) = fx(k, table, ys[left], &metas[left], &metas[right]);
            ys[pair] = y;
            metas[pair] = meta;
        }
    }
    let f7 = ys[0] >> EXTRA_BITS;
    if f7 != get_bits(challenge, 0, u32::from(k)) {
        return Err(VerifyError::WrongChallenge);
    }
    Ok(quality_from_proof(k, challenge, &xs))
}

/// The quality string of a proof given in proof ordering (`quality_from_proof` of §15): the
/// pair that the prover's walk (§12) reaches, found by sorting the proof into plot ordering.
///
/// # Panics
/// If k is outside 18..=50.
pub fn quality_from_proof(
    k: u8,
    challenge: &[u8; 32],
    xs_proof_order: &[u64; PROOF_XS],
) -> [u8; 32] {
    let plot = plot_order(xs_proof_order);
    let qi = usize::from(challenge[31] & 0x1F) * 2;
    quality_string(challenge, k, plot[qi], plot[qi + 1])
}

/// Proof ordering back to plot ordering (§15): at block sizes 1, 2, 4, ..., 32, each adjacent
/// pair of blocks is put in "smaller first" order, comparing blocks from their last element
/// backwards (trap 16). Equal blocks count as "not smaller" and are swapped (a no-op).
pub fn plot_order(xs_proof_order: &[u64; PROOF_XS]) -> [u64; PROOF_XS] {
    let mut xs = *xs_proof_order;
    let mut size = 1;
    while size < PROOF_XS {
        for chunk in xs.chunks_exact_mut(2 * size) {
            let (left, right) = chunk.split_at_mut(size);
            if !backwards_less(left, right) {
                left.swap_with_slice(right);
            }
        }
        size *= 2;
    }
    xs
}

/// `CompareProofBits`: the first difference from the end decides; equal is "not less".
fn backwards_less(left: &[u64], right: &[u64]) -> bool {
    for (l, r) in left.iter().rev().zip(right.iter().rev()) {
        if l != r {
            return l < r;
        }
    }
    false
}

/// Plot ordering to proof ordering (`ReorderProof`, §13.2): evaluates F1 and Fx bottom-up and
/// puts each pair in matching order (the entry with the smaller y first; equal y swaps).
/// Matches are not checked, so any 64 values give a permutation of themselves.
///
/// # Panics
/// If k is outside 18..=50.
pub fn reorder_proof(
    plot_id: &[u8; 32],
    k: u8,
    xs_plot_order: &[u64; PROOF_XS],
) -> [u64; PROOF_XS] {
    let f1 = F1::new(k, plot_id);
    let mut xs = *xs_plot_order;
    let mut ys = [0u64; PROOF_XS];
    let mut metas = [Metadata::EMPTY; PROOF_XS];
    for ((y, meta), &x) in ys.iter_mut().zip(metas.iter_mut()).zip(&xs) {
        *y = f1.eval(x);
        *meta = Metadata::from_x(x, k);
    }
    let mut entries = PROOF_XS;
    let mut block = 1; // x values under one entry of the current table
    for table in 2..=7u8 {
        entries /= 2;
        for pair in 0..entries {
            let (left, right) = (2 * pair, 2 * pair + 1);
            let (y, meta) = if ys[left] < ys[right] {
                fx(k, table, ys[left], &metas[left], &metas[right])
            } else {
                let (l, r) = xs[left * block..(right + 1) * block].split_at_mut(block);
                l.swap_with_slice(r);
                fx(k, table, ys[right], &metas[right], &metas[left])
            };
            ys[pair] = y;
            metas[pair] = meta;
        }
        block *= 2;
    }
    xs
}

/// Bytes of a packed proof: 64k bits = 8k bytes.
pub const fn proof_len(k: u8) -> usize {
    8 * k as usize
}

/// Packs 64 k-bit values back to back, MSB first, into 8k bytes (§13.3). Bits above the low k
/// of each value are ignored.
///
/// # Panics
/// If k is outside 18..=50.
pub fn pack_proof(k: u8, xs: &[u64; PROOF_XS]) -> Vec<u8> {
    assert_k(k);
    let mut out = Vec::with_capacity(proof_len(k));
    let k = u32::from(k);
    let mut acc: u128 = 0; // holds fewer than 8 pending bits between values
    let mut pending = 0u32;
    for &x in xs {
        acc = (acc << k) | u128::from(x & low_mask(k));
        pending += k;
        while pending >= 8 {
            pending -= 8;
            out.push((acc >> pending) as u8); // the next 8 bits; truncation intended
        }
        acc &= (1u128 << pending) - 1;
    }
    debug_assert_eq!(pending, 0, "64k bits are whole bytes");
    out
}

/// The 64 k-bit values of a packed proof (the inverse of [`pack_proof`]), after checking k
/// and the length.
pub fn unpack_proof(k: u8, proof: &[u8]) -> Result<[u64; PROOF_XS], VerifyError> {
    if !(K_MIN..=K_MAX).contains(&k) {
        return Err(VerifyError::KOutOfRange { k });
    }
    let expected = proof_len(k);
    if proof.len() != expected {
        return Err(VerifyError::WrongLength { expected, found: proof.len() });
    }
    let k = u32::from(k);
    let mut xs = [0u64; PROOF_XS];
    for (i, x) in (0u64..).zip(xs.iter_mut()) {
        *x = get_bits(proof, i * u64::from(k), k);
    }
    Ok(xs)
}

/// `SHA-256(challenge || pack([(x_small, k), (x_large, k)]))` (§12): the two values are packed
/// in the order given (the caller passes the smaller first, trap 15) into `ceil(2k / 8)` bytes.
///
/// # Panics
/// If k is outside 18..=50.
pub fn quality_string(challenge: &[u8; 32], k: u8, x_small: u64, x_large: u64) -> [u8; 32] {
    assert_k(k);
    let k = u32::from(k);
    let mask = low_mask(k);
    let pair = (u128::from(x_small & mask) << k) | u128::from(x_large & mask);
    let aligned = (pair << (128 - 2 * k)).to_be_bytes();
    let mut hasher = Sha256::new();
    hasher.update(challenge);
    hasher.update(&aligned[..(2 * k).div_ceil(8) as usize]);
    hasher.finalize().into()
}

/// F1 of one plot (§14.1): `F1(x)` = the k keystream bits at bit `x * k` of the ChaCha8
/// keystream keyed by `0x01 ++ plot_id[0..31]`, followed by the top 6 bits of x.
#[derive(Debug, Clone)]
pub struct F1 {
    k: u8,
    key: chacha8::Key,
}

impl F1 {
    /// # Panics
    /// If k is outside 18..=50.
    pub fn new(k: u8, plot_id: &[u8; 32]) -> Self {
        assert_k(k);
        let mut key = [0u8; 32];
        key[0] = 1; // the table index
        key[1..].copy_from_slice(&plot_id[..31]); // the id's last byte never enters F1 (trap 5)
        F1 { k, key: chacha8::Key::new(&key) }
    }

    pub fn k(&self) -> u8 {
        self.k
    }

    /// The (k+6)-bit F1 output of x. Bits of x above the low k are ignored.
    pub fn eval(&self, x: u64) -> u64 {
        let k = u32::from(self.k);
        let x = x & low_mask(k);
        let bit = x * u64::from(k); // < 2^50 * 50 < 2^56
        let counter = bit / 512;
        let offset = (bit % 512) as u32;
        let first = self.key.block(counter);
        let y = if offset + k <= 512 {
            get_bits(&first, u64::from(offset), k)
        } else {
            // the k bits span two blocks; counter + 1 < 2^47 cannot overflow
            let head = 512 - offset;
            let tail = k - head;
            let second = self.key.block(counter + 1);
            (get_bits(&first, u64::from(offset), head) << tail) | get_bits(&second, 0, tail)
        };
        (y << EXTRA_BITS) | (x >> (k - u32::from(EXTRA_BITS)))
    }
}

/// A metadata bit string (§14.2): up to 256 bits (a proof needs at most 4k = 200), MSB first,
/// left-aligned in four words: bit 0 of the string is the top bit of `words[0]`. Bits past
/// `bits` are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metadata {
    words: [u64; 4],
    bits: u16,
}

impl Metadata {
    pub const MAX_BITS: u32 = 256;
    /// The empty string (table 7's output metadata).
    pub const EMPTY: Metadata = Metadata { words: [0; 4], bits: 0 };

    /// Table 2's input metadata: x itself, k bits.
    pub fn from_x(x: u64, k: u8) -> Self {
        Metadata::from_u128(u128::from(x), u32::from(k).min(64))
    }

    /// The low `bits` bits of `value` (bits <= 128) as a bit string.
    pub fn from_u128(value: u128, bits: u32) -> Self {
        let bits = bits.min(128);
        if bits == 0 {
            return Metadata::EMPTY;
        }
        let aligned = value << (128 - bits);
        Metadata { words: [(aligned >> 64) as u64, aligned as u64, 0, 0], bits: bits as u16 }
    }

    /// The first `bits` bits (at most 256) of a big-endian bit string; bytes missing from
    /// `bytes` read as zero.
    pub fn from_bytes(bytes: &[u8], bits: u32) -> Self {
        let mut words = [0u64; 4];
        for (start, word) in (0u64..).step_by(64).zip(words.iter_mut()) {
            *word = get_bits(bytes, start, 64);
        }
        Metadata::truncated(words, bits)
    }

    /// Length in bits.
    pub fn bit_len(&self) -> u32 {
        u32::from(self.bits)
    }

    /// The value, if it has at most 128 bits.
    pub fn to_u128(&self) -> Option<u128> {
        match self.bits {
            0 => Some(0),
            1..=128 => {
                let wide = (u128::from(self.words[0]) << 64) | u128::from(self.words[1]);
                Some(wide >> (128 - u32::from(self.bits)))
            }
            _ => None,
        }
    }

    /// The bit string as chiapos' `ToBytes` writes it: MSB first, zero padded; the first
    /// `ceil(bit_len / 8)` bytes are meaningful.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The first `bits` bits of a left-aligned 256-bit string.
    fn truncated(words: [u64; 4], bits: u32) -> Self {
        let bits = bits.min(Self::MAX_BITS);
        let mut out = words;
        for (start, word) in (0u32..).step_by(64).zip(out.iter_mut()) {
            if bits <= start {
                *word = 0;
            } else if bits < start + 64 {
                *word &= !(u64::MAX >> (bits - start));
            }
        }
        Metadata { words: out, bits: bits as u16 }
    }

    /// `self ++ other`, cut at 256 bits.
    fn concat(&self, other: &Metadata) -> Self {
        let mut words = self.words;
        other.or_into(&mut words, self.bit_len());
        Metadata::truncated(words, self.bit_len() + other.bit_len())
    }

    /// ORs the string into the left-aligned bit string `dst` at bit `offset`; bits that fall
    /// past the end of `dst` are dropped.
    fn or_into(&self, dst: &mut [u64], offset: u32) {
        let first = (offset / 64) as usize;
        let shift = offset % 64;
        for (i, &word) in self.words.iter().enumerate() {
            if word == 0 {
                continue;
            }
            if let Some(d) = dst.get_mut(first + i) {
                *d |= word >> shift;
            }
            if shift != 0 {
                if let Some(d) = dst.get_mut(first + i + 1) {
                    *d |= word << (64 - shift);
                }
            }
        }
    }
}

/// Fx of §14.2 for table `table` in 2..=7: hashes `y_left ++ m_left ++ m_right` with BLAKE3 and
/// returns the (k+6)-bit output and the metadata for the next table (`m_left ++ m_right` for
/// tables 2 and 3, a slice of the hash for tables 4 to 6, empty for table 7).
///
/// The metadata are hashed at their own lengths, as chiapos does; a proof's metadata entering
/// table t have `kVectorLens[t] * k` bits (x values are k bits).
///
/// # Panics
/// If `table` is outside 2..=7 or k outside 18..=50.
pub fn fx(k: u8, table: u8, y_left: u64, m_left: &Metadata, m_right: &Metadata) -> (u64, Metadata) {
    assert!((2..=7).contains(&table), "Fx is defined for tables 2..=7, not {table}");
    assert_k(k);
    let y_bits = u32::from(k) + u32::from(EXTRA_BITS);
    debug_assert_eq!(m_left.bit_len(), u32::from(VECTOR_LENS[usize::from(table)]) * u32::from(k));
    debug_assert_eq!(m_right.bit_len(), m_left.bit_len());

    // 9 words = 576 bits: room for y (56) and two metadata of up to 256 bits each.
    let mut input = [0u64; 9];
    input[0] = (y_left & low_mask(y_bits)) << (64 - y_bits);
    m_left.or_into(&mut input, y_bits);
    m_right.or_into(&mut input, y_bits + m_left.bit_len());
    let input_bits = y_bits + m_left.bit_len() + m_right.bit_len();
    let mut bytes = [0u8; 72];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(input) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    let hash = blake3::hash(&bytes[..input_bits.div_ceil(8) as usize]);

    let mut h = [0u64; 4];
    for (word, chunk) in h.iter_mut().zip(hash.as_bytes().chunks_exact(8)) {
        *word = u64::from_be_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
    }
    let f = h[0] >> (64 - y_bits);
    let meta = match table {
        2 | 3 => m_left.concat(m_right),
        4..=6 => {
            // bits [k+6, k+6 + kVectorLens[t+1]*k) of the hash; at k = 50, table 4 takes
            // bits 56..256, exactly where chiapos' 8-bit end index wraps to 0.
            let out_bits = u32::from(VECTOR_LENS[usize::from(table) + 1]) * u32::from(k);
            let s = y_bits; // 24..=56, so both shifts below are in 1..64
            let shifted = [
                (h[0] << s) | (h[1] >> (64 - s)),
                (h[1] << s) | (h[2] >> (64 - s)),
                (h[2] << s) | (h[3] >> (64 - s)),
                h[3] << s,
            ];
            Metadata::truncated(shifted, out_bits)
        }
        _ => Metadata::EMPTY,
    };
    (f, meta)
}

/// The matching function of §14.3: `y_left` and `y_right` ((k+6)-bit values, in this order)
/// match when `bucket(y_right) == bucket(y_left) + 1` and, for some m in 0..64,
/// `b(y_right) == (b(y_left) + m) mod 119` and
/// `c(y_right) == ((2m + bucket(y_left) mod 2)^2 + c(y_left)) mod 127`.
///
/// Only `m = (b(y_right) - b(y_left)) mod 119` can satisfy the b condition, so that is the one
/// m tested (chiapos' table lookup finds the same single candidate).
pub fn matches(y_left: u64, y_right: u64) -> bool {
    let bucket_left = y_left / MATCH_BC;
    if y_right / MATCH_BC != bucket_left + 1 {
        return false;
    }
    let (rest_left, rest_right) = (y_left % MATCH_BC, y_right % MATCH_BC);
    let (b_left, c_left) = (rest_left / MATCH_C, rest_left % MATCH_C);
    let (b_right, c_right) = (rest_right / MATCH_C, rest_right % MATCH_C);
    let m = (b_right + MATCH_B - b_left) % MATCH_B;
    if m >= MATCH_M {
        return false;
    }
    let v = 2 * m + bucket_left % 2;
    c_right == (v * v + c_left) % MATCH_C
}

fn assert_k(k: u8) {
    assert!((K_MIN..=K_MAX).contains(&k), "k = {k} is outside 18..=50");
}

/// The low `n` bits set (n <= 64).
fn low_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::{get_bits_u128, BitWriter};
    use chacha20::rand_core::{Rng, SeedableRng};
    use chacha20::ChaCha8Rng;
    use proptest::prelude::*;

    /// F1 written the long way: two keystream blocks from the chacha20 crate, one bit slice.
    fn f1_reference(k: u8, id: &[u8; 32], x: u64) -> u64 {
        let k = u32::from(k);
        let mut key = [0u8; 32];
        key[0] = 1;
        key[1..].copy_from_slice(&id[..31]);
        let mut rng = ChaCha8Rng::from_seed(key);
        let bit = u128::from(x) * u128::from(k);
        rng.set_block_pos((bit / 512) as u64);
        let mut ks = [0u8; 128];
        rng.fill_bytes(&mut ks);
        let y = get_bits(&ks, (bit % 512) as u64, k);
        (y << 6) | (x >> (k - 6))
    }

    /// A bit string as (bytes, bit length), built with the crate's BitWriter.
    #[derive(Debug, Clone)]
    struct Bits(Vec<u8>, u64);

    impl Bits {
        fn random(seed: &[u8], bits: u64) -> Bits {
            let mut w = BitWriter::default();
            let mut left = bits;
            let mut i = 0;
            while left > 0 {
                let n = left.min(8) as u32;
                w.push(u128::from(seed[i % seed.len()] >> (8 - n)), n);
                left -= u64::from(n);
                i += 1;
            }
            Bits(w.into_bytes(), bits)
        }

        fn to_meta(&self) -> Metadata {
            let mut words = [0u64; 4];
            for (i, word) in words.iter_mut().enumerate() {
                *word = get_bits(&self.0, 64 * i as u64, 64);
            }
            let m = Metadata::truncated(words, self.1 as u32);
            assert_eq!(m.bit_len() as u64, self.1);
            m
        }
    }

    /// Fx written the long way from §14.2 with BitWriter and get_bits.
    fn fx_reference(k: u8, table: u8, y: u64, l: &Bits, r: &Bits) -> (u64, Bits) {
        let kk = u32::from(k);
        let mut w = BitWriter::default();
        w.push(u128::from(y), kk + 6);
        w.push_bits(&l.0, l.1);
        w.push_bits(&r.0, r.1);
        let hash = blake3::hash(&w.into_bytes());
        let h = hash.as_bytes();
        let f = get_bits(h, 0, kk + 6);
        let meta = match table {
            2 | 3 => {
                let mut c = BitWriter::default();
                c.push_bits(&l.0, l.1);
                c.push_bits(&r.0, r.1);
                Bits(c.into_bytes(), l.1 + r.1)
            }
            4..=6 => {
                let n = u64::from(VECTOR_LENS[usize::from(table) + 1]) * u64::from(k);
                let mut c = BitWriter::default();
                let mut done = 0;
                while done < n {
                    let step = (n - done).min(64) as u32;
                    c.push(u128::from(get_bits(h, u64::from(kk) + 6 + done, step)), step);
                    done += u64::from(step);
                }
                Bits(c.into_bytes(), n)
            }
            _ => Bits(Vec::new(), 0),
        };
        (f, meta)
    }

    /// The matching condition as chiapos' `L_targets` states it, trying all 64 m.
    fn matches_brute_force(yl: u64, yr: u64) -> bool {
        if yl / MATCH_BC + 1 != yr / MATCH_BC {
            return false;
        }
        let parity = (yl / MATCH_BC) % 2;
        let i = yl % MATCH_BC;
        let hits = (0..MATCH_M)
            .filter(|&m| {
                let target = ((i / MATCH_C + m) % MATCH_B) * MATCH_C
                    + ((2 * m + parity) * (2 * m + parity) + i) % MATCH_C;
                target == yr % MATCH_BC
            })
            .count();
        assert!(hits <= 1);
        hits == 1
    }

    fn id_from(seed: u64) -> [u8; 32] {
        core::array::from_fn(|i| {
            (seed.rotate_left(8 * i as u32) as u8) ^ (i as u8).wrapping_mul(37)
        })
    }

    #[test]
    fn f1_matches_the_reference_at_block_edges_and_large_counters() {
        let id = id_from(0x0123_4567_89ab_cdef);
        for k in [18u8, 19, 31, 32, 35, 36, 49, 50] {
            let f1 = F1::new(k, &id);
            let top = (1u64 << k) - 1;
            let mut xs = vec![0, 1, 2, 3, top, top - 1, top / 2, top / 3 + 7];
            // x values whose k bits straddle a 512-bit block boundary, and ones just after it
            for block in [1u64, 2, 1000, top / 512] {
                let x = block * 512 / u64::from(k);
                xs.extend([x.saturating_sub(1), x, x + 1]);
            }
            for x in xs {
                let x = x & top;
                assert_eq!(f1.eval(x), f1_reference(k, &id, x), "k {k} x {x}");
                assert!(f1.eval(x) < 1 << (k + 6));
            }
        }
        // k = 50: the block counter passes 2^32 (from x ~ 2^41 * 512 / 50)
        let f1 = F1::new(50, &id);
        let x = ((1u64 << 32) * 512 / 50) + 3;
        assert!(x * 50 / 512 >= 1 << 32);
        assert_eq!(f1.eval(x), f1_reference(50, &id, x));
        // bits above k are ignored; the id's last byte does not matter
        assert_eq!(f1.eval(x | 1 << 60), f1.eval(x));
        let mut other = id;
        other[31] ^= 0xFF;
        assert_eq!(F1::new(50, &other).eval(x), f1.eval(x));
    }

    #[test]
    fn metadata_helpers() {
        let m = Metadata::from_x(0b1011, 18);
        assert_eq!(m.bit_len(), 18);
        assert_eq!(m.to_u128(), Some(0b1011));
        let c = m.concat(&Metadata::from_x(5, 18));
        assert_eq!(c.to_u128(), Some((0b1011 << 18) | 5));
        assert_eq!(Metadata::EMPTY.to_u128(), Some(0));
        let wide = Metadata::truncated([u64::MAX; 4], 200);
        assert_eq!(wide.bit_len(), 200);
        assert_eq!(wide.to_u128(), None);
        assert_eq!(wide.to_bytes()[24], 0xFF);
        assert_eq!(wide.to_bytes()[25], 0);
        assert_eq!(Metadata::truncated([u64::MAX; 4], 256).to_bytes(), [0xFF; 32]);
        assert_eq!(Metadata::from_bytes(&[0xFF; 40], 200), wide);
        assert_eq!(Metadata::from_bytes(&[0xAB, 0xCD], 12).to_u128(), Some(0xABC));
        assert_eq!(Metadata::from_bytes(&[0xAB], 12).to_u128(), Some(0xAB0));
    }

    #[test]
    fn pack_examples() {
        let mut xs = [0u64; PROOF_XS];
        xs[0] = (1 << 18) - 1;
        xs[63] = 1;
        let packed = pack_proof(18, &xs);
        assert_eq!(packed.len(), 144);
        assert_eq!(&packed[..3], &[0xFF, 0xFF, 0xC0]);
        assert_eq!(packed[143], 1);
        assert_eq!(unpack_proof(18, &packed), Ok(xs));
    }

    #[test]
    fn rejects_bad_k_and_length_without_panicking() {
        let id = [7u8; 32];
        let ch = [9u8; 32];
        for k in [0u8, 1, 6, 17, 51, 64, 255] {
            let proof = vec![0u8; 8 * usize::from(k)];
            assert_eq!(validate_proof(&id, k, &ch, &proof), Err(VerifyError::KOutOfRange { k }));
        }
        for k in [18u8, 32, 50] {
            let n = proof_len(k);
            for len in [0, 1, n - 1, n + 1, 2 * n, 65536 + n] {
                assert_eq!(
                    validate_proof(&id, k, &ch, &vec![0xA5; len]),
                    Err(VerifyError::WrongLength { expected: n, found: len })
                );
            }
        }
        // all zeros: every x = 0, so F1 values are equal and nothing matches
        assert_eq!(
            validate_proof(&id, 18, &ch, &[0u8; 144]),
            Err(VerifyError::NoMatch { table: 2, pair: 0 })
        );
        let e = VerifyError::NoMatch { table: 3, pair: 5 }.to_string();
        assert!(e.contains("table 3, pair 5"), "{e}");
    }

    #[test]
    fn plot_order_sorts_blocks_from_their_last_element() {
        let mut xs: [u64; PROOF_XS] = core::array::from_fn(|i| 1000 - i as u64);
        let sorted = plot_order(&xs);
        // every pair smaller first; blocks ordered by their last (largest-position) element
        for pair in sorted.chunks_exact(2) {
            assert!(pair[0] <= pair[1]);
        }
        assert_eq!(plot_order(&sorted), sorted, "sorting is idempotent");
        xs.sort_unstable();
        assert_eq!(sorted, xs);
        assert!(backwards_less(&[5, 1], &[0, 2]));
        assert!(backwards_less(&[0, 2], &[5, 2]));
        assert!(!backwards_less(&[3, 3], &[3, 3]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn f1_matches_the_reference(k in K_MIN..=K_MAX, x: u64, seed: u64) {
            let id = id_from(seed);
            let x = x & low_mask(u32::from(k));
            prop_assert_eq!(F1::new(k, &id).eval(x), f1_reference(k, &id, x));
        }

        #[test]
        fn fx_matches_the_reference(
            k in K_MIN..=K_MAX,
            table in 2u8..=7,
            y: u64,
            left in proptest::collection::vec(any::<u8>(), 32),
            right in proptest::collection::vec(any::<u8>(), 32),
        ) {
            let w = u64::from(VECTOR_LENS[usize::from(table)]) * u64::from(k);
            let y = y & low_mask(u32::from(k) + 6);
            let (l, r) = (Bits::random(&left, w), Bits::random(&right, w));
            let (f, meta) = fx(k, table, y, &l.to_meta(), &r.to_meta());
            let (f_ref, meta_ref) = fx_reference(k, table, y, &l, &r);
            prop_assert_eq!(f, f_ref);
            prop_assert!(f < 1 << (k + 6));
            prop_assert_eq!(meta, meta_ref.to_meta());
            let expected_bits = if table == 7 { 0 } else { u32::from(VECTOR_LENS[usize::from(table) + 1]) * u32::from(k) };
            prop_assert_eq!(meta.bit_len(), expected_bits);
        }

        #[test]
        fn matches_equals_brute_force_on_random_pairs(yl in 0u64..1 << 56, yr in 0u64..1 << 56) {
            prop_assert_eq!(matches(yl, yr), matches_brute_force(yl, yr));
        }

        #[test]
        fn matches_equals_brute_force_on_adjacent_buckets(yl in 0u64..1 << 56, rest in 0..MATCH_BC) {
            let yr = (yl / MATCH_BC + 1) * MATCH_BC + rest;
            prop_assert_eq!(matches(yl, yr), matches_brute_force(yl, yr));
            prop_assert!(!matches(yr, yl) && !matches_brute_force(yr, yl));
        }

        #[test]
        fn matches_accepts_every_target(yl in 0u64..1 << 56, m in 0..MATCH_M) {
            let parity = (yl / MATCH_BC) % 2;
            let i = yl % MATCH_BC;
            let target = ((i / MATCH_C + m) % MATCH_B) * MATCH_C
                + ((2 * m + parity) * (2 * m + parity) + i) % MATCH_C;
            let yr = (yl / MATCH_BC + 1) * MATCH_BC + target;
            prop_assert!(matches(yl, yr));
            prop_assert!(matches_brute_force(yl, yr));
            // the same remainder two buckets up, or in the same bucket, never matches
            prop_assert!(!matches(yl, yr + MATCH_BC));
            prop_assert!(!matches(yl, yr - MATCH_BC));
        }

        #[test]
        fn matches_never_panics(yl: u64, yr: u64) {
            let _ = matches(yl, yr);
        }

        #[test]
        fn pack_unpack_round_trip(k in K_MIN..=K_MAX, raw in proptest::array::uniform32(any::<u64>()), raw2 in proptest::array::uniform32(any::<u64>())) {
            let mask = low_mask(u32::from(k));
            let xs: [u64; PROOF_XS] = core::array::from_fn(|i| if i < 32 { raw[i] } else { raw2[i - 32] } & mask);
            let packed = pack_proof(k, &xs);
            prop_assert_eq!(packed.len(), proof_len(k));
            let mut w = BitWriter::default();
            for &x in &xs {
                w.push(u128::from(x), u32::from(k));
            }
            prop_assert_eq!(&packed, &w.into_bytes());
            prop_assert_eq!(unpack_proof(k, &packed), Ok(xs));
            for (i, &x) in xs.iter().enumerate() {
                prop_assert_eq!(get_bits(&packed, i as u64 * u64::from(k), u32::from(k)), x);
            }
        }

        #[test]
        fn quality_string_hashes_the_packed_pair(k in K_MIN..=K_MAX, a: u64, b: u64, challenge in proptest::array::uniform32(any::<u8>())) {
            let mask = low_mask(u32::from(k));
            let (a, b) = (a & mask, b & mask);
            let mut w = BitWriter::default();
            w.push(u128::from(a), u32::from(k));
            w.push(u128::from(b), u32::from(k));
            let packed = w.into_bytes();
            prop_assert_eq!(get_bits_u128(&packed, 0, 2 * u32::from(k)), (u128::from(a) << k) | u128::from(b));
            let mut hasher = Sha256::new();
            hasher.update(challenge);
            hasher.update(&packed);
            let expected: [u8; 32] = hasher.finalize().into();
            prop_assert_eq!(quality_string(&challenge, k, a, b), expected);
        }

        #[test]
        fn reorder_proof_permutes_its_input(k in K_MIN..=K_MAX, seed: u64, raw in proptest::array::uniform32(any::<u64>())) {
            let mask = low_mask(u32::from(k));
            let xs: [u64; PROOF_XS] = core::array::from_fn(|i| raw[i % 32].rotate_left(i as u32) & mask);
            let mut out = reorder_proof(&id_from(seed), k, &xs);
            let mut input = xs;
            out.sort_unstable();
            input.sort_unstable();
            prop_assert_eq!(out, input);
        }

        #[test]
        fn validate_proof_never_panics_on_random_bytes(k in 0u8..=60, seed: u64, bytes in proptest::collection::vec(any::<u8>(), 0..500), challenge in proptest::array::uniform32(any::<u8>())) {
            let _ = validate_proof(&id_from(seed), k, &challenge, &bytes);
        }

        #[test]
        fn validate_proof_rejects_random_proofs_of_the_right_length(k in K_MIN..=K_MAX, seed: u64, fill in proptest::collection::vec(any::<u8>(), 400), challenge in proptest::array::uniform32(any::<u8>())) {
            let proof = &fill[..proof_len(k)];
            let verdict = validate_proof(&id_from(seed), k, &challenge, proof);
            prop_assert!(matches!(verdict, Err(VerifyError::NoMatch { .. })), "{:?}", verdict);
        }
    }
}
