//! [`UringBackend`]: one io_uring per disk, driven by the shard's thread, no async runtime.
//!
//! - **Ring.** Entries = the next power of two ≥ `reads_in_flight_max`; the CQ is twice that.
//!   Flags: `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL |
//!   CQSIZE`: one thread owns the ring, and the kernel runs completion work when that thread
//!   enters the ring instead of interrupting it (TASKRUN_FLAG shows when work waits). Setup
//!   falls back to fewer flags when it fails with EINVAL (older kernels). NODROP and EXT_ARG
//!   are required. io-wq workers are capped (`io_workers_max`). No SQPOLL (a polling thread
//!   per ring costs a core), no IOPOLL (disks and virtio do not support it), no registered
//!   files or buffers.
//! - **In-flight table.** A slab indexed by `user_data` (slot index, generation) owns each read
//!   and its buffer from `push` until its last CQE. Nothing else can reach the buffer while the
//!   kernel may write it: not the caller (who gets it only in a completion), not the pool (it
//!   gets it back only after the CQE), not `close` (it defers closing the fd), not `drop` (it
//!   waits, and leaks what it cannot wait for).
//! - **Reads.** Direct reads are widened to the file's alignment and land in aligned buffers;
//!   the completion shows the requested window. Short reads read the rest; CQE EAGAIN / EINTR
//!   resubmit (bounded by `read_retries_max`); EINVAL before any direct read of the file
//!   succeeded switches the file to buffered reads (counted, logged once) and resubmits;
//!   other errors complete with [`IoError::Os`]. The rules live in the `file` module, shared
//!   with [`crate::pread::PreadBackend`].
//! - **Submit.** `submit_and_wait(timeout)` is one `io_uring_enter`: submit everything queued
//!   and wait for one CQE with an EXT_ARG timeout. ETIME and EINTR are normal returns; on EBUSY
//!   or EAGAIN the CQ is reaped and the submission retried once (what stays queued goes with
//!   the next call). It does not wait when completions are already ready, or when no read is
//!   in the table (nothing could end the wait); timeouts above a day return after a day.
//!   `None` submits without waiting, and still runs deferred completions (TASKRUN_FLAG).
//!   `drain` alone also takes every finished read: when TASKRUN_FLAG says the kernel holds
//!   deferred completions, it enters with GETEVENTS first.
//! - **Close and drop.** `close` of a file with reads in the table defers closing the fd to
//!   its last CQE. `drop` submits what is queued, sends one cancel-all, and waits up to
//!   `drop_wait_max` for every CQE; buffers of reads still in the kernel after that are leaked
//!   ([`leaked_buffer_bytes`]), never freed.
//!
//! The backend is `!Send`: with SINGLE_ISSUER and DEFER_TASKRUN the kernel ties the ring to
//! the thread that created it, so create it on the thread that drives it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::buffer::BufferPool;
use crate::file::{FallbackLog, FileState, ReadPlan, ReadProgress, Step};
use crate::limits::{
    BUFFER_POOL_BYTES_MAX_DEFAULT, DROP_WAIT_MAX_DEFAULT, IO_WORKERS_MAX_DEFAULT,
    READS_IN_FLIGHT_MAX, READ_BYTES_MAX_DEFAULT, READ_RETRIES_MAX_DEFAULT, WAIT_MAX,
};
use crate::pread::{buffer_bytes_max, missing, next_file_id};
use crate::{Backend, Buffer, Completion, DirectIo, FileId, Full, IoError, OpenedFile, ReadOp};

/// `user_data` of the cancel SQE `drop` sends; read slots are below 2^32 (index) with a
/// generation above, and never reach this value (indices stay below `READS_IN_FLIGHT_MAX`).
const USER_DATA_CANCEL: u64 = u64::MAX;

/// Longest single wait while dropping, so the wait budget is checked between waits.
const DROP_WAIT_SLICE: Duration = Duration::from_millis(100);

/// Buffer bytes leaked by dropped backends whose reads outlived `drop_wait_max`.
static LEAKED_BUFFER_BYTES: AtomicU64 = AtomicU64::new(0);

/// Buffer bytes leaked so far in this process by dropped [`UringBackend`]s, because reads were
/// still in the kernel after `drop_wait_max` (a stuck disk). Memory is leaked, never freed
/// while the kernel may still write it.
pub fn leaked_buffer_bytes() -> u64 {
    LEAKED_BUFFER_BYTES.load(Ordering::Relaxed)
}

