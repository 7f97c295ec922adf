//! The daemon's side of the engine: one shard per disk and the registry of served plots.
//!
//! Connections never wait on a disk: they send jobs (`try_send`, never blocking), and each job
//! carries its reply sink, so the shard thread delivers the job's events straight to the
//! connection's bounded queue, already joined with the plot's [`PlotInfo`] from the registry
//! snapshot the job was made from. A job the engine cannot queue is refused at once, to the
//! caller, by return value: the caller counts only jobs that were accepted, each of which ends
//! with exactly one `Done`. Events that belong to no job (a plot quarantined, a disk degraded
//! or recovered) go to the engine's status sink, on the shard's thread: the quarantine goes to
//! its one owner, the plot manager's refresh thread. The registry is an immutable snapshot
//! swapped by the refresh thread; readers hold its lock only to clone an `Arc`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use disk_io::pread::PreadBackend;
use disk_io::uring::UringBackend;
use disk_io::DirectIo;
use plot_format::{Found, Mode};
use shard::{
    Clock, Command, Event, Job, JobStatus, MetricsHandle, MonotonicClock, PlotKey, Reply,
    ReplySink, Shard, ShardConfig, ShardError, Snapshot, Work,
};
use tokio::sync::mpsc;

use crate::config::{seconds, BackendKind, EngineConfig, LookupMode};
use crate::limits::DISKS_MAX;
use crate::plots::{Added, PlotInfo};

/// Shard command queue length (jobs and plot changes waiting for the shard thread).
const SHARD_COMMANDS_MAX: usize = 4096;

/// What a connection hears back about one of its jobs. `tag` is the connection's own name for
/// the job; `info` is the plot as the registry snapshot of the job knew it.
#[derive(Debug)]
pub enum EngineEvent {
    Found {
        tag: u64,
        info: Arc<PlotInfo>,
        found: Vec<Found>,
    },
    Failed {
        tag: u64,
        info: Arc<PlotInfo>,
        error: ShardError,
    },
    /// The last event of the job; `disk` names the shard that ran it.
    Done {
        tag: u64,
        disk: Arc<str>,
        status: JobStatus,
    },
}

pub type EventSink = mpsc::Sender<EngineEvent>;

/// A plot and the challenge to look up in it.
pub type PlotChallenge = (PlotKey, [u8; 32]);

/// Why the engine refused a job (nothing was queued; no event will come).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no shard serves this disk")]
    NoShard,
    #[error("the disk's command queue is full")]
    QueueFull,
    #[error("the disk's shard has stopped")]
    Stopped,
}

/// The served plots, immutable; replaced as a whole on every change.
#[derive(Debug, Default)]
pub struct Registry {
    /// Bumped on every change, so connections can cache their selection.
    pub generation: u64,
    pub plots: HashMap<PlotKey, Arc<PlotInfo>>,
    /// Plots of each shard (a disk, or a part of one: see [`Engine::shard_name`]).
    pub by_disk: BTreeMap<String, Vec<PlotKey>>,
}

struct ShardEntry {
    commands: Sender<Command>,
    metrics: MetricsHandle,
}

/// Plot changes for shards whose command queue was full (a shard stuck in a read with the
/// pread backend takes no commands): kept in order per shard and sent when there is room, so
/// the refresh thread never waits on one disk.
#[derive(Default)]
struct Backlog {
    by_shard: BTreeMap<String, std::collections::VecDeque<Command>>,
}

/// Plot changes waiting for room, across every shard, at most.
pub const PLOT_COMMANDS_WAITING_MAX: usize = 1_000_000;

impl Backlog {
    /// Sends `command` unless the shard has commands waiting or no room; then it waits here.
    /// False when the shard is gone or the backlog is full (the command is dropped).
    fn send_or_queue(&mut self, shard: &str, commands: &Sender<Command>, command: Command) -> bool {
        let waiting = self.by_shard.get(shard).is_some_and(|q| !q.is_empty());
        let command = if waiting {
            command
        } else {
            match commands.try_send(command) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(c)) => c,
            }
        };
        if self.len() >= PLOT_COMMANDS_WAITING_MAX {
            return false;
        }
        self.by_shard.entry(shard.to_string()).or_default().push_back(command);
        true
    }

    /// Sends what the shards have room for, in order; returns the commands still waiting.
    fn flush(&mut self, senders: &BTreeMap<String, ShardEntry>) -> usize {
        for (shard, queue) in &mut self.by_shard {
            let Some(entry) = senders.get(shard) else {
                queue.clear();
                continue;
            };
            while let Some(command) = queue.pop_front() {
                match entry.commands.try_send(command) {
                    Ok(()) => {}
                    Err(TrySendError::Full(c)) => {
                        queue.push_front(c);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => queue.clear(),
                }
            }
        }
        self.by_shard.retain(|_, q| !q.is_empty());
        self.len()
    }

    fn len(&self) -> usize {
        self.by_shard.values().map(|q| q.len()).sum()
    }
}

