//! Decoding one park of tables 1..6 (`plot-format.md` §6), a P7 entry (§9), a C3 park (§10.3)
//! and line points (§7).

use crate::bits::{get_bits, get_bits_u128};
use crate::error::PlotError;
use crate::fse;
use crate::layout::{Geometry, C3_DELTAS_MAX, DELTAS_PER_PARK};
use crate::lookup::Mode;

/// What [`Park::decode`] takes: a park's bytes, the last entry needed, and how to read it.
#[derive(Clone, Copy)]
pub(crate) struct ParkJob<'a> {
    pub bytes: &'a [u8],
    pub upto: usize,
    pub geometry: Geometry,
    pub table: u8,
    pub mode: Mode,
}

impl<'a> ParkJob<'a> {
    pub(crate) fn decode(self, deltas: &'a mut DeltasBuf) -> Result<Park<'a>, PlotError> {
        Park::decode(self.bytes, self.geometry, self.table, self.mode, self.upto, deltas)
    }
}

/// Where [`Park::decode`] puts a park's deltas: the caller's, so that a decoded park is a few
/// words to move, not 2 KB. Its old contents do not matter.
pub(crate) type DeltasBuf = [u8; DELTAS_PER_PARK];

/// One park of table 1..=6 with its deltas decoded up to a needed entry.
pub(crate) struct Park<'a> {
    bytes: &'a [u8],
    geometry: Geometry,
    checkpoint: u128,
    /// The first `upto` deltas (0 past the end of a short park's stream).
    deltas: &'a [u8],
    /// Entries past this many deltas add nothing (chiapos: the uncompressed form has no more).
    summable: usize,
}

/// Where a park keeps its deltas: an FSE stream, or (the writer's fallback) raw bytes.
enum Deltas<'a> {
    Fse(&'a [u8]),
    /// The bytes present, and how many deltas the park says it holds.
    Raw(&'a [u8], usize),
}

/// A park's header read, its deltas not yet decoded.
struct Header<'a> {
    checkpoint: u128,
    deltas: Deltas<'a>,
}

impl<'a> Header<'a> {
    fn read(bytes: &'a [u8], geometry: Geometry, table: u8, mode: Mode) -> Result<Self, PlotError> {
        let k = u32::from(geometry.k());
        let lp_bytes = geometry.line_point_bytes() as usize;
        let size_at = lp_bytes + geometry.stubs_bytes() as usize;
        let checkpoint = get_bits_u128(bytes, 0, 2 * k);
        let size = u16::from_le_bytes([byte_at(bytes, size_at), byte_at(bytes, size_at + 1)]);
        let budget = Geometry::deltas_bytes(table) as usize - 2;
        let stream_at = size_at + 2;
        let deltas = if size & 0x8000 != 0 {
            // The writer's fallback for at most two deltas; chiapos refuses it (trap 13).
            if mode == Mode::Chiapos {
                return Err(PlotError::UncompressedPark { table });
            }
            let n = usize::from(size & 0x7fff);
            if n > budget {
                return Err(PlotError::DeltasSizeInvalid { table, size });
            }
            Deltas::Raw(bytes.get(stream_at..stream_at + n).unwrap_or(&[]), n)
        } else {
            let n = usize::from(size);
            if n > budget {
                return Err(PlotError::DeltasSizeInvalid { table, size });
            }
            let stream = bytes.get(stream_at..stream_at + n).unwrap_or(&[]);
            if stream.len() != n || n == 0 {
                return Err(PlotError::Fse { table, source: fse::FseError::EmptyStream });
            }
            Deltas::Fse(stream)
        };
        Ok(Header { checkpoint, deltas })
    }
}