/// Limits and knobs of a [`UringBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringConfig {
    /// Reads pushed and not yet drained (1..=[`READS_IN_FLIGHT_MAX`]); also sizes the ring.
    pub reads_in_flight_max: usize,
    /// Largest `ReadOp::len`; longer reads complete with `IoError::Os(EINVAL)`.
    pub read_bytes_max: u32,
    /// Idle bytes kept in the buffer pool for reuse.
    pub buffer_pool_bytes_max: usize,
    /// CQE EAGAIN / EINTR resubmissions of one read before it fails.
    pub read_retries_max: u32,
    /// io-wq workers (bounded and unbounded) of the creating thread, for reads that cannot be
    /// issued without blocking. 0 keeps the kernel default (which can be many: liburing#1568).
    pub io_workers_max: u32,
    /// How long dropping the backend waits for reads still in the kernel. Buffers of reads
    /// still there after it are leaked, never freed (the kernel may still write them).
    pub drop_wait_max: Duration,
}

impl UringConfig {
    pub fn new(reads_in_flight_max: usize) -> UringConfig {
        UringConfig {
            reads_in_flight_max,
            read_bytes_max: READ_BYTES_MAX_DEFAULT,
            buffer_pool_bytes_max: BUFFER_POOL_BYTES_MAX_DEFAULT,
            read_retries_max: READ_RETRIES_MAX_DEFAULT,
            io_workers_max: reads_in_flight_max.clamp(1, IO_WORKERS_MAX_DEFAULT as usize) as u32,
            drop_wait_max: DROP_WAIT_MAX_DEFAULT,
        }
    }
}

/// A ring setup flag ([`RingSetup::flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFlag {
    CqSize,
    SubmitAll,
    CoopTaskrun,
    TaskrunFlag,
    SingleIssuer,
    DeferTaskrun,
}

/// Flag sets tried in order; the first one the kernel accepts is used.
const RING_FLAG_SETS: [&[RingFlag]; 3] = [
    &[
        RingFlag::CqSize,
        RingFlag::SubmitAll,
        RingFlag::CoopTaskrun,
        RingFlag::TaskrunFlag,
        RingFlag::SingleIssuer,
        RingFlag::DeferTaskrun,
    ],
    &[RingFlag::CqSize, RingFlag::SubmitAll, RingFlag::CoopTaskrun, RingFlag::TaskrunFlag],
    &[RingFlag::CqSize],
];

/// How the ring was set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSetup {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: &'static [RingFlag],
    /// io-wq worker limits `[bounded, unbounded]` in force, if they were set.
    pub io_workers_max: Option<[u32; 2]>,
}

/// One read in the in-flight table.
struct Op {
    tag: u64,
    file: FileId,
    /// Written by the kernel while the read is in flight; see `UringBackend::queue_read`.
    buffer: Buffer,
    progress: ReadProgress,
}

struct Slot {
    op: Option<Op>,
    /// Bumped each time the slot is freed, and part of `user_data`: a stale CQE cannot match.
    generation: u32,
}

struct UringFile {
    state: FileState,
    /// Reads of this file in the in-flight table (queued or in the kernel).
    reads_in_table: u32,
    /// `close` was called; the fd closes when `reads_in_table` reaches 0.
    closing: bool,
    /// Reads are always issued from io_uring's worker threads (`IOSQE_ASYNC`), never inline in
    /// `io_uring_enter`: for files with no block device behind them (FUSE, NFS, ...), whose
    /// reads may block the submitting thread (a hung FUSE server would stall the shard).
    issue_async: bool,
}

/// Whether reads of the file at `path` must not be issued inline: its file system has no
/// block device (device major 0: FUSE, NFS and other network or virtual file systems), so a
/// read may sleep in the submitting thread instead of returning EAGAIN.
fn may_block_submitter(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| libc::major(m.dev()) == 0).unwrap_or(true)
}

