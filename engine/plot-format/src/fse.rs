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
    /// A fixed-size array so that indexing with a state known to be below TABLE_SIZE needs no
    /// bounds check.
    cells: Box<[Cell; TABLE_SIZE]>,
    r: f64,
    symbol_count: usize,
}

/// The C library's `FSE_decode_t` (`newState`, `symbol`, `nbBits`), kept to 4 bytes so the
/// table stays in L2, except that `nbBits` is stored as `TABLE_LOG - nbBits`: the shift that
/// extracts the read bits from the top 14 unread ones, which saves the decoder a subtraction
/// on its critical path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    new_state: u16,
    symbol: u8,
    shift: u8,
}

impl Cell {
    /// `nbBits`: how many bits the state update reads (1..=14).
    fn nb_bits(self) -> u32 {
        TABLE_LOG - u32::from(self.shift)
    }
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

impl DTable {
    /// Whether a stream decoded with this table can yield `symbol`: only the table's symbols
    /// (at most 255 for chiapos' R values, so never 0xff) can come out of [`decode`].
    pub fn can_yield(&self, symbol: u8) -> bool {
        usize::from(symbol) < self.symbol_count
    }
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
/// Never panics and always terminates, whatever the bytes of `src`. Does not allocate. A thin
/// wrapper over [`Stream`], at no cost in speed.
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
    let mut stream = Stream::new(table, src, max_out)?;
    match dst.get_mut(..max_out) {
        // At most `dst.len() <= max_out - 1` symbols: the limit cannot be reached.
        None => Ok(stream.fill(dst)),
        Some(dst) => {
            // Room for every symbol the limit allows, so only the limit can stop `fill` before
            // the stream ends.
            let n = stream.fill(dst);
            if stream.phase == Phase::Ended {
                Ok(n)
            } else {
                Err(FseError::TooManySymbols { max_out })
            }
        }
    }
}

/// Decodes two independent streams at once: [`decode`] of each, with the same results, but the
/// two streams' decoding steps interleaved, so that the table loads of one overlap those of
/// the other (a lone stream waits on each load: its two states share one bit position).
///
/// Each stream is `(table, src, max_out, dst)` as in [`decode`]; the results are in the same
/// order.
pub fn decode_pair(
    a: (&DTable, &[u8], usize, &mut [u8]),
    b: (&DTable, &[u8], usize, &mut [u8]),
) -> [Result<usize, FseError>; 2] {
    let (table_a, src_a, max_a, dst_a) = a;
    let (table_b, src_b, max_b, dst_b) = b;
    let (mut sa, mut sb) =
        match (Stream::new(table_a, src_a, max_a), Stream::new(table_b, src_b, max_b)) {
            (Ok(sa), Ok(sb)) => (sa, sb),
            (sa, sb) => {
                return [
                    sa.and_then(|s| finish(s, 0, max_a, dst_a)),
                    sb.and_then(|s| finish(s, 0, max_b, dst_b)),
                ]
            }
        };
    let room_a = dst_a.len().min(max_a);
    let room_b = dst_b.len().min(max_b);
    let (na, nb) =
        Stream::fill_pair_fast(&mut sa, &mut dst_a[..room_a], &mut sb, &mut dst_b[..room_b]);
    [finish(sa, na, max_a, dst_a), finish(sb, nb, max_b, dst_b)]
}

/// [`decode`] of the rest of `stream`, after its first `done` symbols were written to `dst`.
fn finish(
    mut stream: Stream<'_, '_>,
    done: usize,
    max_out: usize,
    dst: &mut [u8],
) -> Result<usize, FseError> {
    match dst.get_mut(..max_out) {
        None => Ok(done + stream.fill(&mut dst[done..])),
        Some(dst) => {
            let n = done + stream.fill(&mut dst[done..]);
            if stream.phase == Phase::Ended {
                Ok(n)
            } else {
                Err(FseError::TooManySymbols { max_out })
            }
        }
    }
}

/// Decodes a stream a chunk at a time, so a caller scanning for a running sum can stop as soon
/// as it has what it needs (the C3 scan of a lookup reads on average half a 10000-symbol park).
///
/// Whatever the chunk sizes, the chunks concatenate to what [`decode`] writes given a `dst` of
/// at least `max_out` bytes. Where [`decode`] fails with [`FseError::TooManySymbols`], the
/// stream yields its first `max_out - 1` symbols (none if `max_out` is 0), then that error.
/// Never panics and does not allocate; as fast as [`decode`] for chunks of a few hundred
/// symbols.
pub struct Stream<'t, 's> {
    cells: &'t [Cell; TABLE_SIZE],
    bits: BackwardBits<'s>,
    /// The state whose symbol comes next, and the other one.
    next: usize,
    other: usize,
    /// How many more symbols the decoding loop may emit: chiapos refuses to write one at index
    /// `max_out - 1` or above. The final symbol (emitted once the bits have run out) always
    /// fits, so it does not count.
    budget: usize,
    max_out: usize,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The decoding loop goes on.
    Running,
    /// The bits have run out; the symbol of state `next` is the last one, not yet emitted.
    Last,
    /// Every symbol has been emitted.
    Ended,
}

impl fmt::Debug for Stream<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("max_out", &self.max_out)
            .field("budget", &self.budget)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<'t, 's> Stream<'t, 's> {
    /// Prepares to decode `src` with `table`, allowing at most `max_out` symbols as
    /// [`decode`] does.
    ///
    /// # Errors
    ///
    /// [`FseError::EmptyStream`] for an empty `src`, [`FseError::MissingEndMark`] if its last
    /// byte is zero.
    pub fn new(table: &'t DTable, src: &'s [u8], max_out: usize) -> Result<Self, FseError> {
        let mut bits = BackwardBits::new(src)?;
        let next = bits.read(TABLE_LOG);
        let other = bits.read(TABLE_LOG);
        Ok(Stream {
            cells: &table.cells,
            bits,
            next,
            other,
            budget: max_out.saturating_sub(1),
            max_out,
            phase: Phase::Running,
        })
    }

    /// Fills `out` with the next symbols and returns how many were written: `out.len()` unless
    /// the stream ends first, 0 once it has ended (or if `out` is empty).
    ///
    /// # Errors
    ///
    /// [`FseError::TooManySymbols`] where [`decode`] fails with it: the next symbol would be
    /// one too many for `max_out`. All the symbols before it have been returned by then, and
    /// every later call (with a non-empty `out`) fails the same way.
    pub fn next_chunk(&mut self, out: &mut [u8]) -> Result<usize, FseError> {
        let n = self.fill(out);
        if n == 0 && !out.is_empty() && self.phase == Phase::Running {
            // Only the limit stops `fill` without output before the stream ends.
            return Err(FseError::TooManySymbols { max_out: self.max_out });
        }
        Ok(n)
    }

    /// [`Stream::next_chunk`]'s symbols for two streams at once, their decoding steps
    /// interleaved: fills `out_a` from `a` and `out_b` from `b` (each until full or its stream
    /// stops) and returns how many each wrote. Errors are left to the next `next_chunk` of a
    /// stream that stopped short, which reports them as it would have.
    pub fn fill_two(
        a: &mut Stream<'_, '_>,
        out_a: &mut [u8],
        b: &mut Stream<'_, '_>,
        out_b: &mut [u8],
    ) -> (usize, usize) {
        let (na, nb) = Stream::fill_pair_fast(a, out_a, b, out_b);
        (na + a.fill(&mut out_a[na..]), nb + b.fill(&mut out_b[nb..]))
    }

    /// The fast loop of [`Stream::fill`] for two streams at once, six symbols of each in turn,
    /// while both are far from their start and have room (`out_a`, `out_b` no longer than
    /// their streams' budgets). Returns how many symbols each wrote; [`Stream::fill`] goes on
    /// from there.
    fn fill_pair_fast(
        a: &mut Stream<'_, '_>,
        out_a: &mut [u8],
        b: &mut Stream<'_, '_>,
        out_b: &mut [u8],
    ) -> (usize, usize) {
        let mut n = 0;
        if a.phase != Phase::Running || b.phase != Phase::Running {
            return (0, 0);
        }
        let (cells_a, cells_b) = (a.cells, b.cells);
        let room = out_a.len().min(out_b.len()).min(a.budget).min(b.budget);
        let (mut bits_a, mut bits_b) = (a.bits, b.bits);
        let (mut next_a, mut other_a, mut next_b, mut other_b) = (a.next, a.other, b.next, b.other);
        if n + 6 <= room && bits_a.start >= 16 && bits_b.start >= 16 {
            bits_a.refill_fast();
            bits_b.refill_fast();
            while n + 6 <= room && bits_a.start >= 16 && bits_b.start >= 16 {
                let oa = &mut out_a[n..n + 6];
                let ob = &mut out_b[n..n + 6];
                oa[0] = step_refilling(cells_a, &mut next_a, &mut bits_a);
                ob[0] = step_refilling(cells_b, &mut next_b, &mut bits_b);
                oa[1] = step_fast(cells_a, &mut other_a, &mut bits_a);
                ob[1] = step_fast(cells_b, &mut other_b, &mut bits_b);
                oa[2] = step_fast(cells_a, &mut next_a, &mut bits_a);
                ob[2] = step_fast(cells_b, &mut next_b, &mut bits_b);
                oa[3] = step_refilling(cells_a, &mut other_a, &mut bits_a);
                ob[3] = step_refilling(cells_b, &mut other_b, &mut bits_b);
                oa[4] = step_fast(cells_a, &mut next_a, &mut bits_a);
                ob[4] = step_fast(cells_b, &mut next_b, &mut bits_b);
                oa[5] = step_fast(cells_a, &mut other_a, &mut bits_a);
                ob[5] = step_fast(cells_b, &mut other_b, &mut bits_b);
                n += 6;
            }
        }
        (a.bits, a.next, a.other) = (bits_a, next_a, other_a);
        (b.bits, b.next, b.other) = (bits_b, next_b, other_b);
        a.budget -= n;
        b.budget -= n;
        (n, n)
    }

    /// Writes symbols to `out` until it is full, the stream ends (`phase` becomes `Ended`, or
    /// `Last` if `out` has no room left for the final symbol) or the limit is reached
    /// (`budget` becomes 0). Returns how many were written.
    #[inline(always)]
    fn fill(&mut self, out: &mut [u8]) -> usize {
        let cells = self.cells;
        let mut n = 0;
        if self.phase == Phase::Running {
            let room = out.len().min(self.budget);
            let mut bits = self.bits;
            let (mut next, mut other) = (self.next, self.other);

            // Far from the start of the stream: six symbols, two refills, no end test (the C
            // decoder's unrolled loop relies on the same bound). Each refill starts before the
            // read it would otherwise delay, which still uses the old window; see
            // `step_refilling`.
            if n + 6 <= room && bits.start >= 16 {
                bits.refill_fast();
                while n + 6 <= room && bits.start >= 16 {
                    let out = &mut out[n..n + 6];
                    out[0] = step_refilling(cells, &mut next, &mut bits);
                    out[1] = step_fast(cells, &mut other, &mut bits);
                    out[2] = step_fast(cells, &mut next, &mut bits);
                    out[3] = step_refilling(cells, &mut other, &mut bits);
                    out[4] = step_fast(cells, &mut next, &mut bits);
                    out[5] = step_fast(cells, &mut other, &mut bits);
                    n += 6;
                }
            }
            // Near the start: four symbols while at least 4 * 14 unread bits remain, so that
            // no read can run past the start.
            while n + 4 <= room && bits.refill_and_check(4 * TABLE_LOG) {
                let out = &mut out[n..n + 4];
                out[0] = step_fast(cells, &mut next, &mut bits);
                out[1] = step_fast(cells, &mut other, &mut bits);
                out[2] = step_fast(cells, &mut next, &mut bits);
                out[3] = step_fast(cells, &mut other, &mut bits);
                n += 4;
            }
            // One symbol at a time, watching for the end of the stream (§8.3 literally).
            while n < room {
                let cell = cells[next & STATE_MASK];
                out[n] = cell.symbol;
                n += 1;
                bits.refill();
                next = usize::from(cell.new_state) + bits.read(cell.nb_bits());
                std::mem::swap(&mut next, &mut other);
                if bits.overrun() {
                    // The other state still holds one symbol (the encoder flushed both).
                    self.phase = Phase::Last;
                    break;
                }
            }

            self.bits = bits;
            self.next = next;
            self.other = other;
            self.budget -= n;
        }
        if self.phase == Phase::Last && n < out.len() {
            out[n] = cells[self.next & STATE_MASK].symbol;
            n += 1;
            self.phase = Phase::Ended;
        }
        n
    }
}

/// [`step_fast`] that also moves the window for the next reads. The window is loaded from
/// where the stream stands before this step's read, which still uses the current window, so
/// the load overlaps with this step instead of delaying the next one (about 4 % faster than
/// refilling between two reads).
///
/// Requires `bits.start >= 8` and at least 14 unread bits in the window; leaves at least
/// 57 - 14 in it.
#[inline(always)]
fn step_refilling(
    cells: &[Cell; TABLE_SIZE],
    state: &mut usize,
    bits: &mut BackwardBits<'_>,
) -> u8 {
    let mut ahead = *bits;
    ahead.refill_fast();
    let before = bits.consumed;
    let symbol = step_fast(cells, state, bits);
    ahead.consumed += bits.consumed - before;
    *bits = ahead;
    symbol
}

/// One decoding step for a read that cannot run past the start of the stream.
///
/// The critical path of the decoder is table load -> shift -> OR -> table load, once per
/// symbol of each state: the table is 64 KiB, half of it misses L1, so every cycle saved
/// around the load counts. Hence the stored `shift` (no subtraction), and `|` rather than `+`
/// (the low `nbBits` bits of `new_state` are zero), which makes the new state provably below
/// TABLE_SIZE: the next load of this state needs neither a mask nor a bounds check. Where the
/// compiler cannot see that bound (the first load of each state in a loop iteration),
/// [`cell_of`] checks it with a predicted branch rather than an AND on the critical path.
#[inline(always)]
fn step_fast(cells: &[Cell; TABLE_SIZE], state: &mut usize, bits: &mut BackwardBits<'_>) -> u8 {
    let cell = cell_of(cells, *state);
    *state = (usize::from(cell.new_state) & STATE_MASK) | bits.read_fast(u32::from(cell.shift));
    cell.symbol
}

/// The cell of `state`, which is always below TABLE_SIZE (the table's new states plus the bits
/// read stay below it, §8.2); anything else would give an empty cell rather than panic.
#[inline(always)]
fn cell_of(cells: &[Cell; TABLE_SIZE], state: usize) -> Cell {
    match cells.get(state) {
        Some(&cell) => cell,
        None => Cell::default(),
    }
}

/// Reads the stream as one little-endian integer, from just below the end mark (the highest
/// set bit of the last byte) down toward bit 0, through a 64-bit window.
#[derive(Clone, Copy)]
struct BackwardBits<'a> {
    src: &'a [u8],
    /// `src[start..start + 8]` as a little-endian integer, zero past the end of `src`.
    window: u64,
    start: usize,
    /// How many bits of `window`, from its top, have been read or lie above the end mark.
    /// The unread bits are the low `64 - consumed` bits of `window` plus all of `src[..start]`.
    /// Above 64 only after a read ran past bit 0 of the stream, which requires `start == 0`:
    /// callers refill before the window can run dry.
    consumed: u32,
}

