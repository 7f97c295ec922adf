//! FSE (tANS) decoding of park deltas and C3 deltas, bit-compatible with the FSE library that
//! chiapos bundles (`plot-format.md` §8).
//!
//! A plot stores no decoding tables: each one is rebuilt from its R value (§8.1 normalized
//! counts, §8.2 table), once per process, and shared by every plot (§8.4).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::OnceLock;

/// chiapos compiles FSE with `FSE_MAX_MEMORY_USAGE = 16`, i.e. 2^14 states.
const TABLE_LOG: u32 = 14;
const TABLE_SIZE: usize = 1 << TABLE_LOG;
const STATE_MASK: usize = TABLE_SIZE - 1;

/// The distinct R values: parks of tables 1..6 (`kRValues`; tables 2 and 3 share 2.75),
/// then C3. Tables are keyed by R, as chiapos' cache is, so 2 and 3 share one table.
const R_VALUES: [f64; 6] = [4.7, 2.75, 2.7, 2.6, 2.45, 1.0];
const C3_INDEX: usize = 5;

static TABLES: [OnceLock<DTable>; R_VALUES.len()] = [const { OnceLock::new() }; R_VALUES.len()];

/// One decoding table (2^14 cells) for one R value.
pub struct DTable {
    /// A fixed-size array so that indexing with a masked state needs no bounds check.
    cells: Box<[Cell; TABLE_SIZE]>,
    r: f64,
    symbol_count: usize,
}

/// Same fields as the C library's `FSE_decode_t`, kept to 4 bytes so the table stays in L2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    new_state: u16,
    symbol: u8,
    nb_bits: u8,
}

impl fmt::Debug for DTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DTable")
            .field("r", &self.r)
            .field("symbol_count", &self.symbol_count)
            .field("table_log", &TABLE_LOG)
            .finish_non_exhaustive()
    }
}

/// Decoding table for park deltas of table `t` (1..=6; R = 4.7, 2.75, 2.75, 2.7, 2.6, 2.45).
/// Built once per process.
///
/// # Panics
///
/// If `t` is not in `1..=6` (a caller bug: table numbers come from code, not from the plot).
pub fn park_table(t: u8) -> &'static DTable {
    let index = match t {
        1 => 0,
        2 | 3 => 1,
        4 => 2,
        5 => 3,
        6 => 4,
        _ => panic!("park tables are numbered 1..=6, got {t}"),
    };
    table(index)
}

/// Decoding table for C3 parks (R = 1.0). Built once per process.
pub fn c3_table() -> &'static DTable {
    table(C3_INDEX)
}

fn table(index: usize) -> &'static DTable {
    TABLES[index].get_or_init(|| DTable::build(R_VALUES[index]))
}

/// Why an FSE stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FseError {
    /// chiapos: `srcSize_wrong`.
    #[error("FSE stream is empty")]
    EmptyStream,
    /// The last byte must carry the end mark (its highest set bit); chiapos: `GENERIC`
    /// (`corruption_detected` for streams shorter than 8 bytes).
    #[error("FSE stream has no end mark: its last byte is zero")]
    MissingEndMark,
    /// chiapos: `dstSize_tooSmall`.
    #[error("FSE stream decodes to more than {max_out} symbols")]
    TooManySymbols { max_out: usize },
}

