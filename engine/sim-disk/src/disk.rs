//! The simulated disk: files in memory, reads as a state machine in virtual time, faults.
//!
//! Every read owns a slot of a fixed table (allocated at start, `reads_in_flight_max` slots)
//! from `push` to `drain`; the slot's generation goes up each time it is freed. Its phases:
//!
//! ```text
//! Free -push-> Queued -submit-> Scheduled{due} -due-> Ready -drain-> Free (generation + 1)
//!                          \--> Hung -unhang/vanish-> Scheduled{due}
//! ```
//!
//! Each read that can return bytes also holds a buffer id from submit until the caller
//! recycles its buffer (`Read{slot, generation}` then `Caller`), so a buffer can never be
//! reused, or given back, while its read is in flight; [`SimStats`] counts the rest.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use disk_io::{Backend, Buffer, Completion, DirectIo, FileId, Full, IoError, OpenedFile, ReadOp};

use crate::clock::SimClock;
use crate::config::{Faults, SimConfig, READS_IN_FLIGHT_LIMIT, SHORT_READS_PER_READ_MAX};
use crate::rng::Rng;
use crate::stats::SimStats;

/// errno EIO (Linux), as the real backends report it.
pub const EIO: i32 = 5;
/// errno EINVAL (Linux).
pub const EINVAL: i32 = 22;

/// The latest time the clock can show (u64 nanoseconds, 584 years).
const TIME_MAX: Duration = Duration::from_nanos(u64::MAX);

/// A simulated disk: a [`Backend`] whose reads are served from memory in virtual time, with
/// seeded latency and faults.
///
/// It dereferences to its [`SimHandle`], the controls (files, faults, vanish, unhang, stats);
/// [`SimDisk::handle`] clones one for a test to keep when the disk moves into the code under
/// test (a shard, or its thread).
pub struct SimDisk {
    handle: SimHandle,
}

/// Controls of a [`SimDisk`], shared with it. Cheap to clone, `Send` and `Sync`.
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// A disk without files. Panics on a config that cannot work ([`SimConfig::validate`]).
    pub fn new(mut config: SimConfig, clock: SimClock) -> SimDisk {
        config.validate();
        config.reads_in_flight_max = config.reads_in_flight_max.clamp(1, READS_IN_FLIGHT_LIMIT);
        let state = State::new(config, clock);
        SimDisk { handle: SimHandle { state: Arc::new(Mutex::new(state)) } }
    }

    /// A handle on this disk's controls.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }
}

impl Deref for SimDisk {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handle.fmt(f)
    }
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimDisk")
            .field("now", &state.clock.now())
            .field("vanished", &state.vanished)
            .field("stats", &state.stats())
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("simulated disk state poisoned by an earlier panic")
    }

    /// Registers a file, or replaces its bytes (open files see the new bytes from their next
    /// completion on: shrinking a file makes reads past the new end short).
    pub fn add_file(&self, path: impl AsRef<Path>, bytes: impl Into<Arc<[u8]>>) {
        self.lock().add_file(path.as_ref(), bytes.into());
    }

    /// Gives a registered file faults of its own (`None`: the disk's). Panics on an unknown
    /// path. Reads submitted from now on use them.
    pub fn set_file_faults(&self, path: impl AsRef<Path>, faults: Option<Faults>) {
        let path = path.as_ref();
        if let Some(faults) = &faults {
            faults.validate();
        }
        let mut state = self.lock();
        let Some(&node) = state.paths.get(path) else {
            panic!("set_file_faults: {} is not a file of this disk", path.display());
        };
        state.nodes[node].faults = faults;
    }

    /// Sets the faults of every file without faults of its own, for reads submitted from now.
    pub fn set_faults(&self, faults: Faults) {
        faults.validate();
        self.lock().faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults
    }

    pub fn config(&self) -> SimConfig {
        self.lock().config
    }

    /// The disk disappears: reads that completed by now keep their bytes; every other read in
    /// flight (hung ones too) completes now with [`IoError::Vanished`], every later read too,
    /// and `open` fails with `NotConnected`.
    pub fn vanish(&self) {
        self.lock().vanish();
    }

    /// The disk is back (hot plug): files open again. Files opened before the vanish stay
    /// dead: their reads complete with [`IoError::Vanished`].
    pub fn reappear(&self) {
        self.lock().vanished = false;
    }

    pub fn is_vanished(&self) -> bool {
        self.lock().vanished
    }

    /// Releases every hung read: each completes its latency from now on. Returns how many.
    pub fn unhang(&self) -> usize {
        self.lock().unhang()
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats()
    }

    pub fn clock(&self) -> SimClock {
        self.lock().clock.clone()
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.lock().clock.now()
    }

    /// When the next submitted read completes (`None`: none is scheduled, though some may be
    /// queued, hung or waiting to be drained).
    pub fn next_completion_at(&self) -> Option<Duration> {
        self.lock().scheduled.first_key_value().map(|(&(due, _), _)| due)
    }
}

