//! The daemon's side of the engine: one shard per disk, the registry of served plots, and the
//! dispatcher thread that routes every shard event to the connection that asked for it.
//!
//! Connections never wait on a disk: they send jobs (`try_send`, never blocking) and get
//! [`EngineEvent`]s on their own bounded channel. The registry is an immutable snapshot swapped
//! by the refresh thread; readers hold its lock only to clone an `Arc`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use disk_io::pread::PreadBackend;
use disk_io::uring::UringBackend;
use disk_io::DirectIo;
use plot_format::{Found, Mode};
use shard::{
    Clock, Command, Event, Job, JobId, JobStatus, MetricsHandle, MonotonicClock, PlotKey, Shard,
    ShardConfig, Snapshot, Work,
};
use tokio::sync::mpsc;

use crate::config::{seconds, BackendKind, EngineConfig, LookupMode};
use crate::plots::{Added, PlotInfo};

/// Shard command queue length (jobs and plot changes waiting for the shard thread).
const SHARD_COMMANDS_MAX: usize = 4096;
/// Shard event queue length (results waiting for the dispatcher).
const SHARD_EVENTS_MAX: usize = 65536;
/// Shards served at most (disks x `shards_per_disk`).
pub const DISKS_MAX: usize = 1024;

/// What a connection hears back about one of its jobs. `tag` is the connection's own name for
/// the job.
#[derive(Debug)]
pub enum EngineEvent {
    Found {
        tag: u64,
        plot: PlotKey,
        found: Vec<Found>,
    },
    Failed {
        tag: u64,
        plot: PlotKey,
        error: String,
    },
    /// The last event of the job; `disk` names the shard that ran it.
    Done {
        tag: u64,
        disk: String,
        status: JobStatus,
    },
}

pub type EventSink = mpsc::Sender<EngineEvent>;

/// A plot and the challenge to look up in it.
pub type PlotChallenge = (PlotKey, [u8; 32]);

/// The served plots, immutable; replaced as a whole on every change.
#[derive(Debug, Default)]
pub struct Registry {
    /// Bumped on every change, so connections can cache their selection.
    pub generation: u64,
    pub plots: HashMap<PlotKey, Arc<PlotInfo>>,
    /// Plots of each shard (a disk, or a part of one: see [`Engine::shard_name`]).
    pub by_disk: BTreeMap<String, Vec<PlotKey>>,
}

struct Route {
    sink: EventSink,
    tag: u64,
}

struct ShardEntry {
    commands: Sender<Command>,
    metrics: MetricsHandle,
}

enum Control {
    NewShard(String, Receiver<Event>),
}

/// Runtime quarantines reported by shards, for the plot manager.
pub type Quarantined = (PlotKey, String);

