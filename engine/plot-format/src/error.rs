//! The decoder's error type. It names the reason; the caller (who knows the file) adds the path.

use crate::fse::FseError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlotError {
    #[error("file is {len} bytes, too small to hold a plot header")]
    TooSmall { len: u64 },
    #[error("not a plot file: no \"Proof of Space Plot\" or \"PLOT\" magic")]
    BadMagic,
    #[error("bladebit v2 header version {version} is not supported (only version 2)")]
    UnsupportedV2Version { version: u32 },
    #[error("compressed plot (compression level {level}) is not supported")]
    Compressed { level: u8 },
    #[error("unknown format description {description:?} (expected \"v1.0\")")]
    UnknownFormat { description: String },
    #[error("k = {k} is outside the supported range 18..=50")]
    KOutOfRange { k: u8 },
    #[error("header is {needed} bytes but the file has only {len}")]
    HeaderTruncated { needed: u64, len: u64 },
    #[error("table pointer {index} ({pointer}) is before the previous one ({previous})")]
    PointersOutOfOrder { index: usize, pointer: u64, previous: u64 },
    #[error("table pointer {index} ({pointer}) is past the end of the file ({len} bytes)")]
    PointerPastEnd { index: usize, pointer: u64, len: u64 },
    #[error("file is truncated: its tables need {needed} bytes, the file has {len}")]
    Truncated { needed: u64, len: u64 },
    #[error("table {table} is {bytes} bytes, less than one park")]
    TableTooSmall { table: u8, bytes: u64 },
    #[error("C2 table holds {slots} entries, need at least 2")]
    InvalidC2Size { slots: u64 },
    #[error("C2 table of {bytes} bytes is larger than any plot of this k needs ({limit})")]
    C2TooLarge { bytes: u64, limit: u64 },
    #[error("read of {len} bytes at {offset} returned {got} bytes")]
    ShortRead { offset: u64, len: u32, got: usize },
    #[error("table {table}: read at {offset} lies past the table's end ({end})")]
    PastTableEnd { table: u8, offset: u64, end: u64 },
    #[error("table {table}: park delta size {size} exceeds the park's budget")]
    DeltasSizeInvalid { table: u8, size: u16 },
    #[error("table {table}: uncompressed park (chiapos cannot read it; use complete mode)")]
    UncompressedPark { table: u8 },
    #[error("table {table}: corrupt FSE stream: {source}")]
    Fse { table: u8, source: FseError },
    #[error("table {table}: bad delta (0xff) in park")]
    BadDelta { table: u8 },
    #[error("table {table}: line point decodes to value {value} out of range")]
    ValueOutOfRange { table: u8, value: u64 },
    #[error("C1 checkpoints disagree with C2 (corrupt checkpoint tables)")]
    CheckpointsInconsistent,
    #[error(
        "challenge matches {count} table-7 entries, more than the limit {limit} (corrupt plot)"
    )]
    TooManyEntries { count: u64, limit: u64 },
    #[error("no proof of space for this challenge at index {index}")]
    NoProof { index: u32 },
    #[error("proof fetched from the plot fails verification: {reason}")]
    InvalidProof { reason: String },
}
