//! The shard loop. See the crate documentation.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use disk_io::{Backend, Buffer, Completion, DirectIo, FileId, IoError, ReadOp};
use plot_format::{Found, Goal, Lookup, Mode, PairKey, Plot, PlotError, ReadRequest};

use crate::metrics::{Histograms, MetricsHandle, Snapshot};

pub type JobId = u64;

/// The caller's name for a plot (unique across shards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlotKey(pub u64);

/// Monotonic time as the shard sees it; the simulated disk substitutes virtual time.
pub trait Clock {
    fn now(&self) -> Duration;
    /// True for a clock that follows real time, so an idle shard may sleep on its command
    /// channel; a virtual clock (tests) returns false and the idle shard returns at once,
    /// leaving time to whoever moves the clock.
    fn is_real_time(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock { start: Instant::now() }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// A name for logs and metrics (the disk).
    pub name: String,
    /// Lookups running at once; further jobs wait in the queue.
    pub lookups_active_max: usize,
    /// Lookup jobs accepted and not yet finished; beyond it they are rejected as overloaded.
    pub jobs_queued_max: usize,
    /// Proof jobs accepted and not yet finished, counted apart from lookup jobs: a proof is
    /// worth more than a lookup (it may win a block), so lookups never crowd proofs out, and
    /// proofs start (and read) ahead of queued lookups.
    pub proof_jobs_queued_max: usize,
    /// Consecutive failed reads of one plot before it is quarantined.
    pub plot_errors_max: u32,
    /// While degraded, a probe read is tried this often.
    pub probe_interval: Duration,
    /// Longest wait in one submit-and-wait while reads are in flight (new jobs wait at most
    /// this long to be noticed).
    pub tick_max: Duration,
    /// How often metrics are published.
    pub publish_interval: Duration,
    /// Longest sleep on the command channel when there is nothing to do.
    pub idle_wait_max: Duration,
    /// A read in flight this long, with no read completed meanwhile, marks the disk degraded
    /// (stuck, not merely slow).
    pub read_stuck_after: Duration,
    pub direct_io: DirectIo,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            name: "disk".into(),
            lookups_active_max: 4096,
            jobs_queued_max: 1024,
            proof_jobs_queued_max: 256,
            plot_errors_max: 3,
            probe_interval: Duration::from_millis(500),
            tick_max: Duration::from_millis(1),
            publish_interval: Duration::from_millis(100),
            idle_wait_max: Duration::from_millis(100),
            read_stuck_after: Duration::from_secs(1),
            direct_io: DirectIo::Prefer,
        }
    }
}

/// What a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Qualities of `challenge` in the given plots of this shard (`None`: every active plot),
    /// with their proofs when `proofs`.
    Qualities { challenge: [u8; 32], plots: Option<Vec<PlotKey>>, mode: Mode, proofs: bool },
    /// Qualities of a challenge of its own in each listed plot (chia's pos challenge depends
    /// on the plot id), with their proofs when `proofs`.
    QualitiesEach { items: Vec<(PlotKey, [u8; 32])>, mode: Mode, proofs: bool },
    /// The full proof of entry `index` of `challenge` in `plot`.
    Proof { plot: PlotKey, challenge: [u8; 32], index: u32, mode: Mode },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub work: Work,
    /// Clock time by which the job must be answered.
    pub deadline: Duration,
    /// Where the job's events go (`Found`, `PlotFailed`, then its one `JobDone`); `None`: the
    /// shard's own event output, with the events that belong to no job.
    pub reply: Option<Reply>,
}

/// Receives the events of the jobs that name it. Called on the shard's thread, in the order
/// the events arose; it may block, which holds the shard back (backpressure) and loses
/// nothing.
pub trait ReplySink: Send + Sync {
    /// Takes the event; true when it had to wait for room (counted as backpressure).
    fn deliver(&self, event: Event) -> bool;
}

/// A job's reply sink, shared by the jobs of one caller.
#[derive(Clone)]
pub struct Reply(Arc<dyn ReplySink>);