/// Runtime quarantines reported by shards, for the plot manager.
pub type Quarantined = (PlotKey, String);

pub struct Engine {
    config: EngineConfig,
    clock: MonotonicClock,
    registry: Arc<Mutex<Arc<Registry>>>,
    shards: Mutex<BTreeMap<String, ShardEntry>>,
    next_job: AtomicU64,
    backlog: Mutex<Backlog>,
    status: Reply,
    degraded: Arc<Mutex<HashSet<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job's reply: the shard's events for it, joined with the plots of the registry snapshot
/// the job was made from, into the connection's queue. Runs on the shard's thread, where a
/// full queue blocks the shard (backpressure) and loses nothing; a closed connection drops
/// them.
struct JobReply {
    sink: EventSink,
    tag: u64,
    disk: Arc<str>,
    registry: Arc<Registry>,
}

impl ReplySink for JobReply {
    fn deliver(&self, event: Event) -> bool {
        let tag = self.tag;
        let event = match event {
            Event::Found { plot, found, .. } => match self.registry.plots.get(&plot) {
                Some(info) => EngineEvent::Found { tag, info: info.clone(), found },
                None => return false,
            },
            Event::PlotFailed { plot, error, .. } => match self.registry.plots.get(&plot) {
                Some(info) => EngineEvent::Failed { tag, info: info.clone(), error },
                None => return false,
            },
            Event::JobDone { status, .. } => {
                EngineEvent::Done { tag, disk: self.disk.clone(), status }
            }
            // Not a job's event.
            _ => return false,
        };
        match self.sink.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(event)) => {
                // The shard's thread is not inside the runtime: blocking here is allowed.
                let _ = self.sink.blocking_send(event);
                true
            }
        }
    }
}

/// The events that belong to no job, on the shard's thread.
struct StatusSink {
    degraded: Arc<Mutex<HashSet<String>>>,
    quarantined: Sender<Quarantined>,
}

impl ReplySink for StatusSink {
    fn deliver(&self, event: Event) -> bool {
        match event {
            Event::PlotQuarantined { plot, path, reason } => {
                tracing::warn!(plot = %path.display(), "plot quarantined by the engine: {reason}");
                if self.quarantined.try_send((plot, reason)).is_err() {
                    tracing::warn!(plot = %path.display(),
                        "quarantine queue full; the next refresh retries it");
                }
            }
            Event::DiskDegraded { shard } => {
                tracing::warn!(disk = %shard, "disk degraded: a read is stuck; new work held back until a probe read succeeds");
                lock(&self.degraded).insert(shard);
            }
            Event::DiskRecovered { shard } => {
                tracing::info!(disk = %shard, "disk recovered");
                lock(&self.degraded).remove(&shard);
            }
            // Every job carries its reply; nothing else comes here.
            _ => {}
        }
        false
    }
}

impl Engine {
    /// The engine (no shard yet: each starts with its disk's first plot). Runtime quarantines
    /// go to `quarantined`.
    pub fn start(
        config: EngineConfig,
        quarantined: Sender<Quarantined>,
    ) -> std::io::Result<Arc<Engine>> {
        let degraded: Arc<Mutex<HashSet<String>>> = Arc::default();
        let status = Reply::new(StatusSink { degraded: degraded.clone(), quarantined });
        Ok(Arc::new(Engine {
            config,
            clock: MonotonicClock::default(),
            registry: Arc::default(),
            shards: Mutex::new(BTreeMap::new()),
            next_job: AtomicU64::new(1),
            backlog: Mutex::new(Backlog::default()),
            status,
            degraded,
        }))
    }

    pub fn registry(&self) -> Arc<Registry> {
        lock(&self.registry).clone()
    }