impl<'a> BackwardBits<'a> {
    fn new(src: &'a [u8]) -> Result<Self, FseError> {
        let &last = src.last().ok_or(FseError::EmptyStream)?;
        if last == 0 {
            return Err(FseError::MissingEndMark);
        }
        let start = src.len().saturating_sub(8);
        // The end mark and the zero bits above it, and the zero padding of a short stream.
        let consumed = last.leading_zeros() + 1 + 8 * (8 - (src.len() - start)) as u32;
        Ok(BackwardBits { src, window: load_le(src, start), start, consumed })
    }

    /// Moves the window back by whole bytes so that fewer than 8 of its bits are consumed.
    /// Requires `start >= 8` and `consumed <= 64`, so that it cannot reach the start of the
    /// stream: no branch on the data.
    #[inline(always)]
    fn refill_fast(&mut self) {
        debug_assert!(self.start >= 8 && self.consumed <= 64);
        self.start -= (self.consumed >> 3) as usize;
        self.consumed &= 7;
        // `start + 8 <= src.len()` always holds; the test only keeps this panic-free.
        if let Some(word) = self.src.get(self.start..self.start + 8) {
            if let Some(word) = word.first_chunk::<8>() {
                self.window = u64::from_le_bytes(*word);
            }
        }
    }