impl<'a> Park<'a> {
    /// Decodes what is needed to read entries `0..=upto` of the park in `bytes`, its deltas
    /// into `deltas`.
    pub(crate) fn decode(
        bytes: &'a [u8],
        geometry: Geometry,
        table: u8,
        mode: Mode,
        upto: usize,
        deltas: &'a mut DeltasBuf,
    ) -> Result<Park<'a>, PlotError> {
        let header = Header::read(bytes, geometry, table, mode)?;
        let out = &mut deltas[..upto.min(DELTAS_PER_PARK)];
        let summable = match header.deltas {
            Deltas::Raw(raw, n) => take_raw(raw, n, out, table)?,
            Deltas::Fse(stream) => {
                let fse_table = fse::park_table(table);
                let result = fse::decode(fse_table, stream, DELTAS_PER_PARK, out);
                check_fse(result, out, table)?
            }
        };
        Ok(Park { bytes, geometry, checkpoint: header.checkpoint, deltas: out, summable })
    }

    /// [`Park::decode`] of two parks, each with its own table, geometry and mode (they may be
    /// of different lookups, even of different plots), whose FSE streams are decoded together
    /// ([`fse::decode_pair`]): the same results, sooner.
    pub(crate) fn decode_two(
        (a, deltas_a): (ParkJob<'a>, &'a mut DeltasBuf),
        (b, deltas_b): (ParkJob<'a>, &'a mut DeltasBuf),
    ) -> [Result<Park<'a>, PlotError>; 2] {
        let headers = [a, b].map(|j| Header::read(j.bytes, j.geometry, j.table, j.mode));
        let (ha, hb) = match headers {
            [Ok(Header { checkpoint: ca, deltas: Deltas::Fse(sa) }), Ok(Header { checkpoint: cb, deltas: Deltas::Fse(sb) })] => {
                ((ca, sa), (cb, sb))
            }
            _ => return [a.decode(deltas_a), b.decode(deltas_b)],
        };
        let out_a = &mut deltas_a[..a.upto.min(DELTAS_PER_PARK)];
        let out_b = &mut deltas_b[..b.upto.min(DELTAS_PER_PARK)];
        let [ra, rb] = fse::decode_pair(
            (fse::park_table(a.table), ha.1, DELTAS_PER_PARK, &mut *out_a),
            (fse::park_table(b.table), hb.1, DELTAS_PER_PARK, &mut *out_b),
        );
        let park = |job: ParkJob<'a>, checkpoint, deltas: &'a [u8], summable| Park {
            bytes: job.bytes,
            geometry: job.geometry,
            checkpoint,
            deltas,
            summable,
        };
        [
            check_fse(ra, out_a, a.table).map(|s| park(a, ha.0, out_a, s)),
            check_fse(rb, out_b, b.table).map(|s| park(b, hb.0, out_b, s)),
        ]
    }

    /// The line point of entry `p` (at most the `upto` given to [`Park::decode`]).
    pub(crate) fn line_point(&self, p: usize) -> u128 {
        let stub_bits = self.geometry.stub_bits();
        let stubs_at = self.geometry.line_point_bytes() as usize;
        let n = p.min(self.summable).min(DELTAS_PER_PARK);
        // Deltas past the decoded ones (past `upto`) count as 0.
        let sum_deltas = sum_bytes(&self.deltas[..n.min(self.deltas.len())]);
        let sum_stubs = sum_packed(self.bytes.get(stubs_at..).unwrap_or(&[]), stub_bits, n);
        self.checkpoint + u128::from(sum_stubs) + (u128::from(sum_deltas) << stub_bits)
    }
}

/// Takes the first `out.len()` of `raw` deltas (the writer's uncompressed fallback, which says
/// it holds `n`), 0 past its end; returns how many entries they sum over (`n`).
fn take_raw(raw: &[u8], n: usize, out: &mut [u8], table: u8) -> Result<usize, PlotError> {
    let take = raw.len().min(out.len());
    out[..take].copy_from_slice(&raw[..take]);
    out[take..].fill(0);
    if out[..take].contains(&0xff) {
        return Err(PlotError::BadDelta { table });
    }
    Ok(n)
}

