//! Bit strings as chiapos sees them: one long string read most-significant-bit first
//! (`plot-format.md` §2.1). Reads past the end of a buffer see zero bits, so a field at the
//! end of a park never needs padded buffers (trap 20).

/// The `n`-bit field (n <= 64) starting at bit `offset` of `buf`, MSB first.
/// Bits past the end of `buf` read as zero.
pub fn get_bits(buf: &[u8], offset: u64, n: u32) -> u64 {
    debug_assert!(n <= 64);
    if n == 0 {
        return 0;
    }
    let first = (offset / 8) as usize;
    let shift = (offset % 8) as u32;
    // Fast path: the field and its leading bits fit in one 8-byte big-endian word.
    if shift + n <= 64 {
        if let Some(word) = buf.get(first..first + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            return (u64::from_be_bytes(w) << shift) >> (64 - n);
        }
    }
    // 16 bytes cover any 64-bit field at any bit offset (64 + 7 bits).
    let mut window = [0u8; 16];
    if first < buf.len() {
        let end = buf.len().min(first + 16);
        window[..end - first].copy_from_slice(&buf[first..end]);
    }
    let wide = u128::from_be_bytes(window);
    ((wide << shift) >> (128 - n)) as u64
}

/// The `n`-bit field (n <= 128) starting at bit `offset`, MSB first, as a `u128`.
pub fn get_bits_u128(buf: &[u8], offset: u64, n: u32) -> u128 {
    debug_assert!(n <= 128);
    if n <= 64 {
        return u128::from(get_bits(buf, offset, n));
    }
    let high = u128::from(get_bits(buf, offset, n - 64));
    let low = u128::from(get_bits(buf, offset + u64::from(n - 64), 64));
    (high << 64) | low
}

/// Appends fields MSB first, back to back, and pads the last byte with zero bits.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    pub fn with_capacity_bits(bits: usize) -> Self {
        BitWriter { bytes: Vec::with_capacity(bits.div_ceil(8)), bits: 0 }
    }

    /// Appends the low `width` bits of `value` (width <= 128), MSB first.
    pub fn push(&mut self, value: u128, width: u32) {
        debug_assert!(width <= 128);
        debug_assert!(width == 128 || value >> width == 0, "value wider than its field");
        for i in (0..width).rev() {
            let bit = ((value >> i) & 1) as u8;
            let byte = (self.bits / 8) as usize;
            if byte == self.bytes.len() {
                self.bytes.push(0);
            }
            self.bytes[byte] |= bit << (7 - (self.bits % 8));
            self.bits += 1;
        }
    }

    /// Appends every bit of `other` (its exact bit length, not its padding).
    pub fn push_bits(&mut self, other: &[u8], bit_len: u64) {
        let mut done = 0;
        while done < bit_len {
            let n = (bit_len - done).min(64) as u32;
            self.push(u128::from(get_bits(other, done, n)), n);
            done += u64::from(n);
        }
    }

    pub fn bit_len(&self) -> u64 {
        self.bits
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// `ByteAlign(n) / 8`: bytes needed for `n` bits.
pub const fn bytes_for_bits(n: u64) -> u64 {
    n.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_msb_first_across_bytes() {
        let buf = [0b1010_1100, 0b0101_0011];
        assert_eq!(get_bits(&buf, 0, 4), 0b1010);
        assert_eq!(get_bits(&buf, 4, 8), 0b1100_0101);
        assert_eq!(get_bits(&buf, 14, 2), 0b11);
        // past the end reads zeros
        assert_eq!(get_bits(&buf, 12, 8), 0b0011_0000);
        assert_eq!(get_bits(&buf, 100, 8), 0);
    }

    proptest! {
        #[test]
        fn writer_and_reader_agree(fields in proptest::collection::vec((any::<u128>(), 1u32..=128), 1..20)) {
            let mut w = BitWriter::default();
            let mut expect = Vec::new();
            for (v, width) in &fields {
                let v = if *width == 128 { *v } else { v & ((1u128 << width) - 1) };
                w.push(v, *width);
                expect.push((v, *width));
            }
            let total = w.bit_len();
            let bytes = w.into_bytes();
            prop_assert_eq!(bytes.len() as u64, bytes_for_bits(total));
            let mut off = 0u64;
            for (v, width) in expect {
                prop_assert_eq!(get_bits_u128(&bytes, off, width), v);
                off += u64::from(width);
            }
        }
    }
}