    /// Moves the window back so that it holds as many unread bits as fit (at least 57
    /// unless the start of the stream is reached).
    #[inline(always)]
    fn refill(&mut self) {
        if self.start == 0 {
            return;
        }
        debug_assert!(self.consumed <= 64);
        let back = ((self.consumed >> 3) as usize).min(self.start);
        self.start -= back;
        self.consumed -= 8 * back as u32;
        self.window = load_le(self.src, self.start);
    }

    /// Refills, then tells whether at least `nb` unread bits remain.
    #[inline(always)]
    fn refill_and_check(&mut self, nb: u32) -> bool {
        self.refill();
        self.consumed + nb <= 64
    }

    /// True once a read has run past bit 0 of the stream.
    #[inline(always)]
    fn overrun(&self) -> bool {
        self.consumed > 64
    }

    /// Reads `TABLE_LOG - shift` (1..=14) bits, which must all be in the window. The result is
    /// provably below 2^14.
    #[inline(always)]
    fn read_fast(&mut self, shift: u32) -> usize {
        debug_assert!(shift < TABLE_LOG && self.consumed + TABLE_LOG - shift <= 64);
        // The top 14 unread bits depend only on earlier reads: once `shift` is loaded from the
        // table, a single shift remains.
        let top = self.window.wrapping_shl(self.consumed) >> (64 - TABLE_LOG);
        self.consumed = self.consumed + TABLE_LOG - shift;
        top.wrapping_shr(shift) as usize
    }

