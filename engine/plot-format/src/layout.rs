//! Sizes and offsets of a v1 plot, all derived from k (`plot-format.md` §3, §6.1, §9, §10).

use crate::bits::bytes_for_bits;

/// Entries per park in tables 1..7.
pub const ENTRIES_PER_PARK: u64 = 2048;
/// f7 entries per C1 checkpoint (and per C3 park).
pub const CHECKPOINT1_INTERVAL: u64 = 10_000;
/// C1 entries per C2 checkpoint.
pub const CHECKPOINT2_INTERVAL: u64 = 10_000;
/// Stubs are `k - STUB_MINUS_BITS` bits wide.
pub const STUB_MINUS_BITS: u8 = 3;
/// The k values chiapos accepts.
pub const K_MIN: u8 = 18;
pub const K_MAX: u8 = 50;
/// Deltas per park (the first entry is the checkpoint).
pub const DELTAS_PER_PARK: usize = ENTRIES_PER_PARK as usize - 1;
/// Deltas per C3 park, as chiapos sizes its decode buffer.
pub const C3_DELTAS_MAX: usize = CHECKPOINT1_INTERVAL as usize;

/// Byte geometry of a plot of size k. Cheap to copy; every length is bounded by k alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    k: u8,
}

impl Geometry {
    /// `k` must already be checked to lie in `K_MIN..=K_MAX`.
    pub const fn new(k: u8) -> Self {
        Geometry { k }
    }

    pub const fn k(self) -> u8 {
        self.k
    }

    pub const fn line_point_bytes(self) -> u64 {
        bytes_for_bits(2 * self.k as u64)
    }

    pub const fn stub_bits(self) -> u32 {
        (self.k - STUB_MINUS_BITS) as u32
    }

    pub const fn stubs_bytes(self) -> u64 {
        bytes_for_bits(DELTAS_PER_PARK as u64 * self.stub_bits() as u64)
    }

    /// The delta budget of a park, its 2-byte size prefix included. chiapos computes
    /// `ByteAlign(trunc(2047 * 5.6)) / 8` and `ByteAlign(trunc(2047 * 3.5)) / 8` (trap 3).
    pub const fn deltas_bytes(table: u8) -> u64 {
        if table == 1 {
            1433
        } else {
            896
        }
    }

    /// Park size of table 1..=6.
    pub const fn park_bytes(self, table: u8) -> u64 {
        self.line_point_bytes() + self.stubs_bytes() + Self::deltas_bytes(table)
    }

    pub const fn p7_park_bytes(self) -> u64 {
        bytes_for_bits((self.k as u64 + 1) * ENTRIES_PER_PARK)
    }

    /// One C1/C2 entry: k bits, byte aligned.
    pub const fn checkpoint_entry_bytes(self) -> u64 {
        bytes_for_bits(self.k as u64)
    }

    /// C3 parks are 10000 bytes below k = 20 (trap 4).
    pub const fn c3_park_bytes(self) -> u64 {
        if self.k < 20 {
            10_000
        } else {
            bytes_for_bits((2.4 * CHECKPOINT1_INTERVAL as f64) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formulas of §6.1 evaluated independently (the table of §6.1 is derived from them).
    #[test]
    fn park_sizes_follow_the_formulas() {
        for k in K_MIN..=K_MAX {
            let g = Geometry::new(k);
            let k64 = u64::from(k);
            assert_eq!(g.line_point_bytes(), (2 * k64).div_ceil(8));
            assert_eq!(g.stubs_bytes(), (2047 * (k64 - 3)).div_ceil(8));
            let t1 = ((2047.0 * 5.6) as u64).div_ceil(8);
            let t2 = ((2047.0 * 3.5) as u64).div_ceil(8);
            assert_eq!(g.park_bytes(1), g.line_point_bytes() + g.stubs_bytes() + t1);
            assert_eq!(g.park_bytes(4), g.line_point_bytes() + g.stubs_bytes() + t2);
            assert_eq!(g.p7_park_bytes(), (k64 + 1) * 256);
            assert_eq!(g.c3_park_bytes(), if k < 20 { 10_000 } else { 3000 });
        }
    }
}