/// Decodes the FSE stream `src` (read backwards, two interleaved states, §8.3), writes the
/// symbols to `dst` and returns how many were written.
///
/// - If `dst.len() < max_out`, decoding stops without error once `dst` is full: a caller that
///   needs only the first `p` deltas passes a `p`-byte `dst`. The symbols written are the same
///   prefix a full decode would produce.
/// - Otherwise it follows chiapos exactly and fails with [`FseError::TooManySymbols`] when the
///   stream holds more than `max_out` symbols; at most `max_out` symbols are written.
///
/// Never panics and always terminates, whatever the bytes of `src`. Does not allocate.
///
/// # Errors
///
/// [`FseError::EmptyStream`] for an empty `src`, [`FseError::MissingEndMark`] if its last byte
/// is zero, [`FseError::TooManySymbols`] as above.
pub fn decode(
    table: &DTable,
    src: &[u8],
    max_out: usize,
    dst: &mut [u8],
) -> Result<usize, FseError> {
    let mut bits = BackwardBits::new(src)?;
    // `room`: how many symbols may be written before the stream ends. chiapos refuses to
    // write a symbol at index > max_out - 2 unless it is the final one (emitted after the
    // stream ran out, which needs one more slot and always has it).
    let (room, full_is_error) =
        if dst.len() < max_out { (dst.len(), false) } else { (max_out.saturating_sub(1), true) };
    let cells = &*table.cells;
    let mut state1 = bits.read(TABLE_LOG);
    let mut state2 = bits.read(TABLE_LOG);
    let mut n = 0;

    // While at least 4 * 14 unread bits remain, four reads cannot run past the start of the
    // stream, so the end test (and the refill) are needed only once per four symbols. The C
    // decoder's unrolled loop relies on the same bound.
    while n + 4 <= room && bits.refill_and_check(4 * TABLE_LOG) {
        let out = &mut dst[n..n + 4];
        out[0] = step_fast(cells, &mut state1, &mut bits);
        out[1] = step_fast(cells, &mut state2, &mut bits);
        out[2] = step_fast(cells, &mut state1, &mut bits);
        out[3] = step_fast(cells, &mut state2, &mut bits);
        n += 4;
    }

    // `n` is even here, so it is state 1's turn, as in the spec's loop.
    let mut states = [state1, state2];
    let mut turn = 0;
    loop {
        if n >= room {
            return if full_is_error { Err(FseError::TooManySymbols { max_out }) } else { Ok(n) };
        }
        let cell = cells[states[turn] & STATE_MASK];
        dst[n] = cell.symbol;
        n += 1;
        bits.refill();
        states[turn] = usize::from(cell.new_state) + bits.read(u32::from(cell.nb_bits));
        if bits.overrun() {
            // The other state still holds one symbol (the encoder flushed both states).
            if n < dst.len() {
                dst[n] = cells[states[turn ^ 1] & STATE_MASK].symbol;
                n += 1;
            }
            return Ok(n);
        }
        turn ^= 1;
    }
}

/// One decoding step for a read that cannot run past the start of the stream.
#[inline(always)]
fn step_fast(cells: &[Cell; TABLE_SIZE], state: &mut usize, bits: &mut BackwardBits<'_>) -> u8 {
    let cell = cells[*state & STATE_MASK];
    *state = usize::from(cell.new_state) + bits.read_fast(u32::from(cell.nb_bits));
    cell.symbol
}

/// Reads the stream as one little-endian integer, from just below the end mark (the highest
/// set bit of the last byte) down toward bit 0, through a 64-bit window.
struct BackwardBits<'a> {
    src: &'a [u8],
    /// `src[start..start + 8]` as a little-endian integer, zero past the end of `src`.
    window: u64,
    start: usize,
    /// The unread bits are the low `avail` bits of `window` plus all of `src[..start]`.
    /// Negative only after a read ran past bit 0 of the stream, which requires `start == 0`:
    /// callers refill before the window can run dry.
    avail: i32,
}

impl<'a> BackwardBits<'a> {
    fn new(src: &'a [u8]) -> Result<Self, FseError> {
        let &last = src.last().ok_or(FseError::EmptyStream)?;
        if last == 0 {
            return Err(FseError::MissingEndMark);
        }
        let start = src.len().saturating_sub(8);
        let end_mark = 7 - last.leading_zeros() as i32;
        let avail = 8 * (src.len() - 1 - start) as i32 + end_mark;
        Ok(BackwardBits { src, window: load_le(src, start), start, avail })
    }