    /// Reads `nb` (1..=14) bits after a refill. Bits below bit 0 of the stream read as zero,
    /// as in the C reader: that matters only for the two initial states of a stream shorter
    /// than 28 payload bits, whose symbols are emitted; any other read that runs past the
    /// start ends decoding before its value is used.
    #[inline(always)]
    fn read(&mut self, nb: u32) -> usize {
        debug_assert!((1..=TABLE_LOG).contains(&nb));
        // The unread bits of the window at the top, zeros below them (all zeros once they are
        // used up).
        let top = self.window.checked_shl(self.consumed).unwrap_or(0);
        self.consumed += nb;
        top.wrapping_shr(64u32.wrapping_sub(nb)) as usize
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
            cell.shift = x.ilog2() as u8;
            cell.new_state = ((x << nb_bits) as usize - TABLE_SIZE) as u16;
            // What the decoder relies on: reads of 1 to 14 bits (its fast paths reserve
            // 14 bits a read), every next state below TABLE_SIZE, and new states whose low
            // `nb_bits` bits are zero (it ORs the bits read in).
            assert!((1..=TABLE_LOG).contains(&nb_bits));
            assert_eq!(cell.nb_bits(), nb_bits);
            assert!(usize::from(cell.new_state) + (1 << nb_bits) <= TABLE_SIZE);
            assert_eq!(cell.new_state & ((1 << nb_bits) - 1), 0);
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

    /// Decodes `src` through a [`Stream`], taking chunk sizes from `chunks` in turn (cycled;
    /// at least one must be non-zero). Returns the symbols, or the error with the symbols
    /// yielded before it.
    fn stream_vec(
        table: &DTable,
        src: &[u8],
        max_out: usize,
        chunks: &[usize],
    ) -> Result<Vec<u8>, (FseError, Vec<u8>)> {
        assert!(chunks.iter().any(|&size| size > 0));
        let mut stream = Stream::new(table, src, max_out).map_err(|error| (error, Vec::new()))?;
        let mut out = Vec::new();
        for &size in chunks.iter().cycle() {
            let mut chunk = vec![0xAA; size];
            match stream.next_chunk(&mut chunk) {
                Ok(0) if size > 0 => break,
                Ok(n) => {
                    assert!(n <= size);
                    out.extend_from_slice(&chunk[..n]);
                    assert!(out.len() <= max_out, "{} symbols, max_out {max_out}", out.len());
                }
                Err(error) => {
                    // The error stays.
                    assert_eq!(stream.next_chunk(&mut [0; 5]), Err(error.clone()));
                    return Err((error, out));
                }
            }
        }
        // So does the end.
        assert_eq!(stream.next_chunk(&mut [0; 5]), Ok(0));
        Ok(out)
    }

    /// Streaming in chunks gives what `decode` gives: the same symbols or the same error,
    /// after the `max_out - 1` symbols before the limit for `TooManySymbols`.
    fn assert_stream_matches_decode(table: &DTable, src: &[u8], max_out: usize, chunks: &[usize]) {
        match (decode_vec(table, src, max_out), stream_vec(table, src, max_out, chunks)) {
            (Ok(expected), Ok(out)) => assert_eq!(out, expected, "chunks {chunks:?}"),
            (Err(FseError::TooManySymbols { .. }), Err((error, out))) => {
                assert_eq!(error, FseError::TooManySymbols { max_out });
                assert_eq!(out.len(), max_out.saturating_sub(1), "chunks {chunks:?}");
                let full = decode_reference(table, src, usize::MAX).unwrap();
                assert_eq!(out, full[..out.len()], "chunks {chunks:?}");
            }
            (Err(expected), Err((error, out))) => {
                assert_eq!(error, expected);
                assert!(out.is_empty());
            }
            (expected, streamed) => panic!("decode: {expected:?}, stream: {streamed:?}"),
        }
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
            let (bits, overrun) = read(c.nb_bits() as u8);
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
                hasher.update([cell.symbol, cell.nb_bits() as u8]);
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
    fn only_a_table_of_256_symbols_yields_0xff() {
        // The decoders skip the scan for the bad delta 0xff on chiapos' tables: that relies on
        // every symbol of every cell being below the table's symbol count.
        for table in (1..=6).map(park_table).chain([c3_table()]) {
            assert!(!table.can_yield(0xff), "R = {}", table.r);
            assert!((0..TABLE_SIZE).all(|s| table.can_yield(table.cells[s].symbol)));
        }
        let counts = vec![(TABLE_SIZE / 256) as i16; 256];
        let wide = DTable::from_counts(0.5, &counts);
        assert!(wide.can_yield(0xff));
        assert!(wide.cells.iter().any(|c| c.symbol == 0xff));
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
            assert_eq!(table.cells[TABLE_SIZE - 1].nb_bits(), 14);
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

    #[test]
    fn stream_yields_the_spec_vectors_in_any_chunks() {
        for (table, max_out, stream, expected) in spec_vectors() {
            let src = hex::decode(stream).unwrap();
            for size in 1..=expected.len() + 1 {
                assert_eq!(
                    stream_vec(table, &src, max_out, &[size]),
                    Ok(expected.clone()),
                    "{stream} chunks of {size}"
                );
            }
            assert_stream_matches_decode(table, &src, max_out, &[0, 1, 0, 2, 5]);
            // Every limit, and chunks that end before, at and after the symbol it refuses.
            for limit in 0..=expected.len() {
                for size in [1, 2, 3, 4, 7, 100] {
                    assert_stream_matches_decode(table, &src, limit, &[size]);
                }
            }
        }
    }

    #[test]
    fn stream_of_long_streams_matches_decode() {
        // From 16 bytes (where the six-symbol loop starts) up, with ends of stream at every
        // offset within a group for the all-ones streams, and chunk sizes that split the
        // four- and six-symbol groups anywhere.
        let chunk_sets: [&[usize]; 11] = [
            &[1],
            &[2],
            &[3],
            &[4],
            &[5],
            &[6],
            &[7],
            &[64],
            &[255],
            &[1 << 20],
            &[0, 13, 1, 250, 4],
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut streams: Vec<Vec<u8>> = (1..=40).map(|len| vec![0xFF; len]).collect();
        for len in [15, 16, 17, 23, 24, 25, 31, 40, 100, 896, 1433, 3000, 10000] {
            let mut src: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            src[len - 1] |= 0x20;
            streams.push(src);
        }
        for src in &streams {
            for table in [park_table(1), park_table(4), c3_table()] {
                for max_out in [2047, 10000, 40000] {
                    for chunks in chunk_sets {
                        assert_stream_matches_decode(table, src, max_out, chunks);
                    }
                }
            }
        }
    }

    #[test]
    fn stream_rejects_what_decode_rejects() {
        let table = c3_table();
        assert_eq!(Stream::new(table, &[], 10000).unwrap_err(), FseError::EmptyStream);
        assert_eq!(Stream::new(table, &[0x12, 0x00], 10000).unwrap_err(), FseError::MissingEndMark);
        let stream = Stream::new(table, &[0x80], 10000).unwrap();
        assert!(format!("{stream:?}").contains("10000"));
    }

    fn any_table() -> impl Strategy<Value = &'static DTable> {
        (0..R_VALUES.len()).prop_map(table)
    }

    /// `decode_pair` writes and returns, for each stream, what `decode` does alone.
    fn assert_pair_matches_decode(
        a: (&DTable, &[u8], usize, usize),
        b: (&DTable, &[u8], usize, usize),
    ) {
        let alone = |(table, src, max_out, dst_len): (&DTable, &[u8], usize, usize)| {
            let mut dst = vec![0u8; dst_len];
            let result = decode(table, src, max_out, &mut dst);
            (result, dst)
        };
        let (mut dst_a, mut dst_b) = (vec![0u8; a.3], vec![0u8; b.3]);
        let [ra, rb] = decode_pair((a.0, a.1, a.2, &mut dst_a), (b.0, b.1, b.2, &mut dst_b));
        assert_eq!((ra, dst_a), alone(a), "first stream");
        assert_eq!((rb, dst_b), alone(b), "second stream");
    }

    /// `len` pseudo-random bytes (xorshift from `seed`) that end in a valid end mark.
    fn random_stream(seed: &mut u64, len: usize) -> Vec<u8> {
        let mut src: Vec<u8> = (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (*seed >> 24) as u8
            })
            .collect();
        if let Some(last) = src.last_mut() {
            *last |= 0x40;
        }
        src
    }

    /// What [`stream_vec`] returns: the symbols, or the error and the symbols before it.
    type Chunked = Result<Vec<u8>, (FseError, Vec<u8>)>;

    /// Two streams started together with [`Stream::fill_two`] (prefixes of `pre_a`, `pre_b`
    /// symbols) and then read on alone in chunks of 256 yield what each yields alone.
    fn assert_fill_two_then_chunks_match(
        a: (&DTable, &[u8], usize, usize),
        b: (&DTable, &[u8], usize, usize),
    ) {
        let together = || -> [Chunked; 2] {
            let (sa, sb) = (Stream::new(a.0, a.1, a.2), Stream::new(b.0, b.1, b.2));
            let (Ok(mut sa), Ok(mut sb)) = (sa, sb) else {
                return [a, b].map(|(t, src, max, _)| stream_vec(t, src, max, &[256]));
            };
            let (mut pa, mut pb) = (vec![0u8; a.3], vec![0u8; b.3]);
            let (na, nb) = Stream::fill_two(&mut sa, &mut pa, &mut sb, &mut pb);
            let rest = |stream: &mut Stream<'_, '_>, mut out: Vec<u8>| {
                let mut chunk = [0u8; 256];
                loop {
                    match stream.next_chunk(&mut chunk) {
                        Ok(0) => return Ok(out),
                        Ok(n) => out.extend_from_slice(&chunk[..n]),
                        Err(e) => return Err((e, out)),
                    }
                }
            };
            pa.truncate(na);
            pb.truncate(nb);
            [rest(&mut sa, pa), rest(&mut sb, pb)]
        };
        let [ta, tb] = together();
        assert_eq!(ta, stream_vec(a.0, a.1, a.2, &[256]), "first stream");
        assert_eq!(tb, stream_vec(b.0, b.1, b.2, &[256]), "second stream");
    }

    #[test]
    fn streams_started_together_go_on_alone() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = |len| random_stream(&mut seed, len);
        for (len_a, len_b) in [(3000, 3000), (2500, 300), (17, 3000), (0, 900)] {
            let (src_a, src_b) = (random(len_a), random(len_b));
            for (pre_a, pre_b) in [(0, 0), (4000, 2000), (10000, 10000), (5, 9000), (9999, 1)] {
                assert_fill_two_then_chunks_match(
                    (c3_table(), &src_a, 10000, pre_a),
                    (c3_table(), &src_b, 10000, pre_b),
                );
            }
        }
    }

    #[test]
    fn pairs_of_long_streams_decode_as_each_alone() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut random = |len| random_stream(&mut seed, len);
        for (len_a, len_b) in [(896, 896), (1431, 300), (17, 3000), (3000, 16), (0, 900), (900, 5)]
        {
            let (src_a, src_b) = (random(len_a), random(len_b));
            for (max_a, dst_a, max_b, dst_b) in
                [(2047, 2047, 2047, 2047), (2047, 1000, 10000, 10000), (20000, 20000, 300, 40)]
            {
                assert_pair_matches_decode(
                    (park_table(1), &src_a, max_a, dst_a),
                    (c3_table(), &src_b, max_b, dst_b),
                );
            }
        }
    }

