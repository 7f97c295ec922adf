//! [`PreadBackend`]: portable and synchronous. `submit_and_wait` performs every queued read
//! with `pread` (`FileExt::read_at`) on the calling thread, so completions are ready when it
//! returns. It opens and reads files exactly as [`crate::uring::UringBackend`] does (same
//! O_DIRECT fallback, alignment, retries and end-of-file rules, from the shared `file` module):
//! it is the reference for correctness, and the backend where io_uring is missing.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::buffer::BufferPool;
use crate::file::{FallbackLog, FileState, ReadPlan, ReadProgress, Step};
use crate::limits::{
    BUFFER_POOL_BYTES_MAX_DEFAULT, READS_IN_FLIGHT_MAX, READ_BYTES_MAX_DEFAULT,
    READ_RETRIES_MAX_DEFAULT,
};
use crate::{Backend, Buffer, Completion, DirectIo, FileId, Full, IoError, OpenedFile, ReadOp};

/// Limits of a [`PreadBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreadConfig {
    /// Reads pushed and not yet drained (clamped to 1..=[`READS_IN_FLIGHT_MAX`]).
    pub reads_in_flight_max: usize,
    /// Largest `ReadOp::len`; longer reads complete with `IoError::Os(EINVAL)`.
    pub read_bytes_max: u32,
    /// Idle bytes kept in the buffer pool for reuse.
    pub buffer_pool_bytes_max: usize,
    /// EAGAIN / EINTR retries of one read before it fails.
    pub read_retries_max: u32,
}

impl PreadConfig {
    pub fn new(reads_in_flight_max: usize) -> PreadConfig {
        PreadConfig {
            reads_in_flight_max,
            read_bytes_max: READ_BYTES_MAX_DEFAULT,
            buffer_pool_bytes_max: BUFFER_POOL_BYTES_MAX_DEFAULT,
            read_retries_max: READ_RETRIES_MAX_DEFAULT,
        }
    }
}

pub struct PreadBackend {
    config: PreadConfig,
    files: HashMap<FileId, FileState>,
    /// Ids below this were handed out: an absent one was closed.
    file_id_next: u32,
    queued: VecDeque<ReadOp>,
    ready: VecDeque<Completion>,
    pool: BufferPool,
    fallbacks: FallbackLog,
}

impl PreadBackend {
    /// A backend with default limits and `reads_in_flight_max` (clamped to
    /// 1..=[`READS_IN_FLIGHT_MAX`]).
    pub fn new(reads_in_flight_max: usize) -> PreadBackend {
        PreadBackend::with_config(PreadConfig::new(reads_in_flight_max))
    }

    pub fn with_config(mut config: PreadConfig) -> PreadBackend {
        config.reads_in_flight_max = config.reads_in_flight_max.clamp(1, READS_IN_FLIGHT_MAX);
        let max = config.reads_in_flight_max;
        PreadBackend {
            config,
            files: HashMap::new(),
            file_id_next: 0,
            queued: VecDeque::with_capacity(max),
            ready: VecDeque::with_capacity(max),
            pool: BufferPool::new(
                config.buffer_pool_bytes_max,
                buffer_bytes_max(config.read_bytes_max),
            ),
            fallbacks: FallbackLog::default(),
        }
    }

    pub fn config(&self) -> PreadConfig {
        self.config
    }

    /// Files held open.
    pub fn files_open(&self) -> usize {
        self.files.len()
    }

    /// Idle bytes in the buffer pool (at most `buffer_pool_bytes_max`).
    pub fn buffer_pool_bytes(&self) -> usize {
        self.pool.pooled_bytes()
    }

    /// Performs one read to its end (bytes, end of file or error).
    fn read(&mut self, op: ReadOp) -> Result<Buffer, IoError> {
        let Some(file) = self.files.get_mut(&op.file) else {
            return Err(missing(op.file, self.file_id_next));
        };
        if op.len == 0 {
            return Ok(Buffer::from_vec(Vec::new()));
        }
        if op.len > self.config.read_bytes_max {
            return Err(IoError::Os(libc::EINVAL));
        }
        let plan =
            ReadPlan::new(op.offset, op.len, file.alignment).ok_or(IoError::Os(libc::EINVAL))?;
        let mut buffer = self.pool.take(plan.read_bytes as usize, file.memory_alignment);
        let mut progress = ReadProgress::new(plan, file.direct);
        // Bounded: each pass either reads bytes, or spends one of `read_retries_max` retries.
        loop {
            let start = progress.done_bytes as usize;
            let target = &mut buffer.storage_mut()[start..plan.read_bytes as usize];
            let result = match file.file.read_at(target, progress.next_offset()) {
                Ok(n) => Ok(u32::try_from(n).expect("read_at returns at most the u32 asked")),
                Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
            };
            match progress.step(file, result, self.config.read_retries_max) {
                Step::Again => {}
                Step::FellBack => {
                    self.fallbacks.record(&file.path, crate::file::Fallback::ReadRefused)
                }
                Step::Complete => {
                    let (start, end) = progress.window();
                    buffer.set_window(start, end);
                    return Ok(buffer);
                }
                Step::Fail(e) => {
                    self.pool.give(buffer);
                    return Err(e);
                }
            }
        }
    }
}

