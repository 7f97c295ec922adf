//! Storage faults made by the real kernel (root only):
//!
//! - `loop_4k_sectors_direct_io_equals_the_decoder`: a loop device with 4096-byte logical
//!   sectors (a "4Kn" disk) carrying ext4 and two fixture plots. The engine's answers through
//!   `UringBackend` with `DirectIo::Prefer` equal the plain decoder's, every file was read with
//!   O_DIRECT (no fallback, the fd has O_DIRECT) at 4096-byte alignment, and the disk really
//!   refuses 512-byte direct reads (so a misaligned engine would have failed).
//! - `stuck_disk_times_out_degrades_and_spares_the_healthy_disk`: two loop disks, one throttled
//!   to HDD speed (blk-throttle, 150 read IOPS), one stuck (1 byte/s: reads never finish). Each
//!   shard thread moves itself into the throttling cgroup from inside `make_backend`. The stuck
//!   shard's jobs time out at their deadline, the disk is reported degraded, new jobs are
//!   rejected, the healthy shard's latency is unchanged; lifting the throttle heals the disk
//!   after the probe read, and it answers correctly again.
//!
//! Throttling uses the cgroup-v1 `blkio` controller (`blkio.throttle.read_*_device`, one thread
//! moved through `tasks`); when only cgroup v2 offers an `io` controller it uses `io.max`
//! (`riops=`, `rbps=`) with the same meaning, but cgroup v2 cannot hold one thread of a process in
//! a cgroup with the `io` controller, so there the whole test process is moved (`cgroup.procs`,
//! moved back afterwards); the rules only name the two loop devices, which only the shards read.
//!
//! A test whose facility is missing (not root, no loop devices, no `losetup --sector-size`, no
//! ext4, no io_uring, no blk-throttle) prints `SKIPPED kernel_faults::<test>: <reason>` straight
//! to stderr (visible without `--nocapture`) and returns; with `HARVESTER_REQUIRE_FACILITIES=1`
//! (CI) it fails instead.
//!
//! Everything made here carries the prefix `shard-kfault`: images and mount points under
//! `<workspace>/target/kernel-faults/`, loop devices backed by those images, and cgroups named
//! `shard-kfault-*`. A guard (`test_support::loopdisk::Lab`, shared with disk-io's stuck-disk
//! test) removes its own in `Drop`, also when the test panics; the
//! first test of a run removes whatever a crashed earlier run left (by that prefix). The tests
//! of this file run one at a time (a lock), so they do not remove each other's devices; two
//! runs of this file at once on one machine are not supported.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use disk_io::uring::UringBackend;
use disk_io::{Backend, Buffer, Completion, DirectIo, FileId, Full, OpenedFile, ReadOp};
use plot_format::{Found, Goal, Mode, Plot};
use shard::{
    Clock, Command, Event, Job, JobStatus, MonotonicClock, PlotKey, Shard, ShardConfig,
    ShardHandle, Snapshot, Work,
};
use test_support::loopdisk::{self, sh, CgVersion, Joiner, Lab, LoopDisk, Rule};

/// Prefix of every image, mount point and cgroup made here (stale ones are found by it).
const PREFIX: &str = "shard-kfault";
/// Size of each loop disk's image (sparse).
const IMAGE_BYTES: u64 = 64 << 20;
/// Logical block size of the loop disks: a 4Kn disk.
const SECTOR_BYTES: u32 = 4096;
/// Read IOPS of the "HDD" disk.
const HDD_READ_IOPS: u64 = 150;
/// Reads in flight per shard.
const READS_IN_FLIGHT_MAX: usize = 64;
/// How late after its deadline a timed-out job or the degraded event may arrive.
const DEADLINE_TOLERANCE: Duration = Duration::from_millis(300);

/// `O_DIRECT` as `/proc/<pid>/fdinfo` shows it (octal `flags:`), where known.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "loongarch64"
))]
const O_DIRECT_FLAG: Option<u32> = Some(0o40000);
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const O_DIRECT_FLAG: Option<u32> = Some(0o200000);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "loongarch64",
    target_arch = "aarch64",
    target_arch = "arm"
)))]
const O_DIRECT_FLAG: Option<u32> = None;

// ---------------------------------------------------------------------------------------------
// Skipping, serialising, the lab
// ---------------------------------------------------------------------------------------------