pub struct Engine {
    config: EngineConfig,
    clock: MonotonicClock,
    registry: Arc<Mutex<Arc<Registry>>>,
    shards: Mutex<BTreeMap<String, ShardEntry>>,
    routes: Arc<Mutex<HashMap<JobId, Route>>>,
    next_job: AtomicU64,
    control: Sender<Control>,
    degraded: Arc<Mutex<HashSet<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Starts the dispatcher thread. Runtime quarantines go to `quarantined`.
    pub fn start(
        config: EngineConfig,
        quarantined: Sender<Quarantined>,
    ) -> std::io::Result<Arc<Engine>> {
        let (control_tx, control_rx) = crossbeam_channel::bounded(DISKS_MAX);
        let routes: Arc<Mutex<HashMap<JobId, Route>>> = Arc::default();
        let degraded: Arc<Mutex<HashSet<String>>> = Arc::default();
        let registry: Arc<Mutex<Arc<Registry>>> = Arc::default();
        let names = registry.clone();
        let engine = Arc::new(Engine {
            config,
            clock: MonotonicClock::default(),
            registry,
            shards: Mutex::new(BTreeMap::new()),
            routes: routes.clone(),
            next_job: AtomicU64::new(1),
            control: control_tx,
            degraded: degraded.clone(),
        });
        std::thread::Builder::new().name("dispatcher".into()).spawn(move || {
            dispatch(control_rx, routes, degraded, quarantined, names);
        })?;
        Ok(engine)
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
                if let Some(s) = lock(&self.shards).get(&self.shard_name(&info)) {
                    let _ = s.commands.send(Command::RemovePlot { key: *key });
                }
            }
        }
        for Added { info, plot } in added {
            let commands = match self.shard_for(&self.shard_name(&info), &info.path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(disk = %info.disk, plot = %info.path.display(),
                        "cannot start the shard of this disk: {e}; plot not served");
                    continue;
                }
            };
            let command = Command::AddPlot { key: info.key, path: info.path.clone(), plot };
            // The refresh thread may wait here: the shard takes commands every tick.
            if commands.send(command).is_err() {
                tracing::error!(disk = %info.disk, plot = %info.path.display(),
                    "shard thread is gone; plot not served");
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
                match Shard::spawn(
                    config.clone(),
                    move || UringBackend::new(depth),
                    self.clock,
                    SHARD_COMMANDS_MAX,
                    SHARD_EVENTS_MAX,
                ) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(disk, "io_uring unavailable ({e}); using pread threads");
                        Shard::spawn(
                            config,
                            move || Ok(PreadBackend::new(depth)),
                            self.clock,
                            SHARD_COMMANDS_MAX,
                            SHARD_EVENTS_MAX,
                        )?
                    }
                }
            }
            BackendKind::Pread => Shard::spawn(
                config,
                move || Ok(PreadBackend::new(depth)),
                self.clock,
                SHARD_COMMANDS_MAX,
                SHARD_EVENTS_MAX,
            )?,
        };
        tracing::info!(disk, reads_in_flight_max = depth, "shard started");
        self.control
            .send(Control::NewShard(disk.to_string(), handle.events.clone()))
            .map_err(|_| std::io::Error::other("dispatcher is gone"))?;
        let commands = handle.commands.clone();
        shards.insert(
            disk.to_string(),
            ShardEntry { commands: handle.commands, metrics: handle.metrics },
        );
        // The thread runs until its command channel closes; it is not joined.
        drop(handle.thread);
        Ok(commands)
    }

    /// Sends one job to `disk`'s shard; its events go to `sink` under `tag`. Never blocks: a
    /// full shard queue answers the job as rejected at once.
    fn submit(&self, disk: &str, work: Work, deadline: Duration, sink: &EventSink, tag: u64) {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let commands = lock(&self.shards).get(disk).map(|s| s.commands.clone());
        let Some(commands) = commands else {
            let _ = sink.try_send(EngineEvent::Done {
                tag,
                disk: disk.to_string(),
                status: JobStatus::Rejected { reason: "no shard for this disk" },
            });
            return;
        };
        lock(&self.routes).insert(id, Route { sink: sink.clone(), tag });
        let job = Job { id, work, deadline: self.clock.now() + deadline };
        let reason = match commands.try_send(Command::Job(job)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the disk's command queue is full",
            Err(TrySendError::Disconnected(_)) => "the disk's shard has stopped",
        };
        lock(&self.routes).remove(&id);
        let _ = sink.try_send(EngineEvent::Done {
            tag,
            disk: disk.to_string(),
            status: JobStatus::Rejected { reason },
        });
    }

    /// Looks `challenge` up in `plots` (grouped by disk): one job per disk, so each disk's
    /// answers arrive as soon as that disk has them. Returns the number of jobs started (each
    /// ends with one `Done`).
    pub fn qualities(
        &self,
        challenge: [u8; 32],
        plots: &[(String, Vec<PlotKey>)],
        sink: &EventSink,
        tag: u64,
    ) -> usize {
        let deadline = seconds(self.config.lookup_deadline_seconds);
        let mut jobs = 0;
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
            self.submit(disk, work, deadline, sink, tag);
            jobs += 1;
        }
        jobs
    }

    /// Looks up a challenge of its own in each plot (grouped by shard): one job per shard, so
    /// each disk's answers arrive as soon as that disk has them. Returns the number of jobs
    /// started (each ends with one `Done`).
    pub fn qualities_each(
        &self,
        items: &[(String, Vec<PlotChallenge>)],
        sink: &EventSink,
        tag: u64,
    ) -> usize {
        let deadline = seconds(self.config.lookup_deadline_seconds);
        let mut jobs = 0;
        for (disk, items) in items {
            if items.is_empty() {
                continue;
            }
            let work =
                Work::QualitiesEach { items: items.clone(), mode: self.mode(), proofs: false };
            self.submit(disk, work, deadline, sink, tag);
            jobs += 1;
        }
        jobs
    }

    /// Fetches the full proof of entry `index` of `challenge` in the plot `info`.
    pub fn proof(
        &self,
        info: &PlotInfo,
        challenge: [u8; 32],
        index: u32,
        sink: &EventSink,
        tag: u64,
    ) {
        let work = Work::Proof { plot: info.key, challenge, index, mode: self.mode() };
        let deadline = seconds(self.config.proof_deadline_seconds);
        self.submit(&self.shard_name(info), work, deadline, sink, tag);
    }

    /// Stops every shard (their threads end once their queued jobs are answered).
    pub fn shutdown(&self) {
        lock(&self.shards).clear();
    }
}