    pub fn mode(&self) -> Mode {
        match self.config.mode {
            LookupMode::Complete => Mode::Complete,
            LookupMode::Chiapos => Mode::Chiapos,
        }
    }

    /// Latest metrics of every shard, by disk.
    pub fn shard_snapshots(&self) -> Vec<(String, Snapshot)> {
        lock(&self.shards).iter().map(|(name, s)| (name.clone(), s.metrics.snapshot())).collect()
    }

    pub fn degraded_disks(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.degraded).iter().cloned().collect();
        v.sort();
        v
    }

    /// Applies a plot refresh: new plots to their shards (a shard is started for a new disk),
    /// removed plots out of them, then publishes the new registry.
    pub fn apply(&self, added: Vec<Added>, removed: &[PlotKey]) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let old = self.registry();
        let mut plots = old.plots.clone();
        for key in removed {
            if let Some(info) = plots.remove(key) {
                let name = self.shard_name(&info);
                if let Some(s) = lock(&self.shards).get(&name) {
                    let command = Command::RemovePlot { key: *key };
                    lock(&self.backlog).send_or_queue(&name, &s.commands, command);
                }
            }
        }
        for Added { info, plot } in added {
            let name = self.shard_name(&info);
            let commands = match self.shard_for(&name, &info.path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(disk = %info.disk, plot = %info.path.display(),
                        "cannot start the shard of this disk: {e}; plot not served");
                    continue;
                }
            };
            let command = Command::AddPlot { key: info.key, path: info.path.clone(), plot };
            // Never waits: a shard with no room gets the plot when it has (`flush_backlog`);
            // lookups meanwhile answer "unknown plot" for it, as for a plot being opened.
            if !lock(&self.backlog).send_or_queue(&name, &commands, command) {
                tracing::error!(disk = %info.disk, plot = %info.path.display(),
                    "the disk's shard is gone or too far behind; plot not served");
                continue;
            }
            plots.insert(info.key, info);
        }
        let mut by_disk: BTreeMap<String, Vec<PlotKey>> = BTreeMap::new();
        for (key, info) in &plots {
            by_disk.entry(self.shard_name(info)).or_default().push(*key);
        }
        for keys in by_disk.values_mut() {
            keys.sort();
        }
        let next = Registry { generation: old.generation + 1, plots, by_disk };
        *lock(&self.registry) = Arc::new(next);
    }

    /// Sends the plot changes that waited for room; returns how many still wait (the refresh
    /// thread calls it again soon while any do).
    pub fn flush_backlog(&self) -> usize {
        let shards = lock(&self.shards);
        lock(&self.backlog).flush(&shards)
    }

    /// The shard that serves a plot: its disk, or with `shards_per_disk` S > 1 one of the S
    /// shards of its disk, named `disk#i` (plots spread by key).
    pub fn shard_name(&self, info: &PlotInfo) -> String {
        let parts = self.config.shards_per_disk.max(1) as u64;
        if parts == 1 {
            info.disk.clone()
        } else {
            format!("{}#{}", info.disk, info.key.0 % parts)
        }
    }

    fn shard_for(&self, disk: &str, example: &Path) -> std::io::Result<Sender<Command>> {
        let mut shards = lock(&self.shards);
        if let Some(s) = shards.get(disk) {
            return Ok(s.commands.clone());
        }
        if shards.len() >= DISKS_MAX {
            return Err(std::io::Error::other(format!(
                "more than {DISKS_MAX} shards (disks x engine.shards_per_disk)"
            )));
        }
        let device_depth = disk_io::device::disk_of(example)
            .map(|d| d.queue_depth_max as usize)
            .unwrap_or(self.config.reads_in_flight_max);
        // The disk's shards share its queue.
        let depth = self
            .config
            .reads_in_flight_max
            .min(device_depth.max(1))
            .div_ceil(self.config.shards_per_disk.max(1))
            .max(1);
        let c = &self.config;
        let config = ShardConfig {
            name: disk.to_string(),
            lookups_active_max: c.lookups_active_max,
            jobs_queued_max: c.jobs_queued_max,
            proof_jobs_queued_max: c.proof_jobs_queued_max,
            plot_errors_max: c.plot_errors_max,
            read_stuck_after: seconds(c.read_stuck_after_seconds),
            direct_io: if c.direct_io { DirectIo::Prefer } else { DirectIo::Off },
            ..ShardConfig::default()
        };
        let handle = match c.backend {
            BackendKind::Uring => {
                match Shard::spawn_to(
                    config.clone(),
                    move || UringBackend::new(depth),
                    self.clock,
                    SHARD_COMMANDS_MAX,
                    self.status.clone(),
                ) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(disk, "io_uring unavailable ({e}); using pread threads");
                        Shard::spawn_to(
                            config,
                            move || Ok(PreadBackend::new(depth)),
                            self.clock,
                            SHARD_COMMANDS_MAX,
                            self.status.clone(),
                        )?
                    }
                }
            }
            BackendKind::Pread => Shard::spawn_to(
                config,
                move || Ok(PreadBackend::new(depth)),
                self.clock,
                SHARD_COMMANDS_MAX,
                self.status.clone(),
            )?,
        };
        tracing::info!(disk, reads_in_flight_max = depth, "shard started");
        let commands = handle.commands.clone();
        shards.insert(
            disk.to_string(),
            ShardEntry { commands: handle.commands, metrics: handle.metrics },
        );
        // The thread runs until its command channel closes; it is not joined.
        drop(handle.thread);
        Ok(commands)
    }

    /// Sends one job to `disk`'s shard; its events go to `sink` under `tag`, joined with the
    /// plots of `registry`. Never blocks: a job that cannot be queued is refused here, and
    /// then no event comes for it.
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        disk: &str,
        work: Work,
        deadline: Duration,
        registry: &Arc<Registry>,
        sink: &EventSink,
        tag: u64,
    ) -> Result<(), Refused> {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let commands = lock(&self.shards).get(disk).map(|s| s.commands.clone());
        let commands = commands.ok_or(Refused::NoShard)?;
        let reply = Reply::new(JobReply {
            sink: sink.clone(),
            tag,
            disk: Arc::from(disk),
            registry: registry.clone(),
        });
        let job = Job { id, work, deadline: self.clock.now() + deadline, reply: Some(reply) };
        commands.try_send(Command::Job(job)).map_err(|e| match e {
            TrySendError::Full(_) => Refused::QueueFull,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }

    /// Looks `challenge` up in `plots` (grouped by disk; keys of `registry`): one job per
    /// disk, so each disk's answers arrive as soon as that disk has them. Returns the number
    /// of jobs accepted (each ends with one `Done`) and the disks that refused theirs.
    pub fn qualities(
        &self,
        challenge: [u8; 32],
        plots: &[(String, Vec<PlotKey>)],
        registry: &Arc<Registry>,
        sink: &EventSink,
        tag: u64,
    ) -> (usize, Vec<(String, Refused)>) {
        let deadline = seconds(self.config.lookup_deadline_seconds);
        let mut jobs = 0;
        let mut refused = Vec::new();
        for (disk, keys) in plots {
            if keys.is_empty() {
                continue;
            }
            let work = Work::Qualities {
                challenge,
                plots: Some(keys.clone()),
                mode: self.mode(),
                proofs: false,
            };
            match self.submit(disk, work, deadline, registry, sink, tag) {
                Ok(()) => jobs += 1,
                Err(r) => refused.push((disk.clone(), r)),
            }
        }
        (jobs, refused)
    }

    /// Looks up a challenge of its own in each plot (grouped by shard; keys of `registry`):
    /// one job per shard, so each disk's answers arrive as soon as that disk has them. Returns
    /// the number of jobs accepted (each ends with one `Done`) and the disks that refused
    /// theirs.
    pub fn qualities_each(
        &self,
        items: &[(String, Vec<PlotChallenge>)],
        registry: &Arc<Registry>,
        sink: &EventSink,
        tag: u64,
    ) -> (usize, Vec<(String, Refused)>) {
        let deadline = seconds(self.config.lookup_deadline_seconds);
        let mut jobs = 0;
        let mut refused = Vec::new();
        for (disk, items) in items {
            if items.is_empty() {
                continue;
            }
            let work =
                Work::QualitiesEach { items: items.clone(), mode: self.mode(), proofs: false };
            match self.submit(disk, work, deadline, registry, sink, tag) {
                Ok(()) => jobs += 1,
                Err(r) => refused.push((disk.clone(), r)),
            }
        }
        (jobs, refused)
    }

    /// Fetches the full proof of entry `index` of `challenge` in the plot `info`.
    /// Refused: no event will come; the caller answers at once.
    pub fn proof(
        &self,
        info: &Arc<PlotInfo>,
        challenge: [u8; 32],
        index: u32,
        sink: &EventSink,
        tag: u64,
    ) -> Result<(), Refused> {
        let work = Work::Proof { plot: info.key, challenge, index, mode: self.mode() };
        let deadline = seconds(self.config.proof_deadline_seconds);
        // The job's own registry: this one plot.
        let registry = Arc::new(Registry {
            generation: 0,
            plots: HashMap::from([(info.key, info.clone())]),
            by_disk: BTreeMap::new(),
        });
        self.submit(&self.shard_name(info), work, deadline, &registry, sink, tag)
    }

    /// Stops every shard (their threads end once their queued jobs are answered).
    pub fn shutdown(&self) {
        lock(&self.shards).clear();
    }
}

/// Current monotonic time of the engine's clock (for tests and logs).
pub fn now(engine: &Engine) -> Duration {
    engine.clock.now()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard that takes no commands never holds up the refresh: its plot changes wait in
    /// order and go when it has room; other shards are not held back.
    #[test]
    fn plot_changes_for_a_full_shard_wait_without_blocking() {
        let (stuck_tx, stuck_rx) = crossbeam_channel::bounded(1);
        let (fine_tx, fine_rx) = crossbeam_channel::bounded(16);
        let mut shards = BTreeMap::new();
        for (name, tx) in [("stuck", stuck_tx.clone()), ("fine", fine_tx.clone())] {
            shards.insert(
                name.to_string(),
                ShardEntry { commands: tx, metrics: MetricsHandle::default() },
            );
        }
        let mut backlog = Backlog::default();
        for key in 0..5 {
            assert!(backlog.send_or_queue(
                "stuck",
                &stuck_tx,
                Command::RemovePlot { key: PlotKey(key) }
            ));
            assert!(backlog.send_or_queue(
                "fine",
                &fine_tx,
                Command::RemovePlot { key: PlotKey(key) }
            ));
        }
        assert_eq!(fine_rx.len(), 5, "a shard with room gets its commands at once");
        assert_eq!(backlog.len(), 4, "the stuck shard's queue holds 1, 4 wait");
        assert_eq!(backlog.flush(&shards), 4, "no room yet");
        let keys = |rx: &crossbeam_channel::Receiver<Command>| -> Vec<u64> {
            rx.try_iter()
                .map(|c| match c {
                    Command::RemovePlot { key } => key.0,
                    _ => u64::MAX,
                })
                .collect()
        };
        let mut got = keys(&stuck_rx);
        while backlog.flush(&shards) > 0 {
            got.extend(keys(&stuck_rx));
        }
        got.extend(keys(&stuck_rx));
        assert_eq!(got, [0, 1, 2, 3, 4], "in order, none lost");
    }

    /// A job the engine cannot queue is refused to the caller by return value, and no event
    /// comes for it: nothing counted can wait for a `Done` that was dropped.
    #[test]
    fn a_refused_job_is_returned_not_sent() {
        let (quarantine, _q) = crossbeam_channel::bounded(1);
        let engine = Engine::start(EngineConfig::default(), quarantine).expect("engine");
        // A sink with no room at all: an event sent to it could only be dropped.
        let (sink, mut events) = mpsc::channel(1);
        sink.try_send(EngineEvent::Done {
            tag: 0,
            disk: Arc::from("x"),
            status: JobStatus::Complete,
        })
        .expect("fill the sink");
        let registry = engine.registry();
        let plots = vec![("nvme9n1".to_string(), vec![PlotKey(1)])];
        let (jobs, refused) = engine.qualities([7; 32], &plots, &registry, &sink, 1);
        assert_eq!(jobs, 0);
        assert_eq!(refused, [("nvme9n1".to_string(), Refused::NoShard)]);
        let items = vec![("nvme9n1".to_string(), vec![(PlotKey(1), [7; 32])])];
        let (jobs, refused) = engine.qualities_each(&items, &registry, &sink, 2);
        assert_eq!((jobs, refused.len()), (0, 1));
        assert!(matches!(events.try_recv(), Ok(EngineEvent::Done { tag: 0, .. })));
        assert!(events.try_recv().is_err(), "nothing was sent for the refused jobs");
    }
}