/// Reports a skipped test (stderr, past the harness's capture, and the skip log), or fails
/// under `HARVESTER_REQUIRE_FACILITIES=1` (CI): `test_support::facility_missing`.
fn skip(test: &str, why: &str) {
    test_support::facility_missing(&format!("kernel_faults::{test}"), why);
}

static SERIAL: Mutex<()> = Mutex::new(());
static STALE_CLEANED: Once = Once::new();

/// One test at a time; the first one removes what a crashed earlier run left.
fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    STALE_CLEANED.call_once(|| loopdisk::clean_stale(PREFIX, &lab_dir()));
    guard
}

/// `<workspace>/target/kernel-faults`, made if missing: the labs' images and mount points.
fn lab_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let dir = target.join("kernel-faults");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// A guard for this file's loop disks and cgroup (`test_support::loopdisk::Lab`).
fn lab(tag: &str) -> Lab {
    Lab::new(PREFIX, tag, &lab_dir())
}

/// A loop disk of this file: `IMAGE_BYTES`, 4096-byte sectors, ext4, with `plots` on it.
fn loop_disk(lab: &mut Lab, tag: &str, plots: &[PathBuf]) -> LoopDisk {
    lab.loop_disk(tag, IMAGE_BYTES, SECTOR_BYTES, plots)
        .unwrap_or_else(|e| panic!("loop disk: {e}"))
}

/// Anything of ours still present (after a guard is dropped there must be none).
fn leftovers() -> Vec<String> {
    loopdisk::leftovers(PREFIX, &lab_dir())
}