impl Backend for SimDisk {
    fn open(&mut self, path: &Path, direct: DirectIo) -> io::Result<OpenedFile> {
        self.lock().open(path, direct)
    }

    fn close(&mut self, file: FileId) {
        self.lock().close(file);
    }

    fn push(&mut self, op: ReadOp) -> Result<(), Full> {
        self.lock().push(op)
    }

    fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.lock().submit_and_wait(timeout);
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<Completion>) {
        self.lock().drain(out);
    }

    fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    fn reads_in_flight_max(&self) -> usize {
        self.lock().config.reads_in_flight_max
    }

    fn recycle(&mut self, buffer: Buffer) {
        self.lock().recycle(buffer);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    /// Pushed, waiting for `submit_and_wait`.
    Queued,
    /// Completes at `due`.
    Scheduled {
        due: Duration,
    },
    /// Completes only when released.
    Hung,
    /// Completed, waiting for `drain`.
    Ready,
}

/// What was decided for a read when it was submitted.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Time the device spends on it, every round.
    service: Duration,
    /// Fails with this (refused at submit, or EIO).
    error: Option<IoError>,
    /// Flip `mask` into byte `position % len` of the result.
    corruption: Option<(u64, u8)>,
}

#[derive(Debug)]
struct Slot {
    generation: u64,
    phase: Phase,
    /// Order of `push` over the disk's life: tie-break of equal completion times, and the
    /// read's random stream.
    seq: u64,
    op: ReadOp,
    plan: Plan,
    /// The buffer id, from submit until drain (reads refused or failed have none).
    buffer: Option<u32>,
    corrupted: bool,
}

const OP_NONE: ReadOp = ReadOp { tag: 0, file: FileId(0), offset: 0, len: 0 };

/// Who holds a buffer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufferOwner {
    Free,
    /// The read in this slot generation, until drained.
    Read {
        slot: u32,
        generation: u64,
    },
    /// The caller, until recycled (or dropped).
    Caller,
}

struct Node {
    bytes: Arc<[u8]>,
    faults: Option<Faults>,
}

struct OpenFile {
    node: usize,
    /// The disk's vanish count at open: files from before a vanish stay dead.
    epoch: u32,
}

struct State {
    config: SimConfig,
    faults: Faults,
    clock: SimClock,
    nodes: Vec<Node>,
    paths: HashMap<PathBuf, usize>,
    files: HashMap<FileId, OpenFile>,
    /// Ids below this were handed out: an absent one was closed.
    file_id_next: u32,
    vanished: bool,
    epoch: u32,
    slots: Vec<Slot>,
    slots_free: Vec<u32>,
    queued: VecDeque<u32>,
    /// (due, seq) -> slot: completion order is time order, ties in push order.
    scheduled: BTreeMap<(Duration, u64), u32>,
    /// seq -> slot.
    hung: BTreeMap<u64, u32>,
    ready: VecDeque<(u32, Completion)>,
    /// When each of the device's `device_reads_max` servers is free (empty: no limit).
    device_free_at: Vec<Duration>,
    buffers: Vec<BufferOwner>,
    buffers_free: Vec<u32>,
    /// Address of the bytes of each buffer handed out -> its id.
    buffer_by_address: HashMap<usize, u32>,
    buffers_with_caller: u64,
    seq_next: u64,
    /// Counters (gauges are filled in by `stats`).
    stats: SimStats,
}