impl Reply {
    pub fn new(sink: impl ReplySink + 'static) -> Self {
        Reply(Arc::new(sink))
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// Two replies are equal when they are the same sink.
impl PartialEq for Reply {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Reply {}

/// A channel is a sink (blocking when full).
impl ReplySink for Sender<Event> {
    fn deliver(&self, event: Event) -> bool {
        match self.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => false,
            Err(TrySendError::Full(event)) => {
                let _ = self.send(event);
                true
            }
        }
    }
}

/// Where the events that belong to no job go (plot quarantined, disk degraded or recovered),
/// and those of jobs without a reply.
enum Outbox {
    Channel(Sender<Event>),
    Sink(Reply),
}

pub enum Command {
    Job(Job),
    /// Serve an opened plot from `path` (the shard opens its own handle through the backend).
    AddPlot {
        key: PlotKey,
        path: PathBuf,
        plot: Box<Plot>,
    },
    RemovePlot {
        key: PlotKey,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    Plot(PlotError),
    Io(IoError),
    UnknownPlot,
    Quarantined,
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardError::Plot(e) => write!(f, "{e}"),
            ShardError::Io(e) => write!(f, "{e}"),
            ShardError::UnknownPlot => f.write_str("plot is not served by this shard"),
            ShardError::Quarantined => f.write_str("plot is quarantined"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Every plot answered (with results, nothing, or an error event).
    Complete,
    /// The deadline passed; `unanswered` plots gave no answer (their events are lost).
    TimedOut { unanswered: u32 },
    /// Not started: the disk is degraded, or too many jobs are queued.
    Rejected { reason: Rejection },
}

/// Why a shard refused a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `jobs_queued_max` lookup jobs are waiting or running: load, try again later.
    LookupsFull,
    /// `proof_jobs_queued_max` proof jobs are waiting or running: load, try again later.
    ProofsFull,
    /// The disk is degraded (a read is stuck); new work waits for a probe read to succeed.
    DiskDegraded,
}

impl Rejection {
    /// Whether the refusal is for load (the disk itself is fine).
    pub fn is_load(self) -> bool {
        matches!(self, Rejection::LookupsFull | Rejection::ProofsFull)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejection::LookupsFull => "shard overloaded",
            Rejection::ProofsFull => "shard overloaded with proof requests",
            Rejection::DiskDegraded => "disk degraded",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A plot's answer to a job (at least one entry).
    Found {
        job: JobId,
        plot: PlotKey,
        found: Vec<Found>,
    },
    /// A plot failed this job.
    PlotFailed {
        job: JobId,
        plot: PlotKey,
        error: ShardError,
    },
    /// The one and last event of every job.
    JobDone {
        job: JobId,
        status: JobStatus,
    },
    PlotQuarantined {
        plot: PlotKey,
        /// The plot's file.
        path: PathBuf,
        reason: String,
    },
    DiskDegraded {
        shard: String,
    },
    DiskRecovered {
        shard: String,
    },
}

struct PlotSlot {
    path: PathBuf,
    plot: Box<Plot>,
    file: FileId,
    consecutive_errors: u32,
    quarantined: Option<String>,
}

struct JobState {
    job: Job,
    accepted: Duration,
    started: bool,
    /// Plots not yet answered.
    pending: u32,
}

/// A lookup in progress: which job and plot, and the reads of its current round still owed.
struct Active {
    job: JobId,
    plot: PlotKey,
    lookup: Lookup,
    generation: u64,
}

/// One read in the backend, shared by every lookup read that asked for the same bytes.
struct InFlight {
    request: (FileId, u64, u32),
    waiters: Vec<Waiter>,
    pushed: Duration,
}

#[derive(Clone, Copy)]
struct Waiter {
    slot: usize,
    generation: u64,
    round: u32,
    index: usize,
}

/// A lookup read answered by a buffer of the group being handled: its bytes are
/// `group_buffers[buffer].bytes()[lo..hi]`.
#[derive(Clone, Copy)]
struct GroupRead {
    waiter: Waiter,
    buffer: usize,
    lo: usize,
    hi: usize,
    /// How it pairs with another lookup's read (`Lookup::pair_key`), found when supplied.
    key: Option<PairKey>,
}

/// While reaping, the reads produced so far are submitted after every this many completions
/// (see `Shard::refill`); the completions in between are supplied as one group.
const REFILL_EVERY_COMPLETIONS: usize = 8;

/// One reap takes in at most this many times `reads_in_flight_max` completions, so that a disk
/// that completes reads as fast as they are decoded still lets the loop check deadlines and
/// take new jobs.
const BATCH_MAX_PER_READS_IN_FLIGHT: usize = 4;

/// Events held before they are sent, within one tick.
const EVENTS_PENDING_MAX: usize = 1024;

/// Reads are widened to whole blocks of this size (the largest logical block size of disks
/// in use), so that lookups wanting different bytes of one block share one read.
const COALESCE_BLOCK_BYTES: u64 = 4096;

/// The block-aligned range around `offset..offset + len`, clipped to the file's end.
fn block_range(offset: u64, len: u32, file_len: u64) -> (u64, u64) {
    let start = offset / COALESCE_BLOCK_BYTES * COALESCE_BLOCK_BYTES;
    let want_end = offset.saturating_add(u64::from(len));
    let end = want_end.div_ceil(COALESCE_BLOCK_BYTES).saturating_mul(COALESCE_BLOCK_BYTES);
    (start, end.min(file_len.max(want_end)))
}

/// A shard running on its own thread.
pub struct ShardHandle {
    pub name: String,
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub metrics: MetricsHandle,
    pub thread: std::thread::JoinHandle<()>,
}

pub struct Shard<B: Backend, C: Clock> {
    config: ShardConfig,
    backend: B,
    clock: C,
    commands: Receiver<Command>,
    events: Outbox,
    /// Events queued since the last submit with their job's reply, sent together before the
    /// next submit (see `flush_events`).
    events_pending: Vec<(Option<Reply>, Event)>,
    plots: HashMap<PlotKey, PlotSlot>,
    jobs: HashMap<JobId, JobState>,
    /// Jobs accepted and not answered, lookups \[0\] and proofs \[1\] (the queue limits).
    jobs_of_kind: [usize; 2],
    /// Lookup jobs waiting to start.
    queue: VecDeque<JobId>,
    /// Proof jobs waiting to start; they start before any queued lookup job.
    proof_queue: VecDeque<JobId>,
    active: Vec<Option<Active>>,
    free_slots: Vec<usize>,
    generation: u64,
    /// Reads in the backend, by tag.
    in_flight: HashMap<u64, InFlight>,
    /// The tag of the read in flight that starts at this block of this file (coalescing).
    by_block: HashMap<(FileId, u64), u64>,
    next_tag: u64,
    /// Lookup reads waiting for room in the backend.
    unsent: VecDeque<Waiter>,
    /// Proof reads waiting for room in the backend; sent before any lookup read.
    unsent_urgent: VecDeque<Waiter>,
    completions: Vec<Completion>,
    /// The completions of one reap being handled, with the time each was taken (reused).
    batch: VecDeque<(Completion, Duration)>,
    /// The buffers of a group of completions (at most `REFILL_EVERY_COMPLETIONS`) and the
    /// lookup reads they answer, supplied together so that walk reads of different lookups
    /// decode in pairs (`supply_group`; reused).
    group_buffers: Vec<Buffer>,
    group_reads: Vec<GroupRead>,
    degraded: bool,
    /// When the disk last recovered (reads pushed before it no longer mark it stuck).
    recovered_at: Duration,
    /// When the backend last completed a read (successfully or not): the disk's last sign of
    /// life.
    last_completion: Duration,
    next_probe: Duration,
    probe_tag: Option<u64>,
    snapshot: Snapshot,
    metrics: MetricsHandle,
    next_publish: Duration,
    disconnected: bool,
}

impl<B: Backend, C: Clock> Shard<B, C> {
    pub fn new(
        config: ShardConfig,
        backend: B,
        clock: C,
        commands: Receiver<Command>,
        events: Sender<Event>,
    ) -> Self {
        Shard {
            config,
            backend,
            clock,
            commands,
            events: Outbox::Channel(events),
            events_pending: Vec::new(),
            plots: HashMap::new(),
            jobs: HashMap::new(),
            jobs_of_kind: [0; 2],
            queue: VecDeque::new(),
            proof_queue: VecDeque::new(),
            active: Vec::new(),
            free_slots: Vec::new(),
            generation: 0,
            in_flight: HashMap::new(),
            by_block: HashMap::new(),
            next_tag: 1,
            unsent: VecDeque::new(),
            unsent_urgent: VecDeque::new(),
            completions: Vec::new(),
            batch: VecDeque::new(),
            group_buffers: Vec::new(),
            group_reads: Vec::new(),
            degraded: false,
            recovered_at: Duration::ZERO,
            last_completion: Duration::ZERO,
            next_probe: Duration::ZERO,
            probe_tag: None,
            snapshot: Snapshot::default(),
            metrics: MetricsHandle::default(),
            next_publish: Duration::ZERO,
            disconnected: false,
        }
    }

    /// Runs a shard on its own thread. The backend is made on that thread (an io_uring ring
    /// set up with SINGLE_ISSUER must be used by the thread that created it).
    pub fn spawn<F>(
        config: ShardConfig,
        make_backend: F,
        clock: C,
        commands_max: usize,
        events_max: usize,
    ) -> std::io::Result<ShardHandle>
    where
        F: FnOnce() -> std::io::Result<B> + Send + 'static,
        B: 'static,
        C: Send + 'static,
    {
        Self::spawn_with(config, make_backend, clock, commands_max, events_max, None)
    }

    fn spawn_with<F>(
        config: ShardConfig,
        make_backend: F,
        clock: C,
        commands_max: usize,
        events_max: usize,
        outbox: Option<Reply>,
    ) -> std::io::Result<ShardHandle>
    where
        F: FnOnce() -> std::io::Result<B> + Send + 'static,
        B: 'static,
        C: Send + 'static,
    {
        let (command_tx, command_rx) = crossbeam_channel::bounded(commands_max);
        let (event_tx, event_rx) = crossbeam_channel::bounded(events_max);
        let metrics = MetricsHandle::default();
        let published = metrics.clone();
        let name = config.name.clone();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let thread =
            std::thread::Builder::new().name(format!("shard-{name}")).spawn(move || {
                let backend = match make_backend() {
                    Ok(b) => {
                        let _ = ready_tx.send(Ok(()));
                        b
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut shard = Shard::new(config, backend, clock, command_rx, event_tx);
                if let Some(outbox) = outbox {
                    shard.events = Outbox::Sink(outbox);
                }
                shard.metrics = published;
                shard.run();
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::other("shard thread ended before starting")),
        }
        Ok(ShardHandle { name, commands: command_tx, events: event_rx, metrics, thread })
    }

    /// As [`Shard::spawn`], with the events that belong to no job (and those of jobs without
    /// a reply) delivered to `outbox` instead of a channel; the handle's `events` never
    /// receives anything.
    pub fn spawn_to<F>(
        config: ShardConfig,
        make_backend: F,
        clock: C,
        commands_max: usize,
        outbox: Reply,
    ) -> std::io::Result<ShardHandle>
    where
        F: FnOnce() -> std::io::Result<B> + Send + 'static,
        B: 'static,
        C: Send + 'static,
    {
        let handle = Self::spawn_with(config, make_backend, clock, commands_max, 1, Some(outbox))?;
        Ok(ShardHandle { events: crossbeam_channel::never(), ..handle })
    }

    pub fn metrics(&self) -> MetricsHandle {
        self.metrics.clone()
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Jobs accepted and not yet answered.
    pub fn jobs_pending(&self) -> usize {
        self.jobs.len()
    }

    /// Has work: jobs queued or running, or reads in flight.
    pub fn busy(&self) -> bool {
        !self.jobs.is_empty() || self.backend.in_flight() > 0
    }

    /// Runs until the command channel is closed and every job is answered.
    pub fn run(mut self) {
        while !(self.disconnected && self.jobs.is_empty()) {
            self.tick();
        }
        self.flush_events();
        self.publish(true);
    }

    /// One pass of the loop. Blocks: on the command channel when idle, else in the backend.
    pub fn tick(&mut self) {
        self.take_commands();
        self.reap();
        self.expire();
        self.start_jobs();
        self.send_reads();
        self.probe();
        self.publish(false);
        self.flush_events();
        if self.backend.in_flight() > 0 || self.reads_waiting() {
            let wait = self.wait_budget();
            if let Err(e) = self.backend.submit_and_wait(Some(wait)) {
                tracing::warn!(disk = %self.config.name, "submit failed: {e}");
            }
        }
    }

    fn wait_budget(&self) -> Duration {
        let now = self.clock.now();
        let next_deadline = self.jobs.values().map(|j| j.job.deadline).min();
        let mut wait = self.config.tick_max;
        if let Some(d) = next_deadline {
            wait = wait.min(d.saturating_sub(now));
        }
        wait.max(Duration::from_micros(50))
    }

    fn take_commands(&mut self) {
        let idle = self.jobs.is_empty() && self.backend.in_flight() == 0;
        if idle && !self.disconnected && self.clock.is_real_time() {
            // Nothing to do: sleep on the channel (a degraded disk still probes).
            let timeout = if self.degraded {
                self.config.probe_interval.min(self.config.idle_wait_max)
            } else {
                self.config.idle_wait_max
            };
            match self.commands.recv_timeout(timeout) {
                Ok(c) => self.command(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.disconnected = true,
            }
        }
        loop {
            match self.commands.try_recv() {
                Ok(c) => self.command(c),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    break;
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Job(job) => self.accept(job),
            Command::AddPlot { key, path, plot } => {
                match self.backend.open(&path, self.config.direct_io) {
                    Ok(opened) => {
                        self.plots.insert(
                            key,
                            PlotSlot {
                                path,
                                plot,
                                file: opened.id,
                                consecutive_errors: 0,
                                quarantined: None,
                            },
                        );
                    }
                    Err(e) => self.emit(Event::PlotQuarantined {
                        plot: key,
                        reason: format!("{}: {e}", path.display()),
                        path,
                    }),
                }
            }
            Command::RemovePlot { key } => {
                if let Some(p) = self.plots.remove(&key) {
                    self.backend.close(p.file);
                }
                // Its lookups in progress can never be fed again (their reads are dropped as
                // stale): answer them now instead of at their jobs' deadlines.
                for slot in 0..self.active.len() {
                    if self.active[slot].as_ref().is_some_and(|a| a.plot == key) {
                        if let Some(a) = self.active[slot].take() {
                            self.free_slots.push(slot);
                            self.plot_answered(a.job, a.plot, Err(ShardError::UnknownPlot));
                            self.finish_if_done(a.job);
                        }
                    }
                }
            }
        }
    }

    fn accept(&mut self, job: Job) {
        self.snapshot.counters.jobs += 1;
        let proof = is_proof(&job.work);
        let (limit, reason) = if proof {
            (self.config.proof_jobs_queued_max, Rejection::ProofsFull)
        } else {
            (self.config.jobs_queued_max, Rejection::LookupsFull)
        };
        let queued = self.jobs_of_kind[usize::from(proof)];
        let reject = if self.degraded {
            Some(Rejection::DiskDegraded)
        } else if queued >= limit {
            Some(reason)
        } else {
            None
        };
        if let Some(reason) = reject {
            self.snapshot.counters.jobs_rejected += 1;
            let done = Event::JobDone { job: job.id, status: JobStatus::Rejected { reason } };
            return self.emit_to(job.reply, done);
        }
        let id = job.id;
        self.jobs_of_kind[usize::from(proof)] += 1;
        self.jobs
            .insert(id, JobState { job, accepted: self.clock.now(), started: false, pending: 0 });
        if proof {
            self.proof_queue.push_back(id);
        } else {
            self.queue.push_back(id);
        }
    }

    /// Starts queued jobs while lookup slots are free: proofs first, then lookups in order.
    fn start_jobs(&mut self) {
        loop {
            let (urgent, id) = match (self.proof_queue.front(), self.queue.front()) {
                (Some(&id), _) => (true, id),
                (None, Some(&id)) => (false, id),
                (None, None) => break,
            };
            let queue = if urgent { &mut self.proof_queue } else { &mut self.queue };
            let Some(state) = self.jobs.get(&id) else {
                queue.pop_front();
                continue;
            };
            let targets: Vec<(PlotKey, [u8; 32], Goal, Mode)> = match &state.job.work {
                Work::Qualities { challenge, plots, mode, proofs } => {
                    let goal = if *proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
                    let mut keys: Vec<PlotKey> = match plots {
                        Some(list) => list.clone(),
                        None => self
                            .plots
                            .iter()
                            .filter(|(_, p)| p.quarantined.is_none())
                            .map(|(k, _)| *k)
                            .collect(),
                    };
                    keys.sort_unstable();
                    keys.into_iter().map(|k| (k, *challenge, goal, *mode)).collect()
                }
                Work::QualitiesEach { items, mode, proofs } => {
                    let goal = if *proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
                    let mut items = items.clone();
                    items.sort_unstable();
                    items.into_iter().map(|(k, c)| (k, c, goal, *mode)).collect()
                }
                Work::Proof { plot, challenge, index, mode } => {
                    vec![(*plot, *challenge, Goal::Proof { index: *index }, *mode)]
                }
            };
            let free = self.config.lookups_active_max.saturating_sub(self.active_count());
            if targets.len() > free && self.active_count() > 0 {
                break; // wait for room; a job larger than the whole limit starts alone
            }
            if urgent {
                self.proof_queue.pop_front();
            } else {
                self.queue.pop_front();
            }
            let now = self.clock.now();
            if let Some(state) = self.jobs.get_mut(&id) {
                state.started = true;
                state.pending = targets.len() as u32;
                Histograms::record(
                    &mut self.snapshot.histograms.queue_wait_us,
                    micros(now.saturating_sub(state.accepted)),
                );
            }
            for (key, challenge, goal, mode) in targets {
                let plot = match self.plots.get(&key) {
                    None => Err(ShardError::UnknownPlot),
                    Some(p) if p.quarantined.is_some() => Err(ShardError::Quarantined),
                    Some(p) => Ok(p.plot.lookup(&challenge, goal, mode)),
                };
                match plot {
                    Ok(lookup) => self.activate(id, key, lookup),
                    Err(error) => self.plot_answered(id, key, Err(error)),
                }
            }
            self.finish_if_done(id);
        }
    }

    /// How many plots a job covers.
    fn plots_of(&self, work: &Work) -> usize {
        match work {
            Work::Qualities { plots: Some(list), .. } => list.len(),
            Work::QualitiesEach { items, .. } => items.len(),
            Work::Qualities { plots: None, .. } => {
                self.plots.values().filter(|p| p.quarantined.is_none()).count()
            }
            Work::Proof { .. } => 1,
        }
    }

    /// Removes a job, keeping the count of each kind (lookups, proofs) exact.
    fn take_job(&mut self, id: JobId) -> Option<JobState> {
        let state = self.jobs.remove(&id)?;
        let kind = &mut self.jobs_of_kind[usize::from(is_proof(&state.job.work))];
        *kind = kind.saturating_sub(1);
        Some(state)
    }

    fn active_count(&self) -> usize {
        self.active.len() - self.free_slots.len()
    }

    fn activate(&mut self, job: JobId, plot: PlotKey, lookup: Lookup) {
        self.generation += 1;
        let generation = self.generation;
        if lookup.is_done() {
            // Answered from C2 alone (no entry can match).
            let outcome = lookup.into_outcome().unwrap_or(Ok(Vec::new()));
            return self.plot_answered(job, plot, outcome.map_err(ShardError::Plot));
        }
        let entry = Active { job, plot, lookup, generation };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.active[s] = Some(entry);
                s
            }
            None => {
                self.active.push(Some(entry));
                self.active.len() - 1
            }
        };
        self.queue_round(slot);
    }

    /// Queues the reads of a lookup's current round.
    fn queue_round(&mut self, slot: usize) {
        let Some(a) = &self.active[slot] else { return };
        let round = a.lookup.round();
        let generation = a.generation;
        let queue = if matches!(a.lookup.goal(), Goal::Proof { .. }) {
            &mut self.unsent_urgent
        } else {
            &mut self.unsent
        };
        for index in 0..a.lookup.reads().len() {
            queue.push_back(Waiter { slot, generation, round, index });
        }
    }

    fn reads_waiting(&self) -> bool {
        !self.unsent.is_empty() || !self.unsent_urgent.is_empty()
    }

    /// The next waiting read: proof reads before lookup reads.
    fn next_waiter(&self) -> Option<Waiter> {
        self.unsent_urgent.front().or(self.unsent.front()).copied()
    }

    /// Takes the waiter [`Self::next_waiter`] returned.
    fn pop_waiter(&mut self) {
        if self.unsent_urgent.pop_front().is_none() {
            self.unsent.pop_front();
        }
    }

    /// Pushes waiting reads into the backend, sharing identical reads, up to its limit.
    fn send_reads(&mut self) {
        let now = self.clock.now();
        while let Some(w) = self.next_waiter() {
            let Some((file, request, file_len)) = self.waiter_request(w) else {
                self.pop_waiter();
                continue;
            };
            // Whole blocks: lookups that want different bytes of one block share one read
            // (with O_DIRECT the device reads whole blocks anyway).
            let (start, end) = block_range(request.offset, request.len, file_len);
            if let Some(f) =
                self.by_block.get(&(file, start)).and_then(|t| self.in_flight.get_mut(t))
            {
                let (_, f_start, f_len) = f.request;
                if f_start == start && end <= f_start + u64::from(f_len) {
                    f.waiters.push(w);
                    self.snapshot.counters.reads_coalesced += 1;
                    self.pop_waiter();
                    continue;
                }
            }
            let tag = self.next_tag;
            // `end - start` is at most a read plus two blocks: far below u32::MAX.
            let len = u32::try_from(end - start).unwrap_or(u32::MAX);
            let op = ReadOp { tag, file, offset: start, len };
            if self.backend.push(op).is_err() {
                break; // at reads_in_flight_max; retried next tick
            }
            self.next_tag += 1;
            self.pop_waiter();
            self.snapshot.counters.reads += 1;
            self.snapshot.counters.record_read_size(u64::from(len));
            self.by_block.insert((file, start), tag);
            self.in_flight.insert(
                tag,
                InFlight { request: (file, start, len), waiters: vec![w], pushed: now },
            );
        }
    }

    /// While a long batch of completions is being decoded, takes the reads that finished
    /// meanwhile into the batch and hands the kernel the reads produced so far. Otherwise the
    /// device's queue drains until the whole batch is done (at 64 completions, a few hundred
    /// microseconds of decoding on a cold disk), and reads that finished meanwhile keep their
    /// places in `reads_in_flight_max` until the next tick.
    fn refill(&mut self, batch: &mut VecDeque<(Completion, Duration)>, reaped: &mut usize) {
        if *reaped < self.backend.reads_in_flight_max() * BATCH_MAX_PER_READS_IN_FLIGHT {
            *reaped += self.take_finished(batch);
        }
        if self.reads_waiting() && self.backend.in_flight() < self.backend.reads_in_flight_max() {
            self.send_reads();
            // The pread backend reads inside `submit_and_wait`: answers found so far leave
            // first, as they do before every submit.
            self.flush_events();
            if let Err(e) = self.backend.submit_and_wait(None) {
                tracing::warn!(disk = %self.config.name, "submit failed: {e}");
            }
        }
    }

    /// The read a waiter stands for, if its lookup still wants it.
    fn waiter_request(&self, w: Waiter) -> Option<(FileId, ReadRequest, u64)> {
        let a = self.wanting(w)?;
        let request = *a.lookup.reads().get(w.index)?;
        let slot = self.plots.get(&a.plot)?;
        Some((slot.file, request, slot.plot.tables().file_len))
    }

    /// Moves the backend's finished reads to the end of `batch`, each with the time it was
    /// taken (where its read latency ends). Returns how many.
    fn take_finished(&mut self, batch: &mut VecDeque<(Completion, Duration)>) -> usize {
        let mut finished = std::mem::take(&mut self.completions);
        self.backend.drain(&mut finished);
        let now = self.clock.now();
        let n = finished.len();
        if n > 0 {
            self.last_completion = now;
        }
        batch.extend(finished.drain(..).map(|c| (c, now)));
        self.completions = finished;
        n
    }

    fn reap(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut reaped = self.take_finished(&mut batch);
        // With O_DIRECT every read waits on the device: keep its queue full while decoding.
        // Buffered reads of cached pages complete at submit, so there it only adds system calls
        // (measured: about 4 % fewer warm lookups/s).
        let refill = self.config.direct_io != DirectIo::Off;
        while !batch.is_empty() {
            if refill {
                self.refill(&mut batch, &mut reaped);
            }
            for _ in 0..REFILL_EVERY_COMPLETIONS {
                let Some((c, now)) = batch.pop_front() else { break };
                self.take_completion(c, now);
            }
            self.supply_group();
        }
        self.batch = batch;
    }

    /// Accounts for one completion: errors go to their lookups at once, the bytes of a good
    /// read join the group (`supply_group` supplies them).
    fn take_completion(&mut self, c: Completion, now: Duration) {
        if Some(c.tag) == self.probe_tag {
            return self.probe_done(c);
        }
        let Some(read) = self.in_flight.remove(&c.tag) else {
            if let Ok(buf) = c.result {
                self.backend.recycle(buf);
            }
            return;
        };
        let (file, start, _) = read.request;
        if self.by_block.get(&(file, start)) == Some(&c.tag) {
            self.by_block.remove(&(file, start));
        }
        Histograms::record(
            &mut self.snapshot.histograms.read_latency_us,
            micros(now.saturating_sub(read.pushed)),
        );
        match c.result {
            Ok(buf) => {
                self.snapshot.counters.read_bytes += buf.len() as u64;
                let len = buf.bytes().len();
                let buffer = self.group_buffers.len();
                for w in read.waiters {
                    // Each waiter gets its own bytes out of the block range.
                    let Some((_, r, _)) = self.waiter_request(w) else {
                        self.snapshot.counters.reads_late += 1;
                        continue;
                    };
                    let lo = usize::try_from(r.offset.saturating_sub(start))
                        .unwrap_or(usize::MAX)
                        .min(len);
                    let hi = lo.saturating_add(r.len as usize).min(len);
                    self.group_reads.push(GroupRead { waiter: w, buffer, lo, hi, key: None });
                }
                self.group_buffers.push(buf);
            }
            Err(e) => {
                self.snapshot.counters.read_errors += 1;
                for w in read.waiters {
                    self.supply(w, Err(e.clone()));
                }
            }
        }
    }

    /// Supplies the group's reads to their lookups: reads of walk rounds and of C3 parks two
    /// at a time, paired by kind and reach (`Lookup::pair_key`, `Lookup::supply_with`: their
    /// FSE streams decode interleaved), the rest one by one.
    /// Then the group's buffers go back to the backend.
    fn supply_group(&mut self) {
        let buffers = std::mem::take(&mut self.group_buffers);
        let mut reads = std::mem::take(&mut self.group_reads);
        let bytes = |r: &GroupRead| &buffers[r.buffer].bytes()[r.lo..r.hi];
        for r in reads.iter_mut() {
            r.key = self.pair_key(r.waiter, bytes(r).len());
        }
        // Pairable reads first, sorted by kind and reach; the others after them.
        reads.sort_unstable_by_key(|r| (r.key.is_none(), r.key));
        let mut k = 0;
        while k < reads.len() {
            let a = reads[k];
            match reads.get(k + 1) {
                Some(&b) if a.key.is_some() && b.key.is_some() => {
                    self.supply_pair((a.waiter, bytes(&a)), (b.waiter, bytes(&b)));
                    k += 2;
                }
                _ => {
                    self.supply(a.waiter, Ok(bytes(&a)));
                    k += 1;
                }
            }
        }
        reads.clear();
        self.group_reads = reads;
        let mut buffers = buffers;
        for buf in buffers.drain(..) {
            self.backend.recycle(buf);
        }
        self.group_buffers = buffers;
    }

    /// The lookup `w` stands for, if it still wants that read.
    fn wanting(&self, w: Waiter) -> Option<&Active> {
        let a = self.active.get(w.slot)?.as_ref()?;
        (a.generation == w.generation && a.lookup.round() == w.round).then_some(a)
    }

    /// How `Lookup::supply_with` can pair `w`'s read, if it can.
    fn pair_key(&self, w: Waiter, len: usize) -> Option<PairKey> {
        self.wanting(w)?.lookup.pair_key(w.index, len)
    }

    /// Supplies two pairable reads together: of two lookups (`Lookup::supply_with`) or two
    /// walk reads of one (`Lookup::supply_many`).
    fn supply_pair(&mut self, (wa, a): (Waiter, &[u8]), (wb, b): (Waiter, &[u8])) {
        if self.wanting(wa).is_none() || self.wanting(wb).is_none() {
            self.supply(wa, Ok(a));
            return self.supply(wb, Ok(b));
        }
        if wa.slot == wb.slot {
            if let Some(Some(active)) = self.active.get_mut(wa.slot) {
                active.lookup.supply_many(&[(wa.index, a), (wb.index, b)]);
            }
            // Once: both reads are of the same round of the same lookup.
            return self.after_supply(wa);
        }
        let ((first, x), (second, y)) =
            if wa.slot < wb.slot { ((wa, a), (wb, b)) } else { ((wb, b), (wa, a)) };
        let (head, tail) = self.active.split_at_mut(second.slot);
        // `wanting` found both slots occupied just above.
        let (Some(p), Some(q)) = (head[first.slot].as_mut(), tail[0].as_mut()) else {
            unreachable!("both lookups are active")
        };
        p.lookup.supply_with((first.index, x), &mut q.lookup, (second.index, y));
        self.after_supply(first);
        self.after_supply(second);
    }

    fn supply(&mut self, w: Waiter, bytes: Result<&[u8], IoError>) {
        let Some(Some(a)) = self.active.get_mut(w.slot) else {
            self.snapshot.counters.reads_late += 1;
            return;
        };
        if a.generation != w.generation || a.lookup.round() != w.round {
            self.snapshot.counters.reads_late += 1;
            return;
        }
        match bytes {
            Ok(bytes) => a.lookup.supply(w.index, bytes),
            Err(e) => return self.io_failed(w.slot, e),
        }
        self.after_supply(w);
    }

    /// After bytes were supplied for `w`: the plot read well, and the lookup is done, goes
    /// on to its next round, or waits for more reads of this one.
    fn after_supply(&mut self, w: Waiter) {
        let Some(Some(a)) = self.active.get(w.slot) else { return };
        if let Some(p) = self.plots.get_mut(&a.plot) {
            p.consecutive_errors = 0;
        }
        if a.lookup.is_done() {
            self.retire(w.slot);
        } else if a.lookup.round() != w.round {
            self.queue_round(w.slot);
        }
    }

    fn io_failed(&mut self, slot: usize, error: IoError) {
        let Some(a) = self.active[slot].take() else { return };
        self.free_slots.push(slot);
        let quarantine = match self.plots.get_mut(&a.plot) {
            Some(p) => {
                p.consecutive_errors += 1;
                p.consecutive_errors >= self.config.plot_errors_max && p.quarantined.is_none()
            }
            None => false,
        };
        if quarantine {
            self.quarantine(
                a.plot,
                format!("{} failed reads in a row, last: {error}", self.config.plot_errors_max),
            );
        }
        self.plot_answered(a.job, a.plot, Err(ShardError::Io(error)));
        self.finish_if_done(a.job);
    }

    fn quarantine(&mut self, plot: PlotKey, reason: String) {
        // Once: later failures of lookups already running are not news.
        if let Some(p) = self.plots.get_mut(&plot).filter(|p| p.quarantined.is_none()) {
            // The daemon logs it with the plot's path when the event reaches it.
            tracing::debug!(disk = %self.config.name, plot = %p.path.display(), "plot quarantined: {reason}");
            p.quarantined = Some(reason.clone());
            self.snapshot.counters.plots_quarantined += 1;
            let path = p.path.clone();
            self.emit(Event::PlotQuarantined { plot, path, reason });
        }
    }

    /// A lookup finished: report its outcome.
    fn retire(&mut self, slot: usize) {
        let Some(a) = self.active[slot].take() else { return };
        self.free_slots.push(slot);
        let outcome = a.lookup.into_outcome().unwrap_or(Ok(Vec::new()));
        if let Err(e) = &outcome {
            if is_corruption(e) {
                self.quarantine(a.plot, e.to_string());
            }
        }
        self.plot_answered(a.job, a.plot, outcome.map_err(ShardError::Plot));
        self.finish_if_done(a.job);
    }

    fn plot_answered(
        &mut self,
        job: JobId,
        plot: PlotKey,
        outcome: Result<Vec<Found>, ShardError>,
    ) {
        let Some(state) = self.jobs.get_mut(&job) else { return };
        state.pending = state.pending.saturating_sub(1);
        match outcome {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                let proofs = found.iter().filter(|f| f.proof.is_some()).count() as u64;
                self.snapshot.counters.qualities += found.len() as u64;
                self.snapshot.counters.proofs += proofs;
                self.emit(Event::Found { job, plot, found });
            }
            Err(error) => {
                self.snapshot.counters.plot_errors += 1;
                self.emit(Event::PlotFailed { job, plot, error });
            }
        }
    }

    fn finish_if_done(&mut self, job: JobId) {
        let done = self.jobs.get(&job).is_some_and(|s| s.started && s.pending == 0);
        if done {
            if let Some(state) = self.take_job(job) {
                let us = micros(self.clock.now().saturating_sub(state.accepted));
                let h = match state.job.work {
                    Work::Proof { .. } => &mut self.snapshot.histograms.proof_latency_us,
                    Work::Qualities { .. } | Work::QualitiesEach { .. } => {
                        &mut self.snapshot.histograms.lookup_latency_us
                    }
                };
                Histograms::record(h, us);
                self.emit_to(state.job.reply, Event::JobDone { job, status: JobStatus::Complete });
            }
        }
    }

    /// Answers every job past its deadline (their reads stay owned by the backend until they
    /// complete), and marks the disk degraded when a read has been stuck too long.
    fn expire(&mut self) {
        let now = self.clock.now();
        let mut expired: Vec<JobId> =
            self.jobs.iter().filter(|(_, s)| s.job.deadline <= now).map(|(id, _)| *id).collect();
        // In id order, not the map's: a run replays exactly for a seed.
        expired.sort_unstable();
        self.end_jobs(expired);
        self.check_stuck(now);
    }

    /// Answers these jobs now with what they have (`TimedOut`, the plots not answered); their
    /// reads stay owned by the backend until they complete.
    fn end_jobs(&mut self, ids: Vec<JobId>) {
        let mut stuck = false;
        for id in ids {
            let Some(state) = self.take_job(id) else { continue };
            let unanswered = if state.started {
                state.pending
            } else {
                self.queue.retain(|j| *j != id);
                self.proof_queue.retain(|j| *j != id);
                self.plots_of(&state.job.work) as u32
            };
            for slot in 0..self.active.len() {
                if self.active[slot].as_ref().is_some_and(|a| a.job == id) {
                    self.active[slot] = None;
                    self.free_slots.push(slot);
                    stuck = true;
                }
            }
            self.snapshot.counters.jobs_timed_out += 1;
            let done = Event::JobDone { job: id, status: JobStatus::TimedOut { unanswered } };
            self.emit_to(state.job.reply, done);
        }
        if stuck {
            // Reads that outlived a deadline stay owned by the backend until they complete,
            // but no new lookup may wait on them.
            self.by_block.clear();
        }
    }

    fn check_stuck(&mut self, now: Duration) {
        // Degraded means stuck, not slow: a read has been in the kernel for `read_stuck_after`
        // and in that time the disk completed nothing. A busy HDD whose queue makes reads wait
        // longer than that still completes a read every few milliseconds, so it is slow, not
        // stuck. Checked on every tick, so a stuck disk is noticed with or without a job
        // expiring. Reads already counted against the disk before its last recovery do not
        // count again.
        let since = self.recovered_at;
        let oldest = self.in_flight.values().map(|r| r.pushed).filter(|&t| t >= since).min();
        let limit = self.config.read_stuck_after;
        let read_stuck = oldest.is_some_and(|t| now.saturating_sub(t) >= limit)
            && now.saturating_sub(self.last_completion) >= limit;
        if read_stuck && !self.degraded {
            self.degraded = true;
            self.snapshot.counters.degraded_episodes += 1;
            self.next_probe = now + self.config.probe_interval;
            // Reported as an event too (the daemon logs it); here for the shard's own trace.
            tracing::debug!(disk = %self.config.name, read_stuck_after = ?self.config.read_stuck_after,
                "disk degraded: a read has waited read_stuck_after with no read completed");
            let shard = self.config.name.clone();
            self.emit(Event::DiskDegraded { shard });
            // Jobs running on the stuck disk cannot progress: answered now with what they
            // have, not at their deadline (a farmer's signage point is not held up for them).
            let mut running: Vec<JobId> =
                self.jobs.iter().filter(|(_, s)| s.started).map(|(id, _)| *id).collect();
            running.sort_unstable();
            self.end_jobs(running);
            // Jobs still queued are held back: answered at once as rejected.
            let queued = std::mem::take(&mut self.proof_queue);
            for id in queued.into_iter().chain(std::mem::take(&mut self.queue)) {
                if let Some(state) = self.take_job(id) {
                    self.snapshot.counters.jobs_rejected += 1;
                    let done = Event::JobDone {
                        job: id,
                        status: JobStatus::Rejected { reason: Rejection::DiskDegraded },
                    };
                    self.emit_to(state.job.reply, done);
                }
            }
        }
    }

    /// While degraded: a small read of some plot's header, once per interval; success heals.
    fn probe(&mut self) {
        if !self.degraded || self.probe_tag.is_some() || self.clock.now() < self.next_probe {
            return;
        }
        // The lowest key, not the map's first: a run replays exactly for a seed.
        let Some(file) = self
            .plots
            .iter()
            .filter(|(_, p)| p.quarantined.is_none())
            .min_by_key(|(k, _)| **k)
            .map(|(_, p)| p.file)
        else {
            return;
        };
        let tag = self.next_tag;
        if self.backend.push(ReadOp { tag, file, offset: 0, len: 512 }).is_ok() {
            self.next_tag += 1;
            self.probe_tag = Some(tag);
        }
    }

    fn probe_done(&mut self, c: Completion) {
        self.probe_tag = None;
        match c.result {
            Ok(buf) => {
                self.backend.recycle(buf);
                self.degraded = false;
                self.recovered_at = self.clock.now();
                tracing::debug!(disk = %self.config.name, "disk recovered (probe read succeeded)");
                let shard = self.config.name.clone();
                self.emit(Event::DiskRecovered { shard });
            }
            Err(_) => self.next_probe = self.clock.now() + self.config.probe_interval,
        }
    }

    /// Queues an event until the next submit (at most `EVENTS_PENDING_MAX` wait); a job's
    /// event goes to the job's reply.
    fn emit(&mut self, event: Event) {
        let reply = match &event {
            Event::Found { job, .. }
            | Event::PlotFailed { job, .. }
            | Event::JobDone { job, .. } => self.jobs.get(job).and_then(|s| s.job.reply.clone()),
            _ => None,
        };
        self.emit_to(reply, event);
    }

    /// Queues an event for `reply` (`None`: the shard's own output).
    fn emit_to(&mut self, reply: Option<Reply>, event: Event) {
        self.events_pending.push((reply, event));
        if self.events_pending.len() >= EVENTS_PENDING_MAX {
            self.flush_events();
        }
    }

    /// Sends the events queued since the last submit, in order. Called before every submit,
    /// since a submit may wait (and the pread backend reads inside it). Sent one by one as
    /// they arose, each event could wake a consumer that had just gone back to sleep: a futex
    /// wake-up per event, paid by the shard thread (about 5 % of a warm lookup's CPU in perf).
    /// Sent together, the consumer wakes once and finds the rest queued. A full channel blocks
    /// the shard (backpressure, counted), never drops an event.
    fn flush_events(&mut self) {
        for (reply, event) in self.events_pending.drain(..) {
            let sink = match (&reply, &self.events) {
                (Some(reply), _) | (None, Outbox::Sink(reply)) => {
                    if reply.0.deliver(event) {
                        self.snapshot.counters.results_backpressure += 1;
                    }
                    continue;
                }
                (None, Outbox::Channel(sink)) => sink,
            };
            match sink.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.snapshot.counters.results_backpressure += 1;
                    let _ = sink.send(event);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn publish(&mut self, force: bool) {
        let now = self.clock.now();
        if !force && now < self.next_publish {
            return;
        }
        self.snapshot.reads_in_flight = self.backend.in_flight() as u64;
        self.snapshot.plots_quarantined =
            self.plots.values().filter(|p| p.quarantined.is_some()).count() as u64;
        self.snapshot.plots_active = self.plots.len() as u64 - self.snapshot.plots_quarantined;
        self.snapshot.degraded = self.degraded;
        if self.metrics.try_publish(&self.snapshot) {
            self.next_publish = now + self.config.publish_interval;
        }
    }
}

/// Decoder errors that mean the plot's bytes are wrong (not "no proof").
/// Proof jobs have their own queue limit and go ahead of lookups.
fn is_proof(work: &Work) -> bool {
    matches!(work, Work::Proof { .. })
}

fn is_corruption(e: &PlotError) -> bool {
    !matches!(e, PlotError::NoProof { .. } | PlotError::UncompressedPark { .. })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events wait for the next submit, but never more than `EVENTS_PENDING_MAX` of them:
    /// the one that reaches the limit sends them all, in order.
    #[test]
    fn pending_events_are_sent_at_the_limit() {
        let (_commands, command_rx) = crossbeam_channel::bounded(1);
        let (event_tx, events) = crossbeam_channel::bounded(2 * EVENTS_PENDING_MAX);
        let backend = disk_io::pread::PreadBackend::new(1);
        let mut shard = Shard::new(
            ShardConfig::default(),
            backend,
            MonotonicClock::default(),
            command_rx,
            event_tx,
        );
        let done = |job| Event::JobDone { job, status: JobStatus::Complete };
        for job in 0..EVENTS_PENDING_MAX as u64 - 1 {
            shard.emit(done(job));
        }
        assert!(events.is_empty(), "held until the limit or a submit");
        shard.emit(done(EVENTS_PENDING_MAX as u64 - 1));
        shard.emit(done(EVENTS_PENDING_MAX as u64));
        let sent: Vec<u64> = events
            .try_iter()
            .map(|e| match e {
                Event::JobDone { job, .. } => job,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sent, (0..EVENTS_PENDING_MAX as u64).collect::<Vec<_>>());
        shard.flush_events();
        assert_eq!(events.len(), 1, "the one after the limit waited for the next flush");
    }

    #[test]
    fn block_ranges_cover_the_read_and_stop_at_the_file_end() {
        assert_eq!(block_range(0, 10, 1 << 20), (0, 4096));
        assert_eq!(block_range(4095, 2, 1 << 20), (0, 8192));
        assert_eq!(block_range(5000, 4096, 1 << 20), (4096, 12288));
        // Two different reads of one block get the same range: one read serves both.
        assert_eq!(block_range(100, 50, 1 << 20), block_range(3000, 1000, 1 << 20));
        // Clipped at the end of the file, never below the read itself.
        assert_eq!(block_range(9000, 100, 9500), (8192, 9500));
        assert_eq!(block_range(9000, 100, 9050), (8192, 9100));
        assert_eq!(block_range(u64::MAX - 10, 5, u64::MAX), (u64::MAX / 4096 * 4096, u64::MAX));
    }
}