/// Checks the FSE decode of the deltas in `out`, which it wrote; missing deltas of a short
/// last park become 0 (trap 10). Returns how many entries they sum over.
fn check_fse(
    result: Result<usize, fse::FseError>,
    out: &mut [u8],
    table: u8,
) -> Result<usize, PlotError> {
    let got = result.map_err(|source| PlotError::Fse { table, source })?.min(out.len());
    out[got..].fill(0);
    // chiapos' tables have at most 255 symbols, so no scan is needed for them.
    if fse::park_table(table).can_yield(0xff) && out.contains(&0xff) {
        return Err(PlotError::BadDelta { table });
    }
    Ok(DELTAS_PER_PARK)
}

/// The sum of `bytes`: 32 column totals in `u16` (at most 257 rows of 32 at a time), which
/// the compiler vectorises, where a byte-by-byte sum is a chain of scalar additions.
fn sum_bytes(bytes: &[u8]) -> u64 {
    let mut sum = 0u64;
    for block in bytes.chunks(257 * 32) {
        let mut total = [0u16; 32];
        let rows = block.chunks_exact(32);
        let rest = rows.remainder();
        for row in rows {
            for (t, &b) in total.iter_mut().zip(row) {
                *t += u16::from(b);
            }
        }
        sum += total.iter().map(|&t| u64::from(t)).sum::<u64>();
        sum += rest.iter().map(|&b| u64::from(b)).sum::<u64>();
    }
    sum
}

/// The sum of the first `n` `width`-bit fields of `bytes` (MSB first; missing bytes are 0).
fn sum_packed(bytes: &[u8], width: u32, n: usize) -> u64 {
    debug_assert!((1..=57).contains(&width));
    let w = width as usize;
    // Whole groups of eight fields (`w` bytes each) present in `bytes`, summed by columns.
    let groups = if w >= 8 { (n / 8).min(bytes.len() / w) } else { 0 };
    let mut sum = match w {
        8..=16 => sum_groups::<16>(bytes, w, groups),
        17..=32 => sum_groups::<32>(bytes, w, groups),
        33..=57 => sum_groups::<64>(bytes, w, groups),
        _ => 0,
    };
    let width64 = u64::from(width);
    for i in (groups * 8) as u64..n as u64 {
        sum = sum.wrapping_add(get_bits(bytes, i * width64, width));
    }
    sum
}

/// The sum (mod 2^64) of the `w`-bit fields (8 <= w <= `N`) of the first `groups` groups of
/// eight fields in `bytes`; a group is `w` bytes, with its fields at the same bit offsets in
/// every group.
///
/// Each byte of a group lies in one field, or (where a field ends inside it) its high bits
/// end one field and its low `s` bits start the next. So the sum is a weighted sum of column
/// totals: per byte position `j`, the total of the bytes and of their low `s_j` bits over
/// all groups. The high parts sum to `(total - low total) >> s_j` exactly, as each of them
/// is a multiple of `2^s_j`. The column totals are byte additions over a fixed `N`-byte row,
/// which the compiler vectorises, with no branch per field.
fn sum_groups<const N: usize>(bytes: &[u8], w: usize, groups: usize) -> u64 {
    debug_assert!((8..=N).contains(&w) && groups * w <= bytes.len());
    // Per column: `keep` (0xff for the group's own bytes, 0 for the next group's bytes that
    // an `N`-byte row also holds), the low-bits mask, and the shifts that weigh the high and
    // low parts by their place in their fields.
    let mut keep = [0u8; N];
    let mut low = [0u8; N];
    let mut shifts = [(0u32, 0u32, 0u32); N];
    for j in 0..w {
        let end = 8 * j + 8;
        let field_end = (8 * j / w + 1) * w;
        keep[j] = 0xff;
        shifts[j] = if field_end >= end {
            (0, (field_end - end) as u32, 0)
        } else {
            let s = end - field_end;
            low[j] = (1u8 << s) - 1;
            (s as u32, 0, (field_end + w - end) as u32)
        };
    }
    let mut sum = 0u64;
    let mut row_at = 0;
    // Only its first `w` bytes are ever written, so the rest stays zero for every use.
    let mut padded = [0u8; N];
    // At most 257 groups at a time: 257 bytes of at most 255 keep a column total in a u16.
    for block in (0..groups).step_by(257) {
        let mut total = [0u16; N];
        let mut low_total = [0u16; N];
        for _ in block..groups.min(block + 257) {
            let row = match bytes.get(row_at..).and_then(|b| b.first_chunk::<N>()) {
                Some(row) => row,
                None => {
                    // The last rows: copy the group into a zero-padded row.
                    padded[..w].copy_from_slice(&bytes[row_at..row_at + w]);
                    &padded
                }
            };
            for j in 0..N {
                total[j] += u16::from(row[j] & keep[j]);
                low_total[j] += u16::from(row[j] & low[j]);
            }
            row_at += w;
        }
        for (j, &(s, high_shift, low_shift)) in shifts.iter().enumerate().take(w) {
            let high = u64::from((total[j] - low_total[j]) >> s);
            sum = sum
                .wrapping_add(high << high_shift)
                .wrapping_add(u64::from(low_total[j]) << low_shift);
        }
    }
    sum
}