/// The dispatcher: waits on every shard's event queue at once and forwards each event to the
/// connection that owns the job. A full connection queue makes it wait (backpressure reaches
/// the shards, which count it); a closed connection's events are dropped with the connection.
fn dispatch(
    control: Receiver<Control>,
    routes: Arc<Mutex<HashMap<JobId, Route>>>,
    degraded: Arc<Mutex<HashSet<String>>>,
    quarantined: Sender<Quarantined>,
    registry: Arc<Mutex<Arc<Registry>>>,
) {
    let mut shards: Vec<(String, Receiver<Event>)> = Vec::new();
    loop {
        let mut select = Select::new();
        select.recv(&control);
        for (_, rx) in &shards {
            select.recv(rx);
        }
        let op = select.select();
        let index = op.index();
        if index == 0 {
            match op.recv(&control) {
                Ok(Control::NewShard(name, rx)) => shards.push((name, rx)),
                // The engine is gone: finish when the shards are.
                Err(_) if shards.is_empty() => return,
                Err(_) => {}
            }
            continue;
        }
        let (name, rx) = &shards[index - 1];
        let event = match op.recv(rx) {
            Ok(e) => e,
            Err(_) => {
                tracing::info!(disk = %name, "shard stopped");
                shards.remove(index - 1);
                if shards.is_empty() && control.is_empty() {
                    // Only the control channel is left; keep serving new shards.
                }
                continue;
            }
        };
        let name = name.clone();
        forward(event, &name, &routes, &degraded, &quarantined, &registry);
    }
}

fn forward(
    event: Event,
    disk: &str,
    routes: &Mutex<HashMap<JobId, Route>>,
    degraded: &Mutex<HashSet<String>>,
    quarantined: &Sender<Quarantined>,
    registry: &Mutex<Arc<Registry>>,
) {
    let (job, event) = match event {
        Event::Found { job, plot, found } => (job, Some((plot, Ok(found)))),
        Event::PlotFailed { job, plot, error } => (job, Some((plot, Err(error.to_string())))),
        Event::JobDone { job, status } => {
            let route = lock(routes).remove(&job);
            if let Some(r) = route {
                let done = EngineEvent::Done { tag: r.tag, disk: disk.to_string(), status };
                let _ = r.sink.blocking_send(done);
            }
            return;
        }
        Event::PlotQuarantined { plot, reason } => {
            let path = lock(registry)
                .plots
                .get(&plot)
                .map(|i| i.path.display().to_string())
                .unwrap_or_else(|| format!("#{}", plot.0));
            tracing::warn!(disk, plot = %path, "plot quarantined by the engine: {reason}");
            if quarantined.try_send((plot, reason)).is_err() {
                tracing::warn!(disk, plot = %path, "quarantine queue full; the next refresh retries it");
            }
            return;
        }
        Event::DiskDegraded { shard } => {
            tracing::warn!(disk = %shard, "disk degraded: a read is stuck; new work held back until a probe read succeeds");
            lock(degraded).insert(shard);
            return;
        }
        Event::DiskRecovered { shard } => {
            tracing::info!(disk = %shard, "disk recovered");
            lock(degraded).remove(&shard);
            return;
        }
    };
    let Some((plot, result)) = event else { return };
    let route = lock(routes).get(&job).map(|r| (r.sink.clone(), r.tag));
    if let Some((sink, tag)) = route {
        let e = match result {
            Ok(found) => EngineEvent::Found { tag, plot, found },
            Err(error) => EngineEvent::Failed { tag, plot, error },
        };
        let _ = sink.blocking_send(e);
    }
}

/// Current monotonic time of the engine's clock (for tests and logs).
pub fn now(engine: &Engine) -> Duration {
    engine.clock.now()
}
