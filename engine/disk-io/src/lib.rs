//! Disk I/O for the shards: the [`Backend`] trait, and its implementations
//! ([`uring::UringBackend`], [`pread::PreadBackend`]; the simulated disk lives in `sim-disk`).
//!
//! The contract every backend keeps (the shard relies on it):
//! - A read is owned by the backend from [`Backend::push`] until its [`Completion`] is handed
//!   out by [`Backend::drain`]; its buffer is never reused or freed before the kernel (or the
//!   simulation) is done with it, even if the caller stopped waiting long ago.
//! - Every pushed read ends in exactly one completion: the bytes, or an error.
//! - Short reads, EAGAIN and EINTR are retried inside the backend; the caller sees full reads
//!   (`len` bytes, or fewer only at end of file) or an error.
//! - At most `reads_in_flight_max` reads are in flight; `push` refuses more.

use std::path::Path;
use std::time::Duration;

pub mod buffer;
pub mod device;
mod file;
pub mod limits;
pub mod pread;
pub mod uring;

pub use buffer::Buffer;
pub use file::open_read;

/// A file opened through a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedFile {
    pub id: FileId,
    pub len: u64,
    /// O_DIRECT in use (false: the file system refused it, or buffered reads were asked for).
    pub direct: bool,
    /// Offsets and lengths of direct reads are aligned to this (1 for buffered reads).
    pub alignment: u32,
}

/// One read: `len` bytes at `offset` of `file`. `tag` is the caller's, returned as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOp {
    pub tag: u64,
    pub file: FileId,
    pub offset: u64,
    pub len: u32,
}

/// The end of one read.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    /// The bytes `[offset, offset + len)` (fewer at end of file), or the error.
    pub result: Result<Buffer, IoError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    #[error("I/O error: {0}")]
    Os(i32),
    #[error("file was closed")]
    Closed,
    #[error("unknown file {0:?}")]
    UnknownFile(FileId),
    #[error("device vanished")]
    Vanished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reads in flight at the limit ({limit})")]
pub struct Full {
    pub limit: usize,
}

/// How to open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectIo {
    /// O_DIRECT where the file system allows it, buffered otherwise (counted and logged once).
    Prefer,
    /// Buffered reads only (warm page cache benchmarks, file systems without O_DIRECT).
    Off,
}

pub trait Backend {
    /// Opens a file for reading.
    fn open(&mut self, path: &Path, direct: DirectIo) -> std::io::Result<OpenedFile>;
    /// Closes a file; reads still in flight complete with [`IoError::Closed`] or their bytes.
    fn close(&mut self, file: FileId);
    /// Queues one read for the next submit.
    fn push(&mut self, op: ReadOp) -> Result<(), Full>;
    /// Submits everything queued, then waits until at least one completion is ready or
    /// `timeout` passes (`None`: do not wait). One system call on io_uring.
    fn submit_and_wait(&mut self, timeout: Option<Duration>) -> std::io::Result<()>;
    /// Moves every ready completion into `out`.
    fn drain(&mut self, out: &mut Vec<Completion>);
    /// Reads pushed and not yet drained.
    fn in_flight(&self) -> usize;
    fn reads_in_flight_max(&self) -> usize;
    /// Gives a drained buffer back for reuse.
    fn recycle(&mut self, buffer: Buffer);
    /// Files opened with [`DirectIo::Prefer`] that are read buffered after all (the file system
    /// refused O_DIRECT at open or at the first read). Backends without O_DIRECT return 0.
    fn direct_fallbacks(&self) -> u64 {
        0
    }
}