/// The line point of entry `p` of one park of table `table` (1..=6) held in `park`.
pub fn line_point_at(
    park: &[u8],
    geometry: Geometry,
    table: u8,
    mode: Mode,
    p: usize,
) -> Result<u128, PlotError> {
    let mut deltas = [0; DELTAS_PER_PARK];
    Ok(Park::decode(park, geometry, table, mode, p, &mut deltas)?.line_point(p))
}

fn byte_at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// `x * (x - 1) / 2` without overflow for x < 2^64.
fn x_enc(x: u64) -> u128 {
    let x = u128::from(x);
    if x % 2 == 0 {
        (x / 2) * (x.saturating_sub(1))
    } else {
        x * ((x - 1) / 2)
    }
}

/// Splits a line point into (larger, smaller) with exact integer maths (§7, trap 18).
pub fn line_point_to_square(line_point: u128) -> (u64, u64) {
    let x = if line_point < 1 << 120 {
        // x = floor((1 + isqrt(8L + 1)) / 2), exact for every line point of k <= 50.
        let x = (line_point * 8 + 1).isqrt().div_ceil(2) as u64;
        debug_assert!(x_enc(x) <= line_point && x_enc(x + 1) > line_point);
        x
    } else {
        // Hostile input only: chiapos' 64-step search, which never overflows.
        let mut x: u64 = 0;
        for i in (0..64).rev() {
            let t = x | (1u64 << i);
            if x_enc(t) <= line_point {
                x = t;
            }
        }
        x
    };
    let y = line_point - x_enc(x);
    (x, y.min(u128::from(u64::MAX)) as u64)
}

/// `SquareToLinePoint` (§7): the inverse of [`line_point_to_square`] for x != y.
pub fn square_to_line_point(a: u64, b: u64) -> u128 {
    let (x, y) = if a > b { (a, b) } else { (b, a) };
    x_enc(x) + u128::from(y)
}

/// P7 entry `i` from bytes that start at bit `first_bit` of the P7 table (parks are whole
/// multiples of (k+1)-bit entries, so the table is one continuous bit string).
pub(crate) fn p7_entry(bytes: &[u8], geometry: Geometry, i: u64, first_bit: u64) -> u64 {
    let width = u32::from(geometry.k()) + 1;
    get_bits(bytes, i * u64::from(width) - first_bit, width)
}

/// The deltas of one C3 park, decoded on demand: a scan stops as soon as it passes its
/// target, so on average half a park is decoded.
pub(crate) struct C3Deltas<'a> {
    stream: fse::Stream<'static, 'a>,
    /// Symbols decoded ahead ([`C3Deltas::prefill_two`]), handed out before the stream's.
    pre: &'a [u8],
    chunk: [u8; 256],
    /// Symbols handed out so far.
    produced: usize,
    /// Chiapos mode: after the stream ends, zeros up to `C3_DELTAS_MAX` (its decode buffer).
    pad: bool,
    ended: bool,
}

