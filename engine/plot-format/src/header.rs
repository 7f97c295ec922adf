//! The file header (`plot-format.md` §4) and the checks that decide whether we can serve a file.

use crate::error::PlotError;
use crate::layout::{Geometry, K_MAX, K_MIN};

pub const V1_MAGIC: &[u8; 19] = b"Proof of Space Plot";
pub const V2_MAGIC: &[u8; 4] = b"PLOT";
pub const FORMAT_DESCRIPTION: &[u8; 4] = b"v1.0";
/// Bytes a reader fetches first; enough for every header with a memo below ~3.9 KiB.
pub const HEADER_PROBE_BYTES: u64 = 4096;
/// Table pointers: P1..P7, C1, C2, C3.
pub const TABLE_POINTERS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// "Proof of Space Plot", format description "v1.0".
    V1,
    /// bladebit's "PLOT" v2 header with compression level 0: laid out like v1 after the header.
    V2,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: HeaderKind,
    pub id: [u8; 32],
    pub k: u8,
    pub memo: Vec<u8>,
    /// Absolute offsets of P1..P7, C1, C2, C3 (index 0 is P1).
    pub table_pointers: [u64; TABLE_POINTERS],
    pub header_len: u64,
}

/// The memo holds the plot's master secret key: `Debug` shows only its length.
impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("kind", &self.kind)
            .field("id", &format_args!("{}", IdHex(&self.id)))
            .field("k", &self.k)
            .field("memo", &format_args!("<{} bytes, redacted>", self.memo.len()))
            .field("table_pointers", &self.table_pointers)
            .field("header_len", &self.header_len)
            .finish()
    }
}

struct IdHex<'a>(&'a [u8; 32]);

impl std::fmt::Display for IdHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_never_shows_the_memo() {
        let h = super::Header {
            kind: super::HeaderKind::V1,
            id: [0xab; 32],
            k: 18,
            memo: vec![0x5e; 128],
            table_pointers: [0; super::TABLE_POINTERS],
            header_len: 0,
        };
        let text = format!("{h:?}");
        assert!(!text.contains("5e") && !text.contains("94"), "{text}");
        assert!(text.contains("abababab") && text.contains("128 bytes, redacted"), "{text}");
    }
}

/// Why [`parse_header`] could not finish: either the header is bad, or more bytes are needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderStatus {
    NeedBytes(u64),
    Invalid(PlotError),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderStatus> {
        let end = self.pos + n;
        if end > self.buf.len() {
            return Err(HeaderStatus::NeedBytes(end as u64));
        }
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HeaderStatus> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16_be(&mut self) -> Result<u16, HeaderStatus> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32_le(&mut self) -> Result<u32, HeaderStatus> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64_be(&mut self) -> Result<u64, HeaderStatus> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Parses the header from the first bytes of a file of `file_len` bytes.
///
/// Returns `NeedBytes(n)` when `prefix` is shorter than the header (the caller reads `n` bytes
/// and calls again; `n` never exceeds `file_len`, and is at most ~128 KiB because both length
/// fields are 16 bits).
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<Header, HeaderStatus> {
    let need = |n: u64| {
        if n > file_len {
            HeaderStatus::Invalid(PlotError::HeaderTruncated { needed: n, len: file_len })
        } else {
            HeaderStatus::NeedBytes(n)
        }
    };
    let mut c = Cursor { buf: prefix, pos: 0 };
    let parsed = (|| {
        let magic4: [u8; 4] = c.array()?;
        if &magic4 == V2_MAGIC {
            return parse_v2(&mut c);
        }
        let rest: [u8; 15] = c.array()?;
        if magic4[..] != V1_MAGIC[..4] || rest[..] != V1_MAGIC[4..] {
            return Err(HeaderStatus::Invalid(PlotError::BadMagic));
        }
        let id = c.array::<32>()?;
        let k = c.array::<1>()?[0];
        let description_len = c.u16_be()?;
        if usize::from(description_len) != FORMAT_DESCRIPTION.len() {
            let shown = c.take(usize::from(description_len).min(16)).unwrap_or(&[]);
            return Err(HeaderStatus::Invalid(PlotError::UnknownFormat {
                description: String::from_utf8_lossy(shown).into_owned(),
            }));
        }
        let description = c.take(FORMAT_DESCRIPTION.len())?;
        if description != FORMAT_DESCRIPTION {
            return Err(HeaderStatus::Invalid(PlotError::UnknownFormat {
                description: String::from_utf8_lossy(description).into_owned(),
            }));
        }
        let memo_len = c.u16_be()?;
        let memo = c.take(usize::from(memo_len))?.to_vec();
        let table_pointers = read_pointers(&mut c)?;
        Ok(Header { kind: HeaderKind::V1, id, k, memo, table_pointers, header_len: c.pos as u64 })
    })();
    let header = match parsed {
        Ok(h) => h,
        Err(HeaderStatus::NeedBytes(n)) => return Err(need(n)),
        Err(e) => return Err(e),
    };
    validate(&header, file_len).map_err(HeaderStatus::Invalid)?;
    Ok(header)
}

fn parse_v2(c: &mut Cursor<'_>) -> Result<Header, HeaderStatus> {
    let version = c.u32_le()?;
    if version != 2 {
        return Err(HeaderStatus::Invalid(PlotError::UnsupportedV2Version { version }));
    }
    let id = c.array::<32>()?;
    let k = c.array::<1>()?[0];
    let memo_len = c.u16_be()?;
    let memo = c.take(usize::from(memo_len))?.to_vec();
    let flags = c.u32_le()?;
    let level = if flags & 1 != 0 { c.array::<1>()?[0] } else { 0 };
    if level != 0 {
        return Err(HeaderStatus::Invalid(PlotError::Compressed { level }));
    }
    let table_pointers = read_pointers(c)?;
    Ok(Header { kind: HeaderKind::V2, id, k, memo, table_pointers, header_len: c.pos as u64 })
}

fn read_pointers(c: &mut Cursor<'_>) -> Result<[u64; TABLE_POINTERS], HeaderStatus> {
    let mut pointers = [0u64; TABLE_POINTERS];
    for p in &mut pointers {
        *p = c.u64_be()?;
    }
    Ok(pointers)
}

fn validate(h: &Header, file_len: u64) -> Result<(), PlotError> {
    if !(K_MIN..=K_MAX).contains(&h.k) {
        return Err(PlotError::KOutOfRange { k: h.k });
    }
    let mut previous = h.header_len;
    for (index, &pointer) in h.table_pointers.iter().enumerate() {
        if pointer < previous {
            return Err(PlotError::PointersOutOfOrder { index: index + 1, pointer, previous });
        }
        if pointer > file_len {
            return Err(PlotError::PointerPastEnd { index: index + 1, pointer, len: file_len });
        }
        previous = pointer;
    }
    // Every table must hold at least one park; the last one (C3) is checked against C1 once
    // the C1 slot count is known (`Plot::new`).
    let g = Geometry::new(h.k);
    let p = &h.table_pointers;
    for table in 1..=6u8 {
        let start = p[usize::from(table) - 1];
        let bytes = p[usize::from(table)] - start;
        if bytes < g.park_bytes(table) {
            return Err(PlotError::TableTooSmall { table, bytes });
        }
    }
    if p[7] - p[6] < g.p7_park_bytes() {
        return Err(PlotError::TableTooSmall { table: 7, bytes: p[7] - p[6] });
    }
    Ok(())
}