/// The error for a read of a file that is not open: closed if its id was handed out.
pub(crate) fn missing(file: FileId, file_id_next: u32) -> IoError {
    if file.0 < file_id_next {
        IoError::Closed
    } else {
        IoError::UnknownFile(file)
    }
}

/// Capacity of the largest buffer a read of `read_bytes_max` needs, widened to alignment.
pub(crate) fn buffer_bytes_max(read_bytes_max: u32) -> usize {
    read_bytes_max as usize + 2 * 65536
}

pub(crate) fn next_file_id(file_id_next: &mut u32) -> io::Result<FileId> {
    let id = FileId(*file_id_next);
    *file_id_next = file_id_next
        .checked_add(1)
        .ok_or_else(|| io::Error::other("file ids exhausted (2^32 opens by one backend)"))?;
    Ok(id)
}

impl Backend for PreadBackend {
    fn open(&mut self, path: &Path, direct: DirectIo) -> io::Result<OpenedFile> {
        let (state, fallback) = FileState::open(path, direct)?;
        if let Some(f) = fallback {
            self.fallbacks.record(path, f);
        }
        let id = next_file_id(&mut self.file_id_next)?;
        let opened = state.opened(id);
        self.files.insert(id, state);
        Ok(opened)
    }

    fn close(&mut self, file: FileId) {
        // Nothing is ever in the kernel between calls: reads still queued complete as Closed.
        self.files.remove(&file);
    }

    fn push(&mut self, op: ReadOp) -> Result<(), Full> {
        if self.in_flight() >= self.config.reads_in_flight_max {
            return Err(Full { limit: self.config.reads_in_flight_max });
        }
        self.queued.push_back(op);
        Ok(())
    }

    fn submit_and_wait(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        while let Some(op) = self.queued.pop_front() {
            let result = self.read(op);
            self.ready.push_back(Completion { tag: op.tag, result });
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.ready.drain(..));
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.ready.len()
    }

    fn reads_in_flight_max(&self) -> usize {
        self.config.reads_in_flight_max
    }

    fn recycle(&mut self, buffer: Buffer) {
        self.pool.give(buffer);
    }

    fn direct_fallbacks(&self) -> u64 {
        self.fallbacks.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct reads the kernel refuses with EINVAL before any succeeded (here: forced off the
    /// alignment, on ext4) switch the file to buffered reads, counted once, and every read
    /// still returns the right bytes.
    #[test]
    fn einval_on_the_first_direct_reads_falls_back_to_buffered() {
        let content: Vec<u8> =
            (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let path = crate::file::scratch("pread-einval", &content);
        let mut backend = PreadBackend::new(16);
        let opened = backend.open(&path, DirectIo::Prefer).expect("open");
        if !opened.direct {
            test_support::facility_missing(
                "disk-io::pread",
                &format!("{} refuses O_DIRECT", path.display()),
            );
            return;
        }
        // As if the alignment were unknown: reads reach the kernel unaligned, O_DIRECT set.
        backend.files.get_mut(&opened.id).expect("open").alignment = 1;
        for i in 0..8u64 {
            let op = ReadOp { tag: i, file: opened.id, offset: 100 + i * 7777, len: 1000 };
            backend.push(op).expect("room");
        }
        let mut done = Vec::new();
        for _ in 0..1000 {
            backend.submit_and_wait(Some(Duration::from_secs(1))).expect("submit");
            backend.drain(&mut done);
            if done.len() == 8 {
                break;
            }
        }
        assert_eq!(done.len(), 8);
        for c in &done {
            let offset = (100 + c.tag * 7777) as usize;
            let bytes = c.result.as_ref().expect("read after the fallback");
            assert_eq!(bytes.bytes(), &content[offset..offset + 1000], "read {}", c.tag);
        }
        assert_eq!(backend.direct_fallbacks(), 1);
        assert!(!backend.files.get_mut(&opened.id).expect("open").direct);
        std::fs::remove_file(&path).expect("rm");
    }
}