const C3_TABLE: u8 = 10;

impl<'a> C3Deltas<'a> {
    /// `None` means "no entries": chiapos' answer to an oversized length prefix (chiapos mode).
    pub(crate) fn new(
        bytes: &'a [u8],
        geometry: Geometry,
        mode: Mode,
    ) -> Result<Option<Self>, PlotError> {
        let len = usize::from(u16::from_be_bytes([byte_at(bytes, 0), byte_at(bytes, 1)]));
        if len > geometry.c3_park_bytes() as usize - 2 {
            return match mode {
                Mode::Chiapos => Ok(None),
                Mode::Complete => {
                    Err(PlotError::DeltasSizeInvalid { table: C3_TABLE, size: len as u16 })
                }
            };
        }
        let src = bytes.get(2..2 + len).unwrap_or(&[]);
        if src.len() != len {
            return Err(PlotError::Fse { table: C3_TABLE, source: fse::FseError::EmptyStream });
        }
        let stream = fse::Stream::new(fse::c3_table(), src, C3_DELTAS_MAX)
            .map_err(|source| PlotError::Fse { table: C3_TABLE, source })?;
        Ok(Some(C3Deltas {
            stream,
            pre: &[],
            chunk: [0; 256],
            produced: 0,
            pad: mode == Mode::Chiapos,
            ended: false,
        }))
    }

    /// Decodes the first `buf_a.len()` deltas of `a` and `buf_b.len()` of `b` (or fewer,
    /// where a stream stops) into the buffers, the two streams interleaved
    /// ([`fse::Stream::fill_two`]); `next_chunk` hands them out first. The same deltas, sooner.
    pub(crate) fn prefill_two(
        a: &mut Self,
        buf_a: &'a mut [u8],
        b: &mut Self,
        buf_b: &'a mut [u8],
    ) {
        debug_assert!(a.pre.is_empty() && b.pre.is_empty() && a.produced == 0 && b.produced == 0);
        let (na, nb) = fse::Stream::fill_two(&mut a.stream, buf_a, &mut b.stream, buf_b);
        let (buf_a, buf_b): (&'a [u8], &'a [u8]) = (buf_a, buf_b);
        a.pre = &buf_a[..na];
        b.pre = &buf_b[..nb];
    }

    /// The next deltas (at most 256; empty at the end of the park).
    pub(crate) fn next_chunk(&mut self) -> Result<&[u8], PlotError> {
        let chunk = if self.pre.is_empty() {
            let n = self.decode_chunk()?;
            &self.chunk[..n]
        } else {
            let (chunk, rest) = self.pre.split_at(self.pre.len().min(self.chunk.len()));
            self.pre = rest;
            chunk
        };
        self.produced += chunk.len();
        // Padding is zeros, and chiapos' C3 table has 116 symbols: no scan is needed for it.
        if fse::c3_table().can_yield(0xff) && chunk.contains(&0xff) {
            return Err(PlotError::BadDelta { table: C3_TABLE });
        }
        Ok(chunk)
    }