    /// Moves the window back so that it holds as many unread bits as fit (at least 57
    /// unless the start of the stream is reached).
    #[inline(always)]
    fn refill(&mut self) {
        if self.start == 0 {
            return;
        }
        debug_assert!((0..=64).contains(&self.avail));
        let back = ((64 - self.avail) as usize / 8).min(self.start);
        self.start -= back;
        self.avail += 8 * back as i32;
        self.window = load_le(self.src, self.start);
    }

    /// Refills, then tells whether at least `nb` unread bits remain.
    #[inline(always)]
    fn refill_and_check(&mut self, nb: u32) -> bool {
        self.refill();
        self.avail >= nb as i32
    }

    /// True once a read has run past bit 0 of the stream.
    #[inline(always)]
    fn overrun(&self) -> bool {
        self.avail < 0
    }

    /// Reads `nb` (1..=14) bits, which must all be in the window.
    #[inline(always)]
    fn read_fast(&mut self, nb: u32) -> usize {
        debug_assert!((1..=TABLE_LOG).contains(&nb) && self.avail >= nb as i32);
        self.avail -= nb as i32;
        ((self.window >> self.avail) & ((1 << nb) - 1)) as usize
    }

    /// Reads `nb` (1..=14) bits after a refill. Bits below bit 0 of the stream read as zero,
    /// as in the C reader: that matters only for the two initial states of a stream shorter
    /// than 28 payload bits, whose symbols are emitted; any other read that runs past the
    /// start ends decoding before its value is used.
    #[inline(always)]
    fn read(&mut self, nb: u32) -> usize {
        debug_assert!((1..=TABLE_LOG).contains(&nb));
        let have = self.avail;
        self.avail -= nb as i32;
        if self.avail >= 0 {
            ((self.window >> self.avail) & ((1 << nb) - 1)) as usize
        } else if have > 0 {
            // `start == 0` here; shift the `have` remaining bits to the top of the field.
            ((self.window << (nb as i32 - have)) & ((1 << nb) - 1)) as usize
        } else {
            0
        }
    }
}

/// Up to 8 bytes of `src` from `start` as a little-endian integer, zero past the end.
#[inline(always)]
fn load_le(src: &[u8], start: usize) -> u64 {
    let tail = src.get(start..).unwrap_or_default();
    if let Some(word) = tail.first_chunk::<8>() {
        return u64::from_le_bytes(*word);
    }
    let mut word = [0u8; 8];
    word[..tail.len()].copy_from_slice(tail);
    u64::from_le_bytes(word)
}

impl DTable {
    fn build(r: f64) -> DTable {
        let counts = normalized_count(r);
        DTable::from_counts(r, &counts)
    }

    /// `FSE_buildDTable` (§8.2).
    fn from_counts(r: f64, counts: &[i16]) -> DTable {
        assert!((1..=256).contains(&counts.len()), "{} symbols", counts.len());
        let mut cells = vec![Cell::default(); TABLE_SIZE];
        let mut next = [0u32; 256];

        // Symbols with count -1 ("less than one") take one cell each from the top.
        let mut high = TABLE_SIZE - 1;
        for (s, &count) in counts.iter().enumerate() {
            if count == -1 {
                cells[high].symbol = s as u8;
                high -= 1;
                next[s] = 1;
            } else {
                assert!(count >= 0, "count {count} for symbol {s}");
                next[s] = count as u32;
            }
        }

        const STEP: usize = (TABLE_SIZE >> 1) + (TABLE_SIZE >> 3) + 3;
        let mut pos = 0;
        for (s, &count) in counts.iter().enumerate() {
            for _ in 0..count.max(0) {
                cells[pos].symbol = s as u8;
                pos = (pos + STEP) & STATE_MASK;
                while pos > high {
                    pos = (pos + STEP) & STATE_MASK;
                }
            }
        }
        assert_eq!(pos, 0, "normalized counts for R = {r} do not fill the table");

        for cell in &mut cells {
            let s = usize::from(cell.symbol);
            let x = next[s];
            next[s] += 1;
            let nb_bits = TABLE_LOG - x.ilog2();
            cell.nb_bits = nb_bits as u8;
            cell.new_state = ((x << nb_bits) as usize - TABLE_SIZE) as u16;
            // What the decoder relies on: reads of at most 14 bits (its fast path reserves
            // 4 * 14 bits per group), and every next state below TABLE_SIZE.
            assert!((1..=TABLE_LOG).contains(&nb_bits));
            assert!(usize::from(cell.new_state) + (1 << nb_bits) <= TABLE_SIZE);
        }

        let cells: Box<[Cell; TABLE_SIZE]> = match cells.into_boxed_slice().try_into() {
            Ok(cells) => cells,
            Err(_) => unreachable!("the vector was created with TABLE_SIZE cells"),
        };
        DTable { cells, r, symbol_count: counts.len() }
    }
}

