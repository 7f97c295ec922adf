//! An opened plot: the header plus C2, the only table kept in memory (`plot-format.md` §10.2,
//! §16.1). Opening is a small sans-IO state machine, like every lookup.

use crate::error::PlotError;
use crate::header::{parse_header, Header, HeaderStatus, HEADER_PROBE_BYTES};
use crate::layout::{Geometry, CHECKPOINT1_INTERVAL, CHECKPOINT2_INTERVAL};
use crate::lookup::{Goal, Lookup, Mode};
use crate::ReadRequest;

/// Everything a lookup needs to know about a plot's tables. Small and `Copy`, so lookups own
/// one and never borrow the [`Plot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    pub geometry: Geometry,
    pub plot_id: [u8; 32],
    /// P1..P7, C1, C2, C3 (index 0 is P1).
    pub pointers: [u64; 10],
    pub file_len: u64,
    /// C1 slots, the zero terminator included (from the pointers).
    pub c1_slots: u64,
}

impl Tables {
    pub fn k(&self) -> u8 {
        self.geometry.k()
    }

    /// The first byte after table `table` (1..=10): where reads of that table must stop.
    pub fn table_end(&self, table: u8) -> u64 {
        match table {
            1..=9 => self.pointers[usize::from(table)],
            _ => self.file_len,
        }
    }

    pub fn table_start(&self, table: u8) -> u64 {
        self.pointers[usize::from(table) - 1]
    }

    /// A read of `len` bytes at `offset` inside table `table`, clipped at the table's end.
    pub(crate) fn read_in_table(
        &self,
        table: u8,
        offset: u64,
        len: u64,
    ) -> Result<ReadRequest, PlotError> {
        let end = self.table_end(table);
        if offset >= end {
            return Err(PlotError::PastTableEnd { table, offset, end });
        }
        let len = len.min(end - offset);
        // Every length here comes from k alone (parks, C1 groups), far below 4 GiB.
        Ok(ReadRequest { offset, len: u32::try_from(len).unwrap_or(u32::MAX) })
    }
}

/// An opened plot. About 1 KiB of memory, whatever the plot size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plot {
    header: Header,
    tables: Tables,
    c2: Vec<u64>,
}

impl Plot {
    /// Builds the plot from its parsed header and the bytes of its C2 table.
    pub fn new(header: Header, file_len: u64, c2_bytes: &[u8]) -> Result<Plot, PlotError> {
        let geometry = Geometry::new(header.k);
        let entry = geometry.checkpoint_entry_bytes();
        let p = header.table_pointers;
        let c1_slots = (p[8] - p[7]) / entry;
        let c3_needed = p[9] + c1_slots.saturating_sub(1) * geometry.c3_park_bytes();
        if c3_needed > file_len {
            return Err(PlotError::Truncated { needed: c3_needed, len: file_len });
        }
        let tables = Tables { geometry, plot_id: header.id, pointers: p, file_len, c1_slots };
        let c2 = parse_c2(geometry, c2_bytes)?;
        Ok(Plot { header, tables, c2 })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn id(&self) -> &[u8; 32] {
        &self.header.id
    }

    pub fn k(&self) -> u8 {
        self.header.k
    }

    pub fn memo(&self) -> &[u8] {
        &self.header.memo
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn c2(&self) -> &[u64] {
        &self.c2
    }

    /// The qualities of `challenge` (and, with `Goal::QualitiesAndProofs`, their proofs).
    pub fn lookup(&self, challenge: &[u8; 32], goal: Goal, mode: Mode) -> Lookup {
        Lookup::new(self.tables, &self.c2, challenge, goal, mode)
    }
}

/// The C2 read of a plot, bounded by what a plot of this k can need (never by file bytes).
pub fn c2_read(header: &Header) -> Result<ReadRequest, PlotError> {
    let g = Geometry::new(header.k);
    let bytes = header.table_pointers[9] - header.table_pointers[8];
    // N7 < 2^(k+1), so C1 has fewer than 2^(k+1)/10^4 entries and C2 fewer than that / 10^4;
    // bladebit pads C2 up to a file-system block, hence the slack.
    let max_entries = (1u64 << (header.k + 1)) / (CHECKPOINT1_INTERVAL * CHECKPOINT2_INTERVAL) + 2;
    let limit = max_entries * g.checkpoint_entry_bytes() + 64 * 1024;
    if bytes > limit {
        return Err(PlotError::C2TooLarge { bytes, limit });
    }
    // `limit` is far below 4 GiB for every k <= 50.
    Ok(ReadRequest { offset: header.table_pointers[8], len: bytes as u32 })
}

/// chiapos' C2 loading: every slot but the last, stopping at the first value below its
/// predecessor (the zero terminator, or padding).
fn parse_c2(g: Geometry, bytes: &[u8]) -> Result<Vec<u64>, PlotError> {
    let entry = g.checkpoint_entry_bytes() as usize;
    let slots = (bytes.len() / entry) as u64;
    if slots < 2 {
        return Err(PlotError::InvalidC2Size { slots });
    }
    let mut c2 = Vec::new();
    for chunk in bytes.chunks_exact(entry).take(slots as usize - 1) {
        let v = crate::bits::get_bits(chunk, 0, u32::from(g.k()));
        if c2.last().is_some_and(|&last| v < last) {
            break;
        }
        c2.push(v);
    }
    Ok(c2)
}

/// Opens a plot without doing I/O: ask [`PlotOpener::next_read`], answer with
/// [`PlotOpener::supply`] until it returns the plot.
#[derive(Debug)]
pub struct PlotOpener {
    file_len: u64,
    header: Option<Header>,
    next: ReadRequest,
}

impl PlotOpener {
    pub fn new(file_len: u64) -> PlotOpener {
        let len = HEADER_PROBE_BYTES.min(file_len) as u32;
        PlotOpener { file_len, header: None, next: ReadRequest { offset: 0, len } }
    }

    pub fn next_read(&self) -> ReadRequest {
        self.next
    }

    /// Takes the bytes of [`Self::next_read`]; returns the plot once it is open.
    pub fn supply(&mut self, bytes: &[u8]) -> Result<Option<Plot>, PlotError> {
        if bytes.len() != self.next.len as usize {
            return Err(PlotError::ShortRead {
                offset: self.next.offset,
                len: self.next.len,
                got: bytes.len(),
            });
        }
        match self.header.take() {
            None => match parse_header(bytes, self.file_len) {
                Ok(header) => {
                    self.next = c2_read(&header)?;
                    self.header = Some(header);
                    Ok(None)
                }
                Err(HeaderStatus::NeedBytes(n)) if n > u64::from(self.next.len) => {
                    // Bounded: both header length fields are 16 bits.
                    self.next = ReadRequest { offset: 0, len: n as u32 };
                    Ok(None)
                }
                Err(HeaderStatus::NeedBytes(n)) => {
                    Err(PlotError::HeaderTruncated { needed: n, len: self.file_len })
                }
                Err(HeaderStatus::Invalid(e)) => Err(e),
            },
            Some(header) => Plot::new(header, self.file_len, bytes).map(Some),
        }
    }
}