impl State {
    fn new(config: SimConfig, clock: SimClock) -> State {
        let slots_count = config.reads_in_flight_max;
        let slots = (0..slots_count)
            .map(|_| Slot {
                generation: 0,
                phase: Phase::Free,
                seq: 0,
                op: OP_NONE,
                plan: Plan::default(),
                buffer: None,
                corrupted: false,
            })
            .collect();
        let slots_count = u32::try_from(slots_count).expect("reads_in_flight_max <= 8192");
        State {
            config,
            faults: config.faults,
            clock,
            nodes: Vec::new(),
            paths: HashMap::new(),
            files: HashMap::new(),
            file_id_next: 0,
            vanished: false,
            epoch: 0,
            slots,
            slots_free: (0..slots_count).rev().collect(),
            queued: VecDeque::with_capacity(config.reads_in_flight_max),
            scheduled: BTreeMap::new(),
            hung: BTreeMap::new(),
            ready: VecDeque::with_capacity(config.reads_in_flight_max),
            device_free_at: vec![Duration::ZERO; config.device_reads_max.unwrap_or(0)],
            buffers: Vec::new(),
            buffers_free: Vec::new(),
            buffer_by_address: HashMap::new(),
            buffers_with_caller: 0,
            seq_next: 0,
            stats: SimStats::default(),
        }
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.slots_free.len()
    }

    fn stats(&self) -> SimStats {
        let mut stats = self.stats;
        stats.in_flight_now = self.in_flight() as u64;
        stats.reads_hung_now = self.hung.len() as u64;
        stats.buffers_with_caller_now = self.buffers_with_caller;
        stats
    }

    fn add_file(&mut self, path: &Path, bytes: Arc<[u8]>) {
        match self.paths.get(path) {
            Some(&node) => self.nodes[node].bytes = bytes,
            None => {
                self.paths.insert(path.to_path_buf(), self.nodes.len());
                self.nodes.push(Node { bytes, faults: None });
            }
        }
    }

    fn open(&mut self, path: &Path, direct: DirectIo) -> io::Result<OpenedFile> {
        if self.vanished {
            let message = format!("{}: simulated disk vanished", path.display());
            return Err(io::Error::new(io::ErrorKind::NotConnected, message));
        }
        let Some(&node) = self.paths.get(path) else {
            let message = format!("{}: not a file of the simulated disk", path.display());
            return Err(io::Error::new(io::ErrorKind::NotFound, message));
        };
        let id = FileId(self.file_id_next);
        self.file_id_next = self
            .file_id_next
            .checked_add(1)
            .ok_or_else(|| io::Error::other("file ids exhausted (2^32 opens of one disk)"))?;
        let previous = self.files.insert(id, OpenFile { node, epoch: self.epoch });
        assert!(previous.is_none(), "file id {id:?} handed out twice");
        let alignment = match (direct, self.config.direct_alignment) {
            (DirectIo::Prefer, Some(alignment)) => alignment,
            _ => 1,
        };
        let len = self.nodes[node].bytes.len() as u64;
        Ok(OpenedFile { id, len, direct: alignment > 1, alignment })
    }

    fn close(&mut self, file: FileId) {
        // Reads due by now completed before the close, with their bytes.
        self.collect_due(self.clock.now());
        self.files.remove(&file);
    }

    fn push(&mut self, op: ReadOp) -> Result<(), Full> {
        let limit = self.config.reads_in_flight_max;
        if self.in_flight() >= limit {
            self.stats.reads_refused_full += 1;
            return Err(Full { limit });
        }
        let index = self.slots_free.pop().expect("a free slot while below the limit");
        let slot = &mut self.slots[index as usize];
        assert_eq!(slot.phase, Phase::Free, "slot {index} on the free list");
        assert!(slot.buffer.is_none() && !slot.corrupted);
        slot.phase = Phase::Queued;
        slot.seq = self.seq_next;
        slot.op = op;
        slot.plan = Plan::default();
        self.seq_next += 1;
        self.queued.push_back(index);
        self.stats.reads_pushed += 1;
        let in_flight = self.in_flight() as u64;
        self.stats.in_flight_max_observed = self.stats.in_flight_max_observed.max(in_flight);
        assert!(self.in_flight() <= limit);
        Ok(())
    }

    fn submit_and_wait(&mut self, timeout: Option<Duration>) {
        let now = self.clock.now();
        while let Some(index) = self.queued.pop_front() {
            self.submit(index, now);
        }
        self.collect_due(now);
        if !self.ready.is_empty() {
            return;
        }
        let Some(timeout) = timeout else {
            return;
        };
        let deadline = now.saturating_add(timeout).min(TIME_MAX);
        match self.scheduled.first_key_value() {
            Some((&(due, _), _)) if due <= deadline => {
                self.clock.advance_to(due);
                self.collect_due(self.clock.now());
                assert!(!self.ready.is_empty(), "the read due at {due:?} completed");
            }
            _ => self.clock.advance_to(deadline),
        }
    }