/// chiapos' `CreateNormalizedCount` (§8.1): a geometric-like distribution of deltas for R,
/// quantized greedily to 2^14 by largest entropy gain. Counts of 1 become -1.
fn normalized_count(r: f64) -> Vec<i16> {
    // chiapos' truncated literal, not `std::f64::consts::E`: the counts depend on it.
    #[allow(clippy::approx_constant)]
    const E: f64 = 2.718281828459;
    const MIN_PROBABILITY: f64 = 1e-50;
    const SYMBOLS_MAX: usize = 255;

    let mut dpdf = Vec::with_capacity(SYMBOLS_MAX);
    let mut p = 1.0 - ((E - 1.0) / E).powf(1.0 / r);
    while p > MIN_PROBABILITY && dpdf.len() < SYMBOLS_MAX {
        dpdf.push(p);
        let n = dpdf.len() as f64;
        p = (E.powf(1.0 / r) - 1.0) * (E - 1.0).powf(1.0 / r);
        p /= E.powf((n + 1.0) / r);
    }
    let n = dpdf.len();
    assert!(n > 0 && n <= TABLE_SIZE, "R = {r} gives {n} symbols");

    // Written as chiapos writes it (a difference of two log2), to round the same way.
    let gain =
        |s: usize, count: u32| dpdf[s] * (f64::from(count + 1).log2() - f64::from(count).log2());
    let mut ans = vec![1u32; n];
    let mut heap: BinaryHeap<Candidate> =
        (0..n).map(|s| Candidate { gain: gain(s, 1), symbol: s }).collect();
    for _ in 0..TABLE_SIZE - n {
        let Some(best) = heap.pop() else {
            unreachable!("every pop is followed by a push and the heap starts with n > 0 items")
        };
        ans[best.symbol] += 1;
        heap.push(Candidate { gain: gain(best.symbol, ans[best.symbol]), symbol: best.symbol });
    }
    ans.iter().map(|&count| if count == 1 { -1 } else { count as i16 }).collect()
}

/// A heap entry of the greedy quantization: the gain of giving `symbol` one more cell.
struct Candidate {
    gain: f64,
    symbol: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // No ties occur for the six R values (§8.1); the symbol only makes the order total.
        self.gain.total_cmp(&other.gain).then(self.symbol.cmp(&other.symbol))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;