/// What the loop-device tests need; the reason when something is missing.
fn loop_requirements() -> Result<(), String> {
    loopdisk::loop_devices_usable()?;
    loopdisk::ext4_loop_disks_usable()?;
    UringBackend::new(1).map_err(|e| format!("io_uring unavailable: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Plots and the reference decoder
// ---------------------------------------------------------------------------------------------

/// The two smallest fixture plots (they fit a small image and copy fast).
fn two_small_plots() -> Vec<PathBuf> {
    let mut plots = test_support::fixture_plots();
    plots.sort_by_key(|p| (fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX), p.clone()));
    assert!(plots.len() >= 2, "need two fixture plots: run scripts/make-fixtures.sh");
    plots.truncate(2);
    plots
}

fn open(path: &Path) -> (File, Plot) {
    shard::open_plot(path).expect("valid plot")
}

fn challenges(n: u32) -> Vec<[u8; 32]> {
    use sha2::{Digest, Sha256};
    (0..n)
        .map(|i| Sha256::digest([b"kernel-faults".as_slice(), &i.to_be_bytes()].concat()).into())
        .collect()
}

/// The plain decoder over the original fixture files (never through the loop disks).
struct Reference {
    plots: Vec<(File, Plot)>,
}

impl Reference {
    fn new(paths: &[PathBuf]) -> Reference {
        Reference { plots: paths.iter().map(|p| open(p)).collect() }
    }

    /// Found entries by plot index (plots with nothing left out).
    fn answer(&self, work: &Work, base: u64) -> BTreeMap<u64, Vec<Found>> {
        let lookup = |i: usize, challenge: &[u8; 32], goal: Goal, mode: Mode| {
            let (file, plot) = &self.plots[i];
            shard::lookup_file(file, plot, challenge, goal, mode)
                .expect("read")
                .expect("fixture lookups succeed")
        };
        let mut want = BTreeMap::new();
        match work {
            Work::Qualities { challenge, plots, mode, proofs } => {
                assert!(plots.is_none(), "the reference answers whole-shard jobs");
                let goal = if *proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
                for i in 0..self.plots.len() {
                    let found = lookup(i, challenge, goal, *mode);
                    if !found.is_empty() {
                        want.insert(base + i as u64, found);
                    }
                }
            }
            Work::QualitiesEach { items, mode, proofs } => {
                let goal = if *proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
                for (plot, challenge) in items {
                    let found = lookup((plot.0 - base) as usize, challenge, goal, *mode);
                    if !found.is_empty() {
                        want.insert(plot.0, found);
                    }
                }
            }
            Work::Proof { plot, challenge, index, mode } => {
                let i = (plot.0 - base) as usize;
                let found = lookup(i, challenge, Goal::Proof { index: *index }, *mode);
                want.insert(plot.0, found);
            }
        }
        want
    }
}

// ---------------------------------------------------------------------------------------------
// A backend wrapper recording what the shard's backend did
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Seen {
    opened: Mutex<Vec<(PathBuf, OpenedFile)>>,
    direct_fallbacks: AtomicU64,
    /// The id the shard thread wrote into the cgroup (0: none).
    cgroup_id: AtomicU64,
    /// The shard thread's id.
    tid: AtomicU64,
}

impl Seen {
    fn opened(&self) -> Vec<(PathBuf, OpenedFile)> {
        self.opened.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Passes everything to `inner`; records opens and `direct_fallbacks` (after every drain, as
/// a fallback can happen at a file's first read).
struct Recorder<B> {
    inner: B,
    seen: Arc<Seen>,
}

impl<B: Backend> Backend for Recorder<B> {
    fn open(&mut self, path: &Path, direct: DirectIo) -> std::io::Result<OpenedFile> {
        let opened = self.inner.open(path, direct)?;
        self.seen.opened.lock().unwrap_or_else(PoisonError::into_inner).push((path.into(), opened));
        Ok(opened)
    }

    fn close(&mut self, file: FileId) {
        self.inner.close(file);
    }

    fn push(&mut self, op: ReadOp) -> Result<(), Full> {
        self.inner.push(op)
    }

    fn submit_and_wait(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.inner.submit_and_wait(timeout)
    }

    fn drain(&mut self, out: &mut Vec<Completion>) {
        self.inner.drain(out);
        self.seen.direct_fallbacks.store(self.inner.direct_fallbacks(), Ordering::Relaxed);
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    fn reads_in_flight_max(&self) -> usize {
        self.inner.reads_in_flight_max()
    }

    fn recycle(&mut self, buffer: Buffer) {
        self.inner.recycle(buffer);
    }

    fn direct_fallbacks(&self) -> u64 {
        self.inner.direct_fallbacks()
    }
}

/// A shard over `UringBackend` wrapped in a `Recorder`; with a `joiner`, the shard thread
/// first moves itself into the throttling cgroup (before the ring exists, so io-wq workers it
/// creates later are in the cgroup too).
fn spawn_shard(
    config: ShardConfig,
    clock: MonotonicClock,
    joiner: Option<Joiner>,
    seen: Arc<Seen>,
) -> ShardHandle {
    let name = config.name.clone();
    let make = move || {
        seen.tid.store(u64::from(loopdisk::current_tid()?), Ordering::Relaxed);
        if let Some(joiner) = &joiner {
            let id = joiner.join()?;
            seen.cgroup_id.store(u64::from(id), Ordering::Relaxed);
        }
        Ok(Recorder { inner: UringBackend::new(READS_IN_FLIGHT_MAX)?, seen })
    };
    Shard::spawn(config, make, clock, 64, 4096)
        .unwrap_or_else(|e| panic!("shard {name} does not start: {e}"))
}

fn shard_config(name: &str) -> ShardConfig {
    ShardConfig {
        name: name.into(),
        direct_io: DirectIo::Prefer,
        probe_interval: Duration::from_millis(250),
        ..ShardConfig::default()
    }
}

/// Serves `copies` (on a loop disk) under keys `base..`, parsed from the `originals`.
fn add_plots(handle: &ShardHandle, base: u64, copies: &[PathBuf], originals: &[PathBuf]) {
    for (i, (copy, original)) in copies.iter().zip(originals).enumerate() {
        let (_, plot) = open(original);
        let command = Command::AddPlot {
            key: PlotKey(base + i as u64),
            path: copy.clone(),
            plot: Box::new(plot),
        };
        handle.commands.send(command).expect("shard takes commands");
    }
}

/// Open fds of this process on files under `dir`, with their `flags:` from fdinfo.
fn fds_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else { continue };
        if !target.starts_with(dir) {
            continue;
        }
        let info = fs::read_to_string(Path::new("/proc/self/fdinfo").join(entry.file_name()))
            .unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        if let Some(flags) = flags {
            found.push((target, flags));
        }
    }
    found
}

/// Sends one job and waits for its end: latency (send to `JobDone`), status, answers by plot.
fn run_one(
    handle: &ShardHandle,
    clock: &MonotonicClock,
    id: u64,
    work: Work,
    budget: Duration,
) -> (Duration, JobStatus, BTreeMap<u64, Vec<Found>>) {
    let sent = clock.now();
    let job = Job { id, work, deadline: sent + budget, reply: None };
    handle.commands.send(Command::Job(job)).expect("shard takes jobs");
    let mut answers = BTreeMap::new();
    loop {
        let event = handle
            .events
            .recv_timeout(budget + Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("shard {}: no event for job {id}: {e}", handle.name));
        match event {
            Event::Found { job, plot, found } if job == id => {
                assert!(answers.insert(plot.0, found).is_none(), "one answer per plot");
            }
            Event::JobDone { job, status } if job == id => {
                return (clock.now().saturating_sub(sent), status, answers)
            }
            other => panic!("shard {}: unexpected {other:?} waiting for job {id}", handle.name),
        }
    }
}

/// CPU time (user + system) of one thread of this process, from `/proc/self/task/<tid>/stat`
/// (in USER_HZ ticks, 100 per second on Linux).
fn thread_cpu(tid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<i64> =
        rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    let field = |i: usize| u64::try_from(fields.get(i).copied().unwrap_or(0)).unwrap_or(0);
    let ticks = field(10) + field(11);
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, 90th percentile, max and mean of latencies, for printing and comparing.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: Duration,
    p90: Duration,
    max: Duration,
    mean: Duration,
}

impl Spread {
    fn of(latencies: &[Duration]) -> Spread {
        let mut v = latencies.to_vec();
        v.sort();
        let n = v.len();
        assert!(n > 0);
        let total: Duration = v.iter().sum();
        Spread {
            median: v[n / 2],
            p90: v[((n * 9) / 10).min(n - 1)],
            max: v[n - 1],
            mean: total / n as u32,
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.1} ms, p90 {:.1} ms, max {:.1} ms, mean {:.1} ms",
            ms(self.median),
            ms(self.p90),
            ms(self.max),
            ms(self.mean)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A 4Kn loop disk, O_DIRECT, answers equal to the decoder's
// ---------------------------------------------------------------------------------------------

#[test]
fn loop_4k_sectors_direct_io_equals_the_decoder() {
    const TEST: &str = "loop_4k_sectors_direct_io_equals_the_decoder";
    let _serial = serial();
    if let Err(why) = loop_requirements() {
        return skip(TEST, &why);
    }
    let originals = two_small_plots();
    let mut lab = lab("4k");
    let disk = loop_disk(&mut lab, "a", &originals);

    // The disk is a 4Kn disk, and the kernel enforces it for direct reads.
    let logical =
        fs::read_to_string(format!("/sys/block/{}/queue/logical_block_size", disk.sysfs_name()))
            .expect("logical_block_size");
    assert_eq!(logical.trim(), SECTOR_BYTES.to_string(), "loop device logical block size");
    let found_disk = disk_io::device::disk_of(&disk.plots[0]).expect("disk_of");
    assert_eq!(found_disk.logical_block_bytes, SECTOR_BYTES, "{found_disk:?}");
    let plot0 = format!("if={}", disk.plots[0].display());
    let dd = |bs: &str| {
        sh(
            "dd",
            &[
                &plot0,
                "of=/dev/null",
                &format!("bs={bs}"),
                "skip=1",
                "count=1",
                "iflag=direct",
                "status=none",
            ],
        )
    };
    match dd("512") {
        Err(e) if e.contains("Invalid argument") => {}
        other => panic!("a 512-byte O_DIRECT read at 512 should fail with EINVAL: {other:?}"),
    }
    dd("4096").unwrap_or_else(|e| panic!("a 4096-byte O_DIRECT read should succeed: {e}"));

    // Jobs as the farmer sends them: qualities (with and without proofs), then single proofs.
    let reference = Reference::new(&originals);
    let set = challenges(40);
    let mut jobs = Vec::new();
    for (i, c) in set.iter().enumerate() {
        let (mode, proofs) =
            if i % 2 == 0 { (Mode::Chiapos, false) } else { (Mode::Complete, true) };
        jobs.push(Work::Qualities { challenge: *c, plots: None, mode, proofs });
    }
    for key in 0..originals.len() as u64 {
        for c in set.iter().take(10) {
            let work =
                Work::Qualities { challenge: *c, plots: None, mode: Mode::Chiapos, proofs: false };
            for f in reference.answer(&work, 0).remove(&key).unwrap_or_default() {
                jobs.push(Work::Proof {
                    plot: PlotKey(key),
                    challenge: *c,
                    index: f.index,
                    mode: Mode::Chiapos,
                });
            }
        }
    }
    let expected: Vec<BTreeMap<u64, Vec<Found>>> =
        jobs.iter().map(|w| reference.answer(w, 0)).collect();
    assert!(expected.iter().any(|e| !e.is_empty()), "the challenges find something");

    let clock = MonotonicClock::default();
    let seen = Arc::new(Seen::default());
    let handle = spawn_shard(shard_config("loop4k"), clock, None, seen.clone());
    add_plots(&handle, 0, &disk.plots, &originals);
    let n = jobs.len();
    for (id, work) in jobs.into_iter().enumerate() {
        let deadline = clock.now() + Duration::from_secs(60);
        handle
            .commands
            .send(Command::Job(Job { id: id as u64, work, deadline, reply: None }))
            .expect("send");
    }
    let started = clock.now();
    let mut got = vec![BTreeMap::new(); n];
    let mut done = 0;
    while done < n {
        match handle.events.recv_timeout(Duration::from_secs(60)).expect("events arrive") {
            Event::Found { job, plot, found } => {
                assert!(got[job as usize].insert(plot.0, found).is_none(), "one answer per plot");
            }
            Event::JobDone { job, status } => {
                assert_eq!(status, JobStatus::Complete, "job {job}");
                done += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = clock.now().saturating_sub(started);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "job {i}");
    }

    // The plot files are open with O_DIRECT now (no F_SETFL fallback took it away).
    let mount_point = disk.plots[0].parent().expect("mount point").to_path_buf();
    let fds = fds_under(&mount_point);
    assert_eq!(fds.len(), originals.len(), "the shard holds one fd per plot: {fds:?}");
    match O_DIRECT_FLAG {
        Some(flag) => {
            for (path, flags) in &fds {
                assert_ne!(
                    flags & flag,
                    0,
                    "{} open without O_DIRECT (flags {flags:o})",
                    path.display()
                );
            }
        }
        None => println!("fdinfo O_DIRECT check skipped: O_DIRECT value unknown on this arch"),
    }

    let ShardHandle { commands, thread, metrics, .. } = handle;
    drop(commands);
    thread.join().expect("shard thread");
    let counters = metrics.snapshot().counters;
    assert_eq!(
        seen.direct_fallbacks.load(Ordering::Relaxed),
        0,
        "no file fell back to buffered reads"
    );
    let opened = seen.opened();
    assert_eq!(opened.len(), originals.len());
    for (path, o) in &opened {
        assert!(o.direct, "{} opened without O_DIRECT: {o:?}", path.display());
        assert_eq!(o.alignment, SECTOR_BYTES, "{}: {o:?}", path.display());
    }
    assert_eq!(counters.read_errors, 0, "{counters:?}");
    println!(
        "4Kn loop disk {}: {n} jobs, {} reads ({} coalesced) in {:.0} ms through io_uring + \
         O_DIRECT, alignment {} on every file, 0 fallbacks; answers equal the decoder's",
        disk.dev.display(),
        counters.reads,
        counters.reads_coalesced,
        ms(elapsed),
        opened[0].1.alignment,
    );

    drop(lab);
    let left = leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// 2. A stuck disk next to an HDD-speed disk
// ---------------------------------------------------------------------------------------------

/// The shard's metrics once they count `jobs_complete` complete jobs (they are published every
/// 100 ms, so they lag the jobs' answers).
fn published_after(handle: &ShardHandle, jobs_complete: u64) -> Snapshot {
    let mut snapshot = handle.metrics.snapshot();
    test_support::wait_for(
        &format!("shard {}'s metrics to count {jobs_complete} complete jobs", handle.name),
        Duration::from_secs(10),
        || {
            snapshot = handle.metrics.snapshot();
            snapshot.histograms.lookup_latency_us.len() >= jobs_complete
        },
    );
    snapshot
}

/// Healthy jobs one after another; their latencies. Every answer is checked.
fn healthy_round(
    handle: &ShardHandle,
    clock: &MonotonicClock,
    reference: &Reference,
    works: &[Work],
    first_id: u64,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for (i, work) in works.iter().enumerate() {
        let id = first_id + i as u64;
        let (latency, status, answers) =
            run_one(handle, clock, id, work.clone(), Duration::from_secs(20));
        assert_eq!(status, JobStatus::Complete, "healthy job {id}");
        assert_eq!(answers, reference.answer(work, 0), "healthy job {id}");
        latencies.push(latency);
    }
    latencies
}

#[test]
fn stuck_disk_times_out_degrades_and_spares_the_healthy_disk() {
    const TEST: &str = "stuck_disk_times_out_degrades_and_spares_the_healthy_disk";
    let _serial = serial();
    if let Err(why) = loop_requirements() {
        return skip(TEST, &why);
    }
    let cg_root = match loopdisk::throttle_root() {
        Ok(root) => root,
        Err(why) => return skip(TEST, &why),
    };
    if cg_root.version == CgVersion::V2 {
        println!(
            "cgroup v1 blkio absent: throttling with cgroup v2 io.max at {} (whole process moved)",
            cg_root.root.display()
        );
    }
    let originals = two_small_plots();
    let mut lab = lab("stuck");
    let healthy = loop_disk(&mut lab, "healthy", &originals);
    let stuck = loop_disk(&mut lab, "stuck", &originals);
    let cg = lab.make_cgroup(&cg_root).unwrap_or_else(|e| panic!("cgroup: {e}"));
    cg.set(healthy.devno(), Rule::ReadIops(HDD_READ_IOPS));

    let clock = MonotonicClock::default();
    let healthy_seen = Arc::new(Seen::default());
    let stuck_seen = Arc::new(Seen::default());
    let h = spawn_shard(shard_config("healthy"), clock, Some(cg.joiner()), healthy_seen.clone());
    let s = spawn_shard(shard_config("stuck"), clock, Some(cg.joiner()), stuck_seen.clone());
    let members = cg.members();
    for (name, seen) in [("healthy", &healthy_seen), ("stuck", &stuck_seen)] {
        let id = seen.cgroup_id.load(Ordering::Relaxed) as u32;
        assert!(members.contains(&id), "shard {name} ({id}) is in the cgroup: {members:?}");
    }
    const STUCK_BASE: u64 = 10;
    add_plots(&h, 0, &healthy.plots, &originals);
    add_plots(&s, STUCK_BASE, &stuck.plots, &originals);

    let reference = Reference::new(&originals);
    let set = challenges(64);
    let qualities = |c: &[u8; 32]| Work::Qualities {
        challenge: *c,
        plots: None,
        mode: Mode::Chiapos,
        proofs: false,
    };
    let healthy_works: Vec<Work> = set[..12].iter().map(qualities).collect();
    // Stuck-disk jobs that surely read the disk: they find something.
    let stuck_works: Vec<Work> = set[12..]
        .iter()
        .map(qualities)
        .filter(|w| !reference.answer(w, 0).is_empty())
        .take(4)
        .collect();
    assert_eq!(stuck_works.len(), 4, "enough challenges with answers");

    // Baseline: the healthy disk alone (the other shard idle, its disk unthrottled).
    let warm = run_one(&h, &clock, 999, healthy_works[0].clone(), Duration::from_secs(20));
    assert_eq!(warm.1, JobStatus::Complete);
    // Metrics are published every 100 ms: wait for the snapshot that counts the job.
    let reads_before = published_after(&h, 1).counters.reads;
    let round_start = clock.now();
    let alone = healthy_round(&h, &clock, &reference, &healthy_works, 1000);
    let round_time = clock.now().saturating_sub(round_start);
    let reads = published_after(&h, 1 + healthy_works.len() as u64).counters.reads - reads_before;
    let iops = reads as f64 / round_time.as_secs_f64();
    // Dependent reads keep the rate below the limit; above it, throttling is not in effect.
    assert!(
        iops <= HDD_READ_IOPS as f64 * 1.5,
        "the healthy disk is not throttled: {reads} reads in {:.0} ms = {iops:.0} IOPS",
        ms(round_time)
    );

    // The stuck disk: 1 byte/s, no read of 4096 bytes completes.
    cg.set(stuck.devno(), Rule::ReadBps(1));
    let ShardHandle {
        commands: stuck_commands,
        events: stuck_events,
        metrics: stuck_metrics,
        thread: stuck_thread,
        ..
    } = s;
    let (tx, rx) = mpsc::channel::<(Duration, Event)>();
    let collector = std::thread::spawn(move || {
        for event in stuck_events.iter() {
            if tx.send((clock.now(), event)).is_err() {
                break;
            }
        }
    });
    let budgets = [Duration::from_millis(1000), Duration::from_millis(1500)];
    let mut deadlines = Vec::new();
    let first_sent = clock.now();
    let stuck_tid = stuck_seen.tid.load(Ordering::Relaxed) as u32;
    let stuck_cpu_before = thread_cpu(stuck_tid);
    for (i, budget) in budgets.iter().enumerate() {
        let deadline = clock.now() + *budget;
        deadlines.push(deadline);
        let job = Job { id: 1 + i as u64, work: stuck_works[i].clone(), deadline, reply: None };
        stuck_commands.send(Command::Job(job)).expect("send");
    }
    // The healthy disk meanwhile, the same jobs as the baseline.
    let with_start = clock.now();
    let with_stuck = healthy_round(&h, &clock, &reference, &healthy_works, 2000);
    let with_time = clock.now().saturating_sub(with_start);

    // The stuck shard: both jobs time out at their deadlines, the disk is degraded.
    let mut timed_out: BTreeMap<u64, (Duration, JobStatus)> = BTreeMap::new();
    let mut degraded_at = None;
    let wait_end = deadlines[1] + Duration::from_secs(5);
    while timed_out.len() < 2 || degraded_at.is_none() {
        let left = wait_end.saturating_sub(clock.now());
        let (at, event) = rx.recv_timeout(left).unwrap_or_else(|e| {
            panic!("stuck shard: timed out {timed_out:?}, degraded {degraded_at:?}: {e}")
        });
        match event {
            Event::JobDone { job, status } => {
                timed_out.insert(job, (at, status));
            }
            Event::DiskDegraded { shard } => {
                assert_eq!(shard, "stuck");
                degraded_at = Some(at);
            }
            other => panic!("stuck shard: unexpected {other:?} (did a read get through?)"),
        }
    }
    let degraded_at = degraded_at.expect("degraded");
    for (i, deadline) in deadlines.iter().enumerate() {
        let (at, status) = &timed_out[&(1 + i as u64)];
        let plots = originals.len() as u32;
        assert_eq!(*status, JobStatus::TimedOut { unanswered: plots }, "stuck job {}", i + 1);
        // A job ends at its deadline, or when the disk is found stuck if that comes first:
        // running jobs cannot progress on a stuck disk, so they are answered then.
        let due = (*deadline).min(degraded_at);
        assert!(
            *at >= due && *at <= due + DEADLINE_TOLERANCE,
            "stuck job {} ended {:+.1} ms from when it was due",
            i + 1,
            ms(*at) - ms(due)
        );
    }
    assert!(
        degraded_at >= deadlines[0] && degraded_at <= deadlines[0] + DEADLINE_TOLERANCE,
        "degraded {:+.1} ms from the first deadline",
        ms(degraded_at) - ms(deadlines[0])
    );
    assert!(degraded_at <= timed_out[&2].0, "degraded at the first deadline, not the second");

    // Degraded: a new job is rejected at once; the reads are still held by the kernel.
    let sent = clock.now();
    let deadline = sent + Duration::from_secs(10);
    stuck_commands
        .send(Command::Job(Job { id: 3, work: stuck_works[2].clone(), deadline, reply: None }))
        .expect("send");
    let (at, event) = rx.recv_timeout(Duration::from_secs(5)).expect("an answer while degraded");
    assert_eq!(
        event,
        Event::JobDone {
            job: 3,
            status: JobStatus::Rejected { reason: shard::Rejection::DiskDegraded }
        }
    );
    let rejected_in = at.saturating_sub(sent);
    let mut snapshot = stuck_metrics.snapshot();
    test_support::wait_until(Duration::from_secs(1), || {
        snapshot = stuck_metrics.snapshot();
        snapshot.degraded && snapshot.reads_in_flight > 0
    });
    assert!(snapshot.degraded, "metrics say degraded");
    assert!(snapshot.reads_in_flight > 0, "the stuck reads are still in the kernel");
    let stuck_reads_in_flight = snapshot.reads_in_flight;

    // Lift the throttle: the held reads complete, the probe read succeeds, the disk recovers.
    let released = clock.now();
    let stuck_cpu = thread_cpu(stuck_tid).saturating_sub(stuck_cpu_before);
    cg.set(stuck.devno(), Rule::Unlimited);
    let (recovered_at, event) = rx.recv_timeout(Duration::from_secs(10)).expect("recovery");
    assert_eq!(event, Event::DiskRecovered { shard: "stuck".into() });
    let recovery = recovered_at.saturating_sub(released);

    // And it answers again, correctly.
    let sent = clock.now();
    let work = stuck_works[3].clone();
    let deadline = sent + Duration::from_secs(20);
    stuck_commands
        .send(Command::Job(Job { id: 4, work: work.clone(), deadline, reply: None }))
        .expect("send");
    let mut answers = BTreeMap::new();
    loop {
        let (_, event) = rx.recv_timeout(Duration::from_secs(25)).expect("answer after recovery");
        match event {
            Event::Found { job: 4, plot, found } => {
                answers.insert(plot.0, found);
            }
            Event::JobDone { job: 4, status } => {
                assert_eq!(status, JobStatus::Complete);
                break;
            }
            other => panic!("stuck shard after recovery: unexpected {other:?}"),
        }
    }
    assert_eq!(answers, reference.answer(&work, STUCK_BASE), "answers after recovery");

    let alone_spread = Spread::of(&alone);
    let with_spread = Spread::of(&with_stuck);
    println!(
        "healthy disk ({HDD_READ_IOPS} read IOPS limit, {} jobs of 2 plots each):",
        alone.len()
    );
    let list = |v: &[Duration]| v.iter().map(|d| format!("{:.0}", ms(*d))).collect::<Vec<_>>();
    println!(
        "  alone:                {alone_spread}; round {:.0} ms ({reads} reads, {iops:.0} IOPS)",
        ms(round_time)
    );
    println!("    per job, ms: {}", list(&alone).join(" "));
    println!("  next to a stuck disk: {with_spread}; round {:.0} ms", ms(with_time));
    println!("    per job, ms: {}", list(&with_stuck).join(" "));
    println!(
        "stuck disk: DiskDegraded {:.0} ms after the first job was sent (deadline budget {:.0} ms, \
         {:+.1} ms after the deadline); jobs timed out {:+.1} ms and {:+.1} ms after their \
         deadlines; a new job rejected in {:.2} ms; {stuck_reads_in_flight} reads held in the kernel",
        ms(degraded_at.saturating_sub(first_sent)),
        ms(budgets[0]),
        ms(degraded_at) - ms(deadlines[0]),
        ms(timed_out[&1].0) - ms(deadlines[0]),
        ms(timed_out[&2].0) - ms(deadlines[1]),
        ms(rejected_in),
    );
    println!(
        "stuck disk: DiskRecovered {:.1} ms after the throttle was lifted (probe interval 250 ms)",
        ms(recovery)
    );
    let held = released.saturating_sub(first_sent);
    println!(
        "stuck shard thread CPU while its reads were held: {:.0} ms in {:.0} ms ({:.0}%)",
        ms(stuck_cpu),
        ms(held),
        100.0 * stuck_cpu.as_secs_f64() / held.as_secs_f64()
    );
    // Compared by the mean: blk-throttle grants reads in 100 ms slices, so single latencies
    // are quantised (0, 100, 200, 300 ms, see the lists) and a median of 12 can flip between
    // ~0 and ~100 ms; the mean tracks reads / IOPS.
    let bound = alone_spread.mean * 2 + Duration::from_millis(50);
    assert!(
        with_spread.mean < bound,
        "healthy mean latency {:.1} ms next to the stuck disk, {:.1} ms alone (bound {:.1} ms)",
        ms(with_spread.mean),
        ms(alone_spread.mean),
        ms(bound)
    );

    // Shut down; every file was read with O_DIRECT at 4096-byte alignment.
    drop(stuck_commands);
    stuck_thread.join().expect("stuck shard thread");
    collector.join().expect("collector");
    let ShardHandle { commands, thread, .. } = h;
    drop(commands);
    thread.join().expect("healthy shard thread");
    for (name, seen) in [("healthy", &healthy_seen), ("stuck", &stuck_seen)] {
        assert_eq!(seen.direct_fallbacks.load(Ordering::Relaxed), 0, "{name}: fallbacks");
        for (path, o) in seen.opened() {
            assert!(o.direct && o.alignment == SECTOR_BYTES, "{name} {}: {o:?}", path.display());
        }
    }
    let late = stuck_metrics.snapshot().counters;
    println!(
        "stuck shard counters: {} jobs, {} timed out, {} rejected, {} degraded episode(s), {} late reads",
        late.jobs, late.jobs_timed_out, late.jobs_rejected, late.degraded_episodes, late.reads_late
    );

    drop(lab);
    let left = leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}