pub struct UringBackend {
    ring: IoUring,
    config: UringConfig,
    setup: RingSetup,
    files: HashMap<FileId, UringFile>,
    /// Ids below this were handed out: an absent one was closed.
    file_id_next: u32,
    /// The in-flight table: `reads_in_flight_max` slots.
    slots: Vec<Slot>,
    slots_free: Vec<u32>,
    /// Occupied slots.
    reads_in_table: usize,
    /// Finished reads, not drained yet.
    ready: VecDeque<Completion>,
    /// CQEs copied out of the ring before they are handled (reused; CQ-sized).
    cqes: Vec<(u64, i32)>,
    pool: BufferPool,
    fallbacks: FallbackLog,
    /// Set by `drop`: reads that would be resubmitted complete with `Closed` instead.
    shutting_down: bool,
    /// SINGLE_ISSUER / DEFER_TASKRUN bind the ring to the creating thread.
    _one_thread: PhantomData<*const ()>,
}

impl UringBackend {
    /// A backend with default limits and `reads_in_flight_max` (1..=[`READS_IN_FLIGHT_MAX`]).
    pub fn new(reads_in_flight_max: usize) -> io::Result<UringBackend> {
        UringBackend::with_config(UringConfig::new(reads_in_flight_max))
    }

    pub fn with_config(config: UringConfig) -> io::Result<UringBackend> {
        let max = config.reads_in_flight_max;
        if !(1..=READS_IN_FLIGHT_MAX).contains(&max) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("reads_in_flight_max {max} not in 1..={READS_IN_FLIGHT_MAX}"),
            ));
        }
        let entries = u32::try_from(max).expect("max <= READS_IN_FLIGHT_MAX").next_power_of_two();
        let (ring, flags) = build_ring(entries)?;
        let params = ring.params();
        if !params.is_feature_nodrop() || !params.is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG (kernel < 5.11)",
            ));
        }
        let io_workers_max = if config.io_workers_max > 0 {
            let mut limits = [config.io_workers_max; 2];
            ring.submitter()
                .register_iowq_max_workers(&mut limits)
                .ok()
                .map(|()| [config.io_workers_max; 2])
        } else {
            None
        };
        let setup = RingSetup {
            sq_entries: params.sq_entries(),
            cq_entries: params.cq_entries(),
            flags,
            io_workers_max,
        };
        assert!(setup.sq_entries as usize >= max, "the SQ holds one entry per read in the table");
        let cq_entries = setup.cq_entries as usize;
        Ok(UringBackend {
            ring,
            config,
            setup,
            files: HashMap::new(),
            file_id_next: 0,
            slots: (0..max).map(|_| Slot { op: None, generation: 0 }).collect(),
            slots_free: (0..max as u32).rev().collect(),
            reads_in_table: 0,
            ready: VecDeque::with_capacity(max),
            cqes: Vec::with_capacity(cq_entries),
            pool: BufferPool::new(
                config.buffer_pool_bytes_max,
                buffer_bytes_max(config.read_bytes_max),
            ),
            fallbacks: FallbackLog::default(),
            shutting_down: false,
            _one_thread: PhantomData,
        })
    }

    pub fn config(&self) -> UringConfig {
        self.config
    }

    pub fn setup(&self) -> &RingSetup {
        &self.setup
    }

    /// Files whose fd is held: open ones, and closed ones waiting for their reads.
    pub fn files_open(&self) -> usize {
        self.files.len()
    }

    /// Idle bytes in the buffer pool (at most `buffer_pool_bytes_max`).
    pub fn buffer_pool_bytes(&self) -> usize {
        self.pool.pooled_bytes()
    }

    /// Reads in the in-flight table (queued for or in the kernel): at most `reads_in_flight_max`.
    pub fn reads_in_table(&self) -> usize {
        self.reads_in_table
    }

    /// Starts a read: into the table and the SQ. `Err` completes it at once.
    fn start(&mut self, op: ReadOp) -> Result<(), Result<Buffer, IoError>> {
        let Some(file) = self.files.get_mut(&op.file) else {
            return Err(Err(missing(op.file, self.file_id_next)));
        };
        if file.closing {
            return Err(Err(IoError::Closed));
        }
        if op.len == 0 {
            return Err(Ok(Buffer::from_vec(Vec::new())));
        }
        if op.len > self.config.read_bytes_max {
            return Err(Err(IoError::Os(libc::EINVAL)));
        }
        let Some(plan) = ReadPlan::new(op.offset, op.len, file.state.alignment) else {
            return Err(Err(IoError::Os(libc::EINVAL)));
        };
        let buffer = self.pool.take(plan.read_bytes as usize, file.state.memory_alignment);
        let progress = ReadProgress::new(plan, file.state.direct);
        file.reads_in_table += 1;
        // Invariant: occupied slots <= in_flight() < reads_in_flight_max = slots.len() (push
        // checked), so a free slot exists.
        let index = self.slots_free.pop().expect("a free slot below reads_in_flight_max");
        let slot = &mut self.slots[index as usize];
        assert!(slot.op.is_none(), "free slot {index} is empty");
        slot.op = Some(Op { tag: op.tag, file: op.file, buffer, progress });
        self.reads_in_table += 1;
        self.queue_read(index);
        Ok(())
    }

    /// Puts an SQE for the rest of the read in slot `index` into the SQ.
    fn queue_read(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let user_data = (u64::from(slot.generation) << 32) | u64::from(index);
        let op = slot.op.as_mut().expect("queued reads are in the table");
        let uring_file =
            self.files.get(&op.file).expect("a file with reads in the table stays open");
        let file = &uring_file.state;
        let flags =
            if uring_file.issue_async { squeue::Flags::ASYNC } else { squeue::Flags::empty() };
        let done = op.progress.done_bytes as usize;
        let remaining = op.progress.remaining_bytes();
        assert!(remaining > 0 && done + remaining as usize <= op.buffer.capacity());
        // One SQE per read in the kernel at a time: `lend_to_kernel` asserts the buffer is not
        // lent already (a resubmission comes after `handle_cqe` reclaimed it).
        let target = op.buffer.lend_to_kernel().wrapping_add(done);
        let entry = opcode::Read::new(types::Fd(file.file.as_raw_fd()), target, remaining)
            .offset(op.progress.next_offset())
            .build()
            .flags(flags)
            .user_data(user_data);
        // SAFETY: the SQE lends the kernel `remaining` bytes at `target`, inside the buffer's
        // allocation (asserted above), and the fd. Both stay valid until the read's CQE:
        // - the buffer is owned by `op` in `self.slots`, whose heap bytes do not move; it
        //   leaves the table only in `finish`, which runs for this slot only on this read's
        //   CQE (matched by `user_data` with the slot's generation); nothing makes a reference
        //   to the bytes meanwhile: the buffer is marked lent (above) until `handle_cqe`
        //   reclaims it on that CQE, and every slice of a lent buffer panics (only `capacity`,
        //   from the layout, is asked of it); `Drop` waits for all CQEs and leaks the buffers
        //   of reads it could not wait for;
        // - the fd is owned by `self.files`, and `close` and `finish` drop a file only when
        //   its `reads_in_table` is 0, which counts this read until its CQE.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        // Invariant: entries in the SQ <= reads in the table <= reads_in_flight_max <= SQ size
        // (each read has at most one SQE queued or in the kernel).
        pushed.expect("SQ has room for every read in the table");
    }

    /// Handles every CQE in the ring.
    fn reap(&mut self) {
        self.cqes.clear();
        self.cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        for i in 0..self.cqes.len() {
            let (user_data, result) = self.cqes[i];
            self.handle_cqe(user_data, result);
        }
    }

    fn handle_cqe(&mut self, user_data: u64, result: i32) {
        if user_data == USER_DATA_CANCEL {
            return; // the count (or ENOENT, EINVAL) of `drop`'s cancel: nothing to do
        }
        let index = (user_data & u64::from(u32::MAX)) as u32;
        let generation = (user_data >> 32) as u32;
        let slot = self.slots.get_mut(index as usize).expect("CQE for an existing slot");
        assert_eq!(slot.generation, generation, "CQE for read {index} of an earlier generation");
        let op = slot.op.as_mut().expect("CQE for an occupied slot");
        // SAFETY: this is the CQE of the one SQE the buffer was lent to (`queue_read` lends it
        // once per SQE and `user_data` matched this slot and generation, asserted above), and a
        // read has no CQE after its first: the kernel is done with the bytes.
        unsafe { op.buffer.reclaim_from_kernel() };
        let file = &mut self.files.get_mut(&op.file).expect("file of a read in the table").state;
        let result = if result >= 0 { Ok(result as u32) } else { Err(-result) };
        match op.progress.step(file, result, self.config.read_retries_max) {
            Step::Complete => self.finish(index, Ok(())),
            Step::Fail(e) => self.finish(index, Err(e)),
            Step::FellBack => {
                self.fallbacks.record(&file.path, crate::file::Fallback::ReadRefused);
                self.resubmit(index);
            }
            Step::Again => self.resubmit(index),
        }
    }

    fn resubmit(&mut self, index: u32) {
        if self.shutting_down {
            self.finish(index, Err(IoError::Closed));
        } else {
            self.queue_read(index);
        }
    }

    /// The read in slot `index` is over (its last CQE arrived): out of the table, to `ready`.
    fn finish(&mut self, index: u32, result: Result<(), IoError>) {
        let slot = &mut self.slots[index as usize];
        let op = slot.op.take().expect("finished reads are in the table");
        slot.generation = slot.generation.wrapping_add(1);
        self.slots_free.push(index);
        self.reads_in_table -= 1;
        let file = self.files.get_mut(&op.file).expect("file of a read in the table");
        file.reads_in_table -= 1;
        if file.closing && file.reads_in_table == 0 {
            self.files.remove(&op.file); // closes the fd: none of its reads is in the kernel now
        }
        let mut buffer = op.buffer;
        assert!(!buffer.is_lent(), "a read leaves the table after its CQE");
        let result = match result {
            Ok(()) => {
                let (start, end) = op.progress.window();
                buffer.set_window(start, end);
                Ok(buffer)
            }
            Err(e) => {
                self.pool.give(buffer);
                Err(e)
            }
        };
        self.ready.push_back(Completion { tag: op.tag, result });
    }
}