    /// Decides a queued read's fate: refused (completes now), hung, or scheduled.
    fn submit(&mut self, index: u32, now: Duration) {
        let (op, seq, generation) = {
            let slot = &self.slots[index as usize];
            assert_eq!(slot.phase, Phase::Queued);
            (slot.op, slot.seq, slot.generation)
        };
        self.stats.reads_submitted += 1;
        if let Some(error) = self.refusal(op) {
            self.slots[index as usize].plan.error = Some(error);
            self.schedule(index, now);
            return;
        }
        let buffer = self.buffer_take(index, generation);
        self.slots[index as usize].buffer = Some(buffer);
        if op.len == 0 {
            self.schedule(index, now); // nothing to read: done at once, as on the real backends
            return;
        }
        let node = &self.nodes[self.files[&op.file].node];
        let faults = node.faults.unwrap_or(self.faults);
        let available = read_window(op, node.bytes.len()).len() as u64;
        let mut rng = Rng::stream(self.config.seed, seq);
        let (plan, hang, short_reads) = plan_read(&faults, available, &mut rng);
        self.stats.short_read_retries += u64::from(short_reads);
        let slot = &mut self.slots[index as usize];
        let service = plan.service;
        slot.plan = plan;
        if hang {
            slot.phase = Phase::Hung;
            let previous = self.hung.insert(seq, index);
            assert!(previous.is_none());
            self.stats.reads_hung += 1;
        } else {
            let due = self.device_due(now, service);
            self.schedule(index, due);
        }
    }

    /// Why a read fails at once, if it does.
    fn refusal(&self, op: ReadOp) -> Option<IoError> {
        if self.vanished {
            return Some(IoError::Vanished);
        }
        let Some(file) = self.files.get(&op.file) else {
            let closed = op.file.0 < self.file_id_next;
            return Some(if closed { IoError::Closed } else { IoError::UnknownFile(op.file) });
        };
        if file.epoch != self.epoch {
            return Some(IoError::Vanished);
        }
        if op.len > self.config.read_bytes_max {
            return Some(IoError::Os(EINVAL));
        }
        None
    }

    /// When a read submitted at `now` needing `service` completes, given the device's servers.
    fn device_due(&mut self, now: Duration, service: Duration) -> Duration {
        let Some(server) = (0..self.device_free_at.len()).min_by_key(|&i| self.device_free_at[i])
        else {
            return now.saturating_add(service).min(TIME_MAX);
        };
        let start = now.max(self.device_free_at[server]);
        let due = start.saturating_add(service).min(TIME_MAX);
        self.device_free_at[server] = due;
        assert!(due >= now);
        due
    }

    fn schedule(&mut self, index: u32, due: Duration) {
        let slot = &mut self.slots[index as usize];
        assert!(matches!(slot.phase, Phase::Queued | Phase::Hung | Phase::Scheduled { .. }));
        slot.phase = Phase::Scheduled { due };
        let previous = self.scheduled.insert((due, slot.seq), index);
        assert!(previous.is_none(), "seq {} scheduled twice", slot.seq);
    }

    /// Completes every read due by `time`, in time order.
    fn collect_due(&mut self, time: Duration) {
        while let Some(entry) = self.scheduled.first_entry() {
            let (due, _) = *entry.key();
            if due > time {
                break;
            }
            let index = entry.remove();
            self.complete(index, due);
        }
    }

    fn complete(&mut self, index: u32, due: Duration) {
        let slot = &self.slots[index as usize];
        assert_eq!(slot.phase, Phase::Scheduled { due });
        let tag = slot.op.tag;
        let result = self.outcome(index);
        let slot = &mut self.slots[index as usize];
        if result.is_err() {
            if let Some(buffer) = slot.buffer.take() {
                // A failed read's buffer goes straight back to the pool.
                let owner = BufferOwner::Read { slot: index, generation: slot.generation };
                assert_eq!(self.buffers[buffer as usize], owner);
                self.buffers[buffer as usize] = BufferOwner::Free;
                self.buffers_free.push(buffer);
            }
        }
        slot.phase = Phase::Ready;
        self.ready.push_back((index, Completion { tag, result }));
    }