    proptest! {
        /// Pairs decoded whole (`decode_pair`, `room_*`: the destinations' lengths), and
        /// pairs started together (`Stream::fill_two`, `room_*`: the prefixes) and read on
        /// alone, against each stream alone.
        #[test]
        fn arbitrary_pairs_decode_as_each_alone(
            table_a in any_table(),
            table_b in any_table(),
            src_a in proptest::collection::vec(any::<u8>(), 0..300),
            src_b in proptest::collection::vec(any::<u8>(), 0..300),
            max_a in 0usize..600,
            max_b in 0usize..600,
            room_a in 0usize..600,
            room_b in 0usize..600,
        ) {
            let (a, b) = ((table_a, &src_a[..], max_a, room_a), (table_b, &src_b[..], max_b, room_b));
            assert_pair_matches_decode(a, b);
            assert_fill_two_then_chunks_match(a, b);
        }

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
        fn arbitrary_bytes_stream_in_arbitrary_chunks_like_decode(
            table in any_table(),
            src in proptest::collection::vec(any::<u8>(), 0..700),
            max_out in prop_oneof![0usize..40, 0usize..2500],
            chunks in proptest::collection::vec(0usize..80, 0..12),
        ) {
            let mut chunks = chunks;
            chunks.push(1);
            assert_stream_matches_decode(table, &src, max_out, &chunks);
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