    /// (R, number of symbols, explicit counts; all later symbols are -1), from §8.1.
    const SPEC_COUNTS: [(f64, usize, &[i16]); 6] = [
        (
            4.7,
            255,
            &[
                1504, 2811, 2273, 1837, 1485, 1200, 970, 784, 634, 512, 414, 335, 271, 219, 177,
                143, 116, 93, 76, 61, 49, 40, 32, 26, 21, 17, 14, 11, 9, 7, 6, 5, 4, 3, 3, 2, 2,
            ],
        ),
        (
            2.75,
            255,
            &[
                2482, 4169, 2898, 2015, 1400, 973, 677, 470, 327, 227, 158, 110, 76, 53, 37, 26,
                18, 12, 9, 6, 4, 3, 2,
            ],
        ),
        (
            2.7,
            255,
            &[
                2524, 4219, 2913, 2011, 1389, 959, 662, 457, 316, 218, 151, 104, 72, 50, 34, 24,
                16, 11, 8, 5, 4, 3, 2,
            ],
        ),
        (
            2.6,
            255,
            &[
                2613, 4324, 2943, 2004, 1364, 928, 632, 430, 293, 199, 136, 92, 63, 43, 29, 20, 14,
                9, 6, 4, 3, 2,
            ],
        ),
        (
            2.45,
            255,
            &[
                2758, 4489, 2985, 1985, 1319, 877, 583, 388, 258, 171, 114, 76, 50, 34, 22, 15, 10,
                7, 4, 3, 2,
            ],
        ),
        (1.0, 116, &[5989, 6505, 2393, 880, 324, 119, 44, 16, 6, 2]),
    ];

    /// SHA-256 of each table serialized as 16384 x (u16 LE newState, u8 symbol, u8 nbBits), §8.2.
    const SPEC_DIGESTS: [(f64, &str); 6] = [
        (4.7, "30cf15a8c9c27600593bb3b48c99cdd822673d85c252b75cd58324e70a98d813"),
        (2.75, "71a2d1ba198fd77126365fe772b44e578ec700e158fb24fbacf2ab4eb2eac951"),
        (2.7, "adcbc9e4820db80070482519af0dbdcd6de81e4f010a0d8bb7ef7ff56ad608f0"),
        (2.6, "c0ad7872f8c5edb5ce7d9482dc9c8d699341a18f32da8448c8340d01144a44f4"),
        (2.45, "fe8aa6bf1608e7e6b59b94f32ce2d7ef6b9e65d23047e60c60895bb98610579d"),
        (1.0, "4a784ebb2e28a941aab441a4b8674505f9fbbbace7fbb30ec3a0bb4f9c023d21"),
    ];

    /// Streams from chiapos' encoder (§8.3): (table, max_out, hex, symbols).
    fn spec_vectors() -> [(&'static DTable, usize, &'static str, Vec<u8>); 4] {
        [
            (
                park_table(1),
                2047,
                "037ac2e4d1ca529cfc04",
                vec![3, 0, 7, 1, 2, 5, 4, 0, 1, 9, 2, 3, 6, 1, 0, 2],
            ),
            (
                park_table(6),
                2047,
                "d0ad0c2251e1f495dd",
                vec![1, 0, 2, 1, 0, 0, 3, 1, 2, 0, 1, 4, 0, 1, 2, 1, 0, 5, 1, 0],
            ),
            (
                c3_table(),
                10000,
                "07a7df8270994e28",
                vec![0, 1, 0, 2, 1, 0, 0, 1, 3, 0, 1, 1, 0, 0, 2, 1, 0, 1, 0, 0, 1, 4],
            ),
            (park_table(2), 2047, "12002369", vec![0, 1, 2]),
        ]
    }