    /// Decodes the stream's next deltas (then chiapos' zero padding) into `chunk`; how many.
    fn decode_chunk(&mut self) -> Result<usize, PlotError> {
        let n = if !self.ended {
            let n = self
                .stream
                .next_chunk(&mut self.chunk)
                .map_err(|source| PlotError::Fse { table: C3_TABLE, source })?;
            self.ended = n == 0;
            n
        } else {
            0
        };
        Ok(if n == 0 && self.pad {
            // chiapos reads its zero-filled buffer to the end.
            let zeros = (C3_DELTAS_MAX - self.produced).min(self.chunk.len());
            self.chunk[..zeros].fill(0);
            zeros
        } else {
            n
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn line_points_round_trip(a in 0u64..(1 << 50), b in 0u64..(1 << 50)) {
            prop_assume!(a != b);
            let (x, y) = line_point_to_square(square_to_line_point(a, b));
            prop_assert_eq!((x, y), (a.max(b), a.min(b)));
        }

        #[test]
        fn hostile_line_points_never_panic(l in any::<u128>()) {
            let (x, _) = line_point_to_square(l);
            prop_assert!(x_enc(x) <= l);
        }
    }

    proptest! {
        #[test]
        fn packed_sums_equal_field_by_field(bytes in proptest::collection::vec(any::<u8>(), 0..9000), width in 1u32..=57, n in 0usize..2100) {
            let slow = (0..n as u64).map(|i| get_bits(&bytes, i * u64::from(width), width)).fold(0u64, u64::wrapping_add);
            prop_assert_eq!(sum_packed(&bytes, width, n), slow);
        }
    }

    proptest! {
        /// `Park::decode` takes a delta buffer whose old contents do not matter: a park
        /// decoded over stale bytes reads as one decoded over zeros, where its stream (FSE or
        /// raw) ends before the entry (short parks), or the park's bytes end early.
        #[test]
        fn stale_delta_buffers_decode_as_zeroed_ones(
            table in 1u8..=6,
            raw in any::<bool>(),
            stream in proptest::collection::vec(1u8..=255, 1..24),
            stubs in proptest::collection::vec(any::<u8>(), 64),
            p in 0usize..DELTAS_PER_PARK,
            cut in any::<bool>(),
        ) {
            let geometry = Geometry::new(18);
            let mut park = vec![0u8; geometry.park_bytes(table) as usize];
            let stubs_at = geometry.line_point_bytes() as usize;
            park[stubs_at..stubs_at + stubs.len()].copy_from_slice(&stubs);
            let size_at = stubs_at + geometry.stubs_bytes() as usize;
            let size = stream.len() as u16 | if raw { 0x8000 } else { 0 };
            park[size_at..size_at + 2].copy_from_slice(&size.to_le_bytes());
            park[size_at + 2..size_at + 2 + stream.len()].copy_from_slice(&stream);
            if cut {
                park.truncate(size_at + 2 + stream.len() / 2);
            }
            let line_point = |fill: u8| {
                let mut deltas = [fill; DELTAS_PER_PARK];
                Park::decode(&park, geometry, table, Mode::Complete, p, &mut deltas)
                    .map(|d| d.line_point(p))
            };
            prop_assert_eq!(line_point(0xaa), line_point(0));
        }
    }

    #[test]
    fn packed_sums_of_all_ones_fill_every_column_past_one_block() {
        // 2100 fields are 262 groups: more than the 257 a block of u16 column totals holds.
        let bytes = vec![0xffu8; 2100 * 57 / 8 + 8];
        for width in 1u32..=57 {
            let field = (1u64 << width) - 1;
            for n in [0, 7, 8, 2056, 2063, 2100] {
                let expected = (0..n).fold(0u64, |s, _| s.wrapping_add(field));
                assert_eq!(sum_packed(&bytes, width, n), expected, "width {width}, n {n}");
            }
        }
    }

    proptest! {
        #[test]
        fn byte_sums_equal_one_by_one(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
            prop_assert_eq!(sum_bytes(&bytes), bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
        }
    }

    #[test]
    fn byte_sums_of_all_ones_pass_one_block() {
        for len in [0, 31, 32, 2047, 257 * 32, 257 * 32 + 33, 20_000] {
            assert_eq!(sum_bytes(&vec![0xff; len]), 255 * len as u64, "{len} bytes");
        }
    }

    /// The 64-step bitwise search chiapos uses, as a second opinion on the closed form.
    fn chiapos_search(l: u128) -> u64 {
        let mut x: u64 = 0;
        for i in (0..64).rev() {
            let t = x + (1u64 << i);
            if x_enc(t) <= l {
                x = t;
            }
        }
        x
    }

    proptest! {
        #[test]
        fn closed_form_equals_bitwise_search(l in 0u128..(1u128 << 100)) {
            prop_assert_eq!(line_point_to_square(l).0, chiapos_search(l));
        }
    }
}