    /// The bytes of a read that is due, or its error.
    fn outcome(&mut self, index: u32) -> Result<Buffer, IoError> {
        let slot = &self.slots[index as usize];
        let (op, generation) = (slot.op, slot.generation);
        if self.vanished {
            return Err(IoError::Vanished);
        }
        if let Some(error) = &slot.plan.error {
            return Err(error.clone());
        }
        let Some(file) = self.files.get(&op.file) else {
            return Err(IoError::Closed); // it was open at submit
        };
        if file.epoch != self.epoch {
            return Err(IoError::Vanished);
        }
        let bytes = &self.nodes[file.node].bytes;
        let window = read_window(op, bytes.len());
        // At least one byte of capacity: every buffer has an address of its own.
        let mut data = Vec::with_capacity(window.len().max(1));
        data.extend_from_slice(&bytes[window]);
        let corruption = slot.plan.corruption;
        let buffer_id = slot.buffer.expect("a read that can succeed holds a buffer");
        if let Some((position, mask)) = corruption.filter(|_| !data.is_empty()) {
            let position = (position % data.len() as u64) as usize;
            data[position] ^= mask;
            self.slots[index as usize].corrupted = true;
        }
        let buffer = Buffer::from_vec(data);
        assert_eq!(self.buffers[buffer_id as usize], BufferOwner::Read { slot: index, generation });
        self.buffer_note_address(buffer_id, address_of(&buffer));
        Ok(buffer)
    }

    fn drain(&mut self, out: &mut Vec<Completion>) {
        let mut ready = std::mem::take(&mut self.ready);
        for (index, completion) in ready.drain(..) {
            let slot = &mut self.slots[index as usize];
            assert_eq!(slot.phase, Phase::Ready);
            assert_eq!(slot.op.tag, completion.tag);
            match &completion.result {
                Ok(buffer) => {
                    let id = slot.buffer.take().expect("a completed read holds its buffer");
                    let owner = BufferOwner::Read { slot: index, generation: slot.generation };
                    assert_eq!(self.buffers[id as usize], owner);
                    assert_eq!(self.buffer_by_address.get(&address_of(buffer)), Some(&id));
                    self.buffers[id as usize] = BufferOwner::Caller;
                    self.buffers_with_caller += 1;
                    self.stats.reads_ok += 1;
                    self.stats.bytes_read += buffer.len() as u64;
                    self.stats.reads_corrupted += u64::from(slot.corrupted);
                }
                Err(error) => {
                    assert!(slot.buffer.is_none() && !slot.corrupted);
                    self.stats.reads_failed += 1;
                    *match error {
                        IoError::Os(EIO) => &mut self.stats.reads_failed_eio,
                        IoError::Vanished => &mut self.stats.reads_failed_vanished,
                        IoError::Closed => &mut self.stats.reads_failed_closed,
                        _ => &mut self.stats.reads_failed_other,
                    } += 1;
                }
            }
            slot.phase = Phase::Free;
            slot.generation += 1;
            slot.corrupted = false;
            slot.op = OP_NONE;
            self.slots_free.push(index);
            self.stats.reads_completed += 1;
            out.push(completion);
        }
        self.ready = ready; // keeps its capacity
    }

    fn recycle(&mut self, buffer: Buffer) {
        let address = address_of(&buffer);
        let Some(id) = self.buffer_by_address.remove(&address) else {
            panic!("recycle: {buffer:?} was not handed out by this disk, or was recycled twice");
        };
        match self.buffers[id as usize] {
            BufferOwner::Caller => {}
            BufferOwner::Read { slot, generation } => panic!(
                "recycle: buffer {id} given back while its read (slot {slot} generation \
                 {generation}) is in flight"
            ),
            BufferOwner::Free => panic!("recycle: buffer {id} is already free"),
        }
        self.buffers[id as usize] = BufferOwner::Free;
        self.buffers_free.push(id);
        self.buffers_with_caller -= 1;
        self.stats.buffers_recycled += 1;
    }

    /// A free buffer id for the read in `slot`.
    fn buffer_take(&mut self, slot: u32, generation: u64) -> u32 {
        let id = match self.buffers_free.pop() {
            Some(id) => id,
            None => {
                self.buffers.push(BufferOwner::Free);
                u32::try_from(self.buffers.len() - 1).expect("fewer than 2^32 buffers")
            }
        };
        assert_eq!(self.buffers[id as usize], BufferOwner::Free, "buffer {id} reused");
        self.buffers[id as usize] = BufferOwner::Read { slot, generation };
        id
    }

    /// Records where buffer `id`'s bytes live. An older buffer at the same address was freed
    /// by its holder, the caller (two live buffers never share an address).
    fn buffer_note_address(&mut self, id: u32, address: usize) {
        let Some(old) = self.buffer_by_address.insert(address, id) else {
            return;
        };
        assert_ne!(old, id);
        let owner = self.buffers[old as usize];
        assert_eq!(owner, BufferOwner::Caller, "buffer {old} at a reused address");
        self.buffers[old as usize] = BufferOwner::Free;
        self.buffers_free.push(old);
        self.buffers_with_caller -= 1;
        self.stats.buffers_dropped += 1;
    }