    fn table_for_r(r: f64) -> &'static DTable {
        let index = R_VALUES.iter().position(|&v| v == r).expect("a known R");
        table(index)
    }

    fn decode_vec(table: &DTable, src: &[u8], max_out: usize) -> Result<Vec<u8>, FseError> {
        let mut dst = vec![0u8; max_out];
        let n = decode(table, src, max_out, &mut dst)?;
        dst.truncate(n);
        Ok(dst)
    }

    /// §8.3 transcribed literally: one bit at a time from a little-endian integer, bits below
    /// bit 0 read as zero, no fast path.
    fn decode_reference(table: &DTable, src: &[u8], max_out: usize) -> Result<Vec<u8>, FseError> {
        let &last = src.last().ok_or(FseError::EmptyStream)?;
        if last == 0 {
            return Err(FseError::MissingEndMark);
        }
        let mut pos = 8 * (src.len() as i64 - 1) + (7 - i64::from(last.leading_zeros()));
        let mut read = |nb: u8| {
            let mut value = 0usize;
            for _ in 0..nb {
                pos -= 1;
                let bit = if pos >= 0 { (src[(pos / 8) as usize] >> (pos % 8)) & 1 } else { 0 };
                value = (value << 1) | usize::from(bit);
            }
            (value, pos < 0)
        };
        let cell = |state: usize| table.cells[state];
        let mut states = [read(14).0, read(14).0];
        let mut out = Vec::new();
        for turn in [0, 1].into_iter().cycle() {
            if out.len() + 2 > max_out {
                return Err(FseError::TooManySymbols { max_out });
            }
            let c = cell(states[turn]);
            out.push(c.symbol);
            let (bits, overrun) = read(c.nb_bits);
            states[turn] = usize::from(c.new_state) + bits;
            if overrun {
                out.push(cell(states[turn ^ 1]).symbol);
                break;
            }
        }
        Ok(out)
    }

    #[test]
    fn normalized_counts_match_spec() {
        for (r, symbols, explicit) in SPEC_COUNTS {
            let counts = normalized_count(r);
            assert_eq!(counts.len(), symbols, "R = {r}");
            assert_eq!(&counts[..explicit.len()], explicit, "R = {r}");
            assert!(counts[explicit.len()..].iter().all(|&c| c == -1), "R = {r}");
            let total: i32 = counts.iter().map(|&c| i32::from(c.abs())).sum();
            assert_eq!(total, 16384, "R = {r}");
        }
    }

    #[test]
    fn table_digests_match_spec() {
        for (r, digest) in SPEC_DIGESTS {
            let mut hasher = Sha256::new();
            for cell in table_for_r(r).cells.iter() {
                hasher.update(cell.new_state.to_le_bytes());
                hasher.update([cell.symbol, cell.nb_bits]);
            }
            assert_eq!(hex::encode(hasher.finalize()), digest, "R = {r}");
        }
    }

    #[test]
    fn park_tables_follow_k_r_values() {
        let r: Vec<f64> = (1..=6).map(|t| park_table(t).r).collect();
        assert_eq!(r, [4.7, 2.75, 2.75, 2.7, 2.6, 2.45]);
        assert!(std::ptr::eq(park_table(2), park_table(3)), "tables are shared per R");
        assert_eq!(c3_table().r, 1.0);
        assert_eq!(c3_table().symbol_count, 116);
        let debug = format!("{:?}", park_table(1));
        assert!(debug.len() < 100, "{debug}");
    }

    #[test]
    fn decodes_spec_vectors() {
        for (table, max_out, stream, expected) in spec_vectors() {
            let src = hex::decode(stream).unwrap();
            assert_eq!(decode_vec(table, &src, max_out).unwrap(), expected, "{stream}");
            assert_eq!(decode_reference(table, &src, max_out).unwrap(), expected, "{stream}");
        }
    }

    #[test]
    fn short_dst_stops_early_with_the_same_prefix() {
        for (table, max_out, stream, expected) in spec_vectors() {
            let src = hex::decode(stream).unwrap();
            for p in 0..=expected.len() {
                let mut dst = vec![0xAA; p];
                let n = decode(table, &src, max_out, &mut dst).unwrap();
                assert_eq!(n, p, "{stream} p = {p}");
                assert_eq!(dst, expected[..p], "{stream} p = {p}");
            }
        }
    }

    #[test]
    fn more_symbols_than_max_out_is_an_error() {
        for (table, _, stream, expected) in spec_vectors() {
            let src = hex::decode(stream).unwrap();
            let count = expected.len();
            assert_eq!(decode_vec(table, &src, count).unwrap(), expected, "{stream}");
            for max_out in 0..count {
                let error = FseError::TooManySymbols { max_out };
                assert_eq!(decode_vec(table, &src, max_out), Err(error.clone()), "{stream}");
                // A `dst` longer than `max_out` does not lift the limit.
                let mut dst = vec![0u8; count + 10];
                assert_eq!(decode(table, &src, max_out, &mut dst), Err(error), "{stream}");
            }
        }
    }

    #[test]
    fn rejects_empty_stream_and_missing_end_mark() {
        let table = park_table(1);
        let mut dst = [0u8; 16];
        assert_eq!(decode(table, &[], 2047, &mut dst), Err(FseError::EmptyStream));
        assert_eq!(decode(table, &[0x12, 0x00], 2047, &mut dst), Err(FseError::MissingEndMark));
        assert_eq!(decode(table, &[0x00], 2047, &mut dst[..0]), Err(FseError::MissingEndMark));
        assert!(FseError::TooManySymbols { max_out: 7 }.to_string().contains('7'));
    }

    #[test]
    fn long_streams_match_the_reference() {
        // Longer than the vectors, so the 4-symbol fast path and the refills are exercised.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in [8, 9, 15, 16, 17, 100, 896, 1431, 3000] {
            let mut src: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            src[len - 1] |= 0x40;
            for table in [park_table(1), park_table(6), c3_table()] {
                for max_out in [2047, 10000, 20000] {
                    assert_eq!(
                        decode_vec(table, &src, max_out),
                        decode_reference(table, &src, max_out),
                        "len {len} max_out {max_out}"
                    );
                }
            }
        }
    }

    #[test]
    fn fourteen_bit_reads_at_every_stream_end_match_the_reference() {
        // All-ones bits keep every state on the top cell (a "less than one" symbol: 14-bit
        // reads, new state 0), so each stream length puts the end of the stream at a different
        // offset within a 4-symbol group.
        for table in [park_table(1), c3_table()] {
            assert_eq!(table.cells[TABLE_SIZE - 1].nb_bits, 14);
            for len in 1..=64 {
                let src = vec![0xFF; len];
                let max_out = 10000;
                let expected = decode_reference(table, &src, max_out).unwrap();
                assert_eq!(decode_vec(table, &src, max_out).unwrap(), expected, "len {len}");
                // Two 14-bit initial states, then one symbol per 14-bit update until the
                // update that runs past the start, then the other state's symbol.
                assert_eq!(expected.len(), ((8 * len - 1) / 14).max(2), "len {len}");
            }
        }
    }

    fn any_table() -> impl Strategy<Value = &'static DTable> {
        (0..R_VALUES.len()).prop_map(table)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_decode_like_the_reference(
            table in any_table(),
            src in proptest::collection::vec(any::<u8>(), 0..200),
            max_out in 0usize..400,
        ) {
            let result = decode_vec(table, &src, max_out);
            if let Ok(out) = &result {
                prop_assert!(out.len() <= max_out);
            }
            prop_assert_eq!(result, decode_reference(table, &src, max_out));
        }

        #[test]
        fn arbitrary_bytes_into_any_dst_never_overflow(
            table in any_table(),
            src in proptest::collection::vec(any::<u8>(), 0..2000),
            max_out in 0usize..3000,
            dst_len in 0usize..3000,
        ) {
            let mut dst = vec![0u8; dst_len];
            match decode(table, &src, max_out, &mut dst) {
                Ok(n) => {
                    prop_assert!(n <= max_out && n <= dst_len);
                    // An early stop yields a prefix of the full decode.
                    if let Ok(full) = decode_reference(table, &src, usize::MAX) {
                        prop_assert_eq!(&dst[..n], &full[..n]);
                    }
                }
                Err(FseError::TooManySymbols { .. }) => prop_assert!(dst_len >= max_out),
                Err(_) => {}
            }
        }
    }
}