fn build_ring(entries: u32) -> io::Result<(IoUring, &'static [RingFlag])> {
    let mut refused = None;
    for flags in RING_FLAG_SETS {
        let mut builder = IoUring::builder();
        for flag in flags {
            match flag {
                RingFlag::CqSize => builder.setup_cqsize(entries * 2),
                RingFlag::SubmitAll => builder.setup_submit_all(),
                RingFlag::CoopTaskrun => builder.setup_coop_taskrun(),
                RingFlag::TaskrunFlag => builder.setup_taskrun_flag(),
                RingFlag::SingleIssuer => builder.setup_single_issuer(),
                RingFlag::DeferTaskrun => builder.setup_defer_taskrun(),
            };
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, flags)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => refused = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(refused.expect("at least one flag set was tried"))
}

impl Backend for UringBackend {
    fn open(&mut self, path: &Path, direct: DirectIo) -> io::Result<OpenedFile> {
        let (state, fallback) = FileState::open(path, direct)?;
        if let Some(f) = fallback {
            self.fallbacks.record(path, f);
        }
        let id = next_file_id(&mut self.file_id_next)?;
        let opened = state.opened(id);
        let issue_async = may_block_submitter(path);
        self.files.insert(id, UringFile { state, reads_in_table: 0, closing: false, issue_async });
        Ok(opened)
    }

    fn close(&mut self, file: FileId) {
        let Some(f) = self.files.get_mut(&file) else { return };
        if f.reads_in_table == 0 {
            self.files.remove(&file);
        } else {
            f.closing = true; // `finish` closes it after the last read's CQE
        }
    }

    fn push(&mut self, op: ReadOp) -> Result<(), Full> {
        let limit = self.config.reads_in_flight_max;
        if self.in_flight() >= limit {
            return Err(Full { limit });
        }
        if let Err(result) = self.start(op) {
            self.ready.push_back(Completion { tag: op.tag, result });
        }
        debug_assert!(self.in_flight() <= limit);
        Ok(())
    }

    fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Wait only if something can complete and nothing is ready yet.
        let wait = timeout.filter(|_| self.ready.is_empty() && self.reads_in_table > 0);
        let entered = match wait {
            Some(t) => {
                let ts = types::Timespec::from(t.min(WAIT_MAX));
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit(),
        };
        if let Err(e) = entered {
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR) => {}
                Some(libc::EBUSY | libc::EAGAIN) => {
                    // The kernel wants CQEs reaped (or lacks resources) before taking more.
                    self.reap();
                    match self.ring.submit() {
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<Completion>) {
        // With DEFER_TASKRUN the kernel posts finished reads to the CQ only inside an
        // io_uring_enter with GETEVENTS, and TASKRUN_FLAG tells when it holds some. A caller
        // that drains between two waits (the shard, refilling the device's queue while it
        // decodes) would otherwise see none of them until its next wait, and their places under
        // `reads_in_flight_max` would stay taken. `submit` enters with GETEVENTS when the flag
        // is set (and submits what is queued, as the next wait would). An error here is left to
        // that next wait, which handles every outcome.
        if self.ring.submission().taskrun() {
            let _ = self.ring.submit();
        }
        self.reap();
        out.extend(self.ready.drain(..));
    }

    fn in_flight(&self) -> usize {
        self.reads_in_table + self.ready.len()
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

impl Drop for UringBackend {
    /// Waits (up to `drop_wait_max`) for every read in the kernel, after asking it to cancel
    /// them; leaks the buffers of reads still there. Never frees memory the kernel may write.
    fn drop(&mut self) {
        self.shutting_down = true;
        if self.reads_in_table == 0 {
            return;
        }
        let started = Instant::now();
        // Queued SQEs go in first, then one cancel for everything (kernel 5.19+; best effort:
        // a read already held in the block layer cannot be cancelled, see
        // docs/reliability.md, "Stuck reads are not cancelled").
        let _ = self.ring.submit();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(USER_DATA_CANCEL);
        // SAFETY: a cancel SQE lends the kernel no memory and no fd.
        let _ = unsafe { self.ring.submission().push(&cancel) };
        while self.reads_in_table > 0 {
            let waited = started.elapsed();
            if waited >= self.config.drop_wait_max {
                break;
            }
            let ts =
                types::Timespec::from((self.config.drop_wait_max - waited).min(DROP_WAIT_SLICE));
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) => {}
                Err(_) => break, // cannot wait: leak below
            }
            self.reap();
        }
        if self.reads_in_table == 0 {
            return;
        }
        let mut leaked_bytes = 0;
        for slot in &mut self.slots {
            if let Some(op) = slot.op.take() {
                // Lent to the kernel: only its size is read (from the layout, no slice).
                debug_assert!(op.buffer.is_lent(), "a read in the table has its SQE out");
                leaked_bytes += op.buffer.capacity();
                // The kernel may still write this buffer: it must never be freed or reused.
                std::mem::forget(op.buffer);
            }
        }
        LEAKED_BUFFER_BYTES.fetch_add(leaked_bytes as u64, Ordering::Relaxed);
        tracing::error!(
            reads = self.reads_in_table,
            "reads still in the kernel after {:?}; leaking their {leaked_bytes} buffer bytes",
            self.config.drop_wait_max
        );
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
        let path = crate::file::scratch("uring-einval", &content);
        let mut backend = UringBackend::new(16).expect("ring");
        let opened = backend.open(&path, DirectIo::Prefer).expect("open");
        if !opened.direct {
            test_support::facility_missing(
                "disk-io::uring",
                &format!("{} refuses O_DIRECT", path.display()),
            );
            return;
        }
        // As if the alignment were unknown: reads reach the kernel unaligned, O_DIRECT set.
        backend.files.get_mut(&opened.id).expect("open").state.alignment = 1;
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
        assert!(!backend.files.get_mut(&opened.id).expect("open").state.direct);
        std::fs::remove_file(&path).expect("rm");
    }

    /// The stuck-disk path of `drop`, without a stuck disk: with no time to wait, `drop` gives
    /// up on every read in the table at once, each buffer still lent to the kernel. It counts
    /// and leaks them; counting asks only their size (a slice of a lent buffer panics, so this
    /// fails if `Buffer::capacity` makes one).
    #[test]
    fn drop_that_cannot_wait_counts_and_leaks_lent_buffers() {
        let content = vec![0x5Au8; 1 << 20];
        let path = crate::file::scratch("uring-drop-now", &content);
        let config = UringConfig { drop_wait_max: Duration::ZERO, ..UringConfig::new(8) };
        let mut backend = UringBackend::with_config(config).expect("ring");
        let opened = backend.open(&path, DirectIo::Off).expect("open");
        for i in 0..8u64 {
            let op = ReadOp { tag: i, file: opened.id, offset: i * 100_000, len: 5000 };
            backend.push(op).expect("room");
        }
        // Queued in the SQ, not submitted: `drop` submits them and gives up at once.
        let ops = backend.slots.iter().filter_map(|s| s.op.as_ref());
        assert_eq!(ops.filter(|op| op.buffer.is_lent()).count(), 8);
        let leaked_before = leaked_buffer_bytes();
        drop(backend);
        // 8 buffers of the 8 KiB class. Other tests of this binary may leak too, never less.
        assert!(leaked_buffer_bytes() - leaked_before >= 8 * 8192);
        std::fs::remove_file(&path).expect("rm");
    }
}