    fn vanish(&mut self) {
        let now = self.clock.now();
        self.collect_due(now);
        self.vanished = true;
        self.epoch += 1;
        let scheduled = std::mem::take(&mut self.scheduled);
        for index in scheduled.into_values() {
            self.schedule(index, now);
        }
        self.release_hung(|_| now);
    }

    fn unhang(&mut self) -> usize {
        let now = self.clock.now();
        self.release_hung(|service| now.saturating_add(service).min(TIME_MAX))
    }

    /// Schedules every hung read at `due(its service time)`, in push order.
    fn release_hung(&mut self, due: impl Fn(Duration) -> Duration) -> usize {
        let hung = std::mem::take(&mut self.hung);
        let count = hung.len();
        for index in hung.into_values() {
            let slot = &self.slots[index as usize];
            assert_eq!(slot.phase, Phase::Hung);
            self.schedule(index, due(slot.plan.service));
            self.stats.reads_unhung += 1;
        }
        count
    }
}

/// Decides latency and faults of a read of `available` bytes (after clipping to the file):
/// the plan, whether it hangs, and how many short-read retries it costs.
fn plan_read(faults: &Faults, available: u64, rng: &mut Rng) -> (Plan, bool, u32) {
    let mut service = faults.latency.sample(rng);
    let hang = rng.chance(faults.hang_probability);
    let eio = rng.chance(faults.eio_probability);
    let corrupt = rng.chance(faults.corrupt_probability);
    let corruption = (rng.next_u64(), 1 + rng.below(255) as u8);
    let mut short_reads = 0;
    let mut remaining = available;
    // Each short round moves at least one byte and leaves at least one: bounded by the bytes,
    // and by SHORT_READS_PER_READ_MAX.
    while !eio
        && remaining > 1
        && short_reads < SHORT_READS_PER_READ_MAX
        && rng.chance(faults.short_read_probability)
    {
        remaining -= rng.between(1, remaining - 1);
        short_reads += 1;
        service = service.saturating_add(faults.latency.sample(rng));
    }
    assert!(remaining >= 1 || available == 0);
    let plan = Plan {
        service,
        error: eio.then_some(IoError::Os(EIO)),
        corruption: (corrupt && !eio).then_some(corruption),
    };
    (plan, hang, short_reads)
}

/// The bytes of a file of `file_len` bytes that `op` returns: fewer at end of file.
fn read_window(op: ReadOp, file_len: usize) -> std::ops::Range<usize> {
    let file_len = file_len as u64;
    let start = op.offset.min(file_len);
    let end = op.offset.saturating_add(u64::from(op.len)).min(file_len);
    assert!(start <= end && end - start <= u64::from(op.len));
    start as usize..end as usize
}

/// Identity of a buffer: the address of its bytes (its own allocation, never empty).
fn address_of(buffer: &Buffer) -> usize {
    buffer.bytes().as_ptr() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stop_at_end_of_file() {
        let op = |offset, len| ReadOp { tag: 0, file: FileId(0), offset, len };
        assert_eq!(read_window(op(0, 10), 100), 0..10);
        assert_eq!(read_window(op(95, 10), 100), 95..100);
        assert_eq!(read_window(op(100, 10), 100), 100..100);
        assert_eq!(read_window(op(u64::MAX, 10), 100), 100..100);
    }

    #[test]
    #[should_panic(expected = "while its read (slot 0 generation 0) is in flight")]
    fn recycling_a_buffer_of_a_read_in_flight_panics() {
        // Callers cannot get such a buffer through the Backend API (this is what the check
        // guards); forge the state a buggy backend would be in.
        let mut state = State::new(SimConfig::new(1, 4), SimClock::new());
        let id = state.buffer_take(0, 0);
        let buffer = Buffer::from_vec(vec![1, 2, 3]);
        state.buffer_note_address(id, address_of(&buffer));
        state.recycle(buffer);
    }

    #[test]
    #[should_panic(expected = "was not handed out by this disk")]
    fn recycling_a_foreign_buffer_panics() {
        let mut state = State::new(SimConfig::new(1, 4), SimClock::new());
        state.recycle(Buffer::from_vec(vec![1]));
    }
}
