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
//! `shard-kfault-*`. A guard (`Lab`) removes its own in `Drop`, also when the test panics; the
//! first test of a run removes whatever a crashed earlier run left (by that prefix). The tests
//! of this file run one at a time (a lock), so they do not remove each other's devices; two
//! runs of this file at once on one machine are not supported.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command as Cmd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use disk_io::uring::UringBackend;
use disk_io::{Backend, Buffer, Completion, DirectIo, FileId, Full, OpenedFile, ReadOp};
use plot_format::{Found, Goal, Mode, Plot};
use shard::{
    Clock, Command, Event, Job, JobStatus, MonotonicClock, PlotKey, Shard, ShardConfig,
    ShardHandle, Work,
};

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
// Skipping, serialising, running commands
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
    STALE_CLEANED.call_once(clean_stale);
    guard
}

/// Runs a program; its trimmed stdout, or an error naming the command and its stderr.
fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Cmd::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("paths made here are UTF-8")
}

/// `<workspace>/target/kernel-faults`, made if missing.
fn lab_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let dir = target.join("kernel-faults");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What the loop-device tests need; the reason when something is missing.
fn loop_requirements() -> Result<(), String> {
    if effective_uid() != Some(0) {
        return Err("needs root (loop devices, mount, cgroups)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control (kernel without loop devices)".into());
    }
    let help = sh("losetup", &["--help"]).map_err(|e| format!("no usable losetup: {e}"))?;
    if !help.contains("--sector-size") {
        return Err("losetup lacks --sector-size (util-linux < 2.30)".into());
    }
    sh("mkfs.ext4", &["-V"]).map_err(|e| format!("no mkfs.ext4: {e}"))?;
    sh("mount", &["--version"]).map_err(|e| format!("no mount: {e}"))?;
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("ext4")) {
        return Err("the kernel has no ext4 (/proc/filesystems)".into());
    }
    UringBackend::new(1).map_err(|e| format!("io_uring unavailable: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mounts, loop devices, cgroups: finding and removing them
// ---------------------------------------------------------------------------------------------

struct MountEntry {
    point: PathBuf,
    fstype: String,
    super_options: String,
}

fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

fn mounts() -> Vec<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?.to_string();
            let _source = right.next();
            let super_options = right.next().unwrap_or("").to_string();
            Some(MountEntry {
                point: PathBuf::from(unescape_mount_path(point)),
                fstype,
                super_options,
            })
        })
        .collect()
}

fn is_mounted(point: &Path) -> bool {
    mounts().iter().any(|m| m.point == point)
}

/// Unmounts, retrying while busy (a shard thread of a failed test may still hold files for a
/// moment), then detaches lazily. `Ok(true)` when it had to detach lazily.
fn unmount(point: &Path) -> Result<bool, String> {
    let mut last = String::new();
    for _ in 0..30 {
        match sh("umount", &[path_str(point)]) {
            Ok(_) => return Ok(false),
            Err(_) if !is_mounted(point) => return Ok(false),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sh("umount", &["-l", path_str(point)])
        .map(|_| true)
        .map_err(|e| format!("{last}; lazy unmount: {e}"))
}

/// Loop devices whose backing file lies under `dir`: (`/dev/loopN`, backing file).
fn loops_backed_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir("/sys/block") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim().to_string();
        if Path::new(&backing).starts_with(dir) {
            found.push((PathBuf::from("/dev").join(&name), backing));
        }
    }
    found
}

/// Detaches `dev` if it is still backed by a file under `dir` (it may have been freed and
/// reused by someone else since).
fn detach(dev: &Path, dir: &Path) -> Result<(), String> {
    if loops_backed_under(dir).iter().any(|(d, _)| d == dev) {
        sh("losetup", &["-d", path_str(dev)]).map(|_| ())
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgVersion {
    /// cgroup v1 `blkio`: throttle files per device, single threads through `tasks`.
    V1,
    /// cgroup v2 `io`: `io.max`, whole processes through `cgroup.procs`.
    V2,
}

#[derive(Debug, Clone)]
struct CgRoot {
    version: CgVersion,
    root: PathBuf,
}

/// Every hierarchy where blk-throttle cgroups could live (for stale cleanup).
fn cgroup_roots() -> Vec<CgRoot> {
    let mut roots = Vec::new();
    for m in mounts() {
        if m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "blkio") {
            roots.push(CgRoot { version: CgVersion::V1, root: m.point });
        } else if m.fstype == "cgroup2" {
            roots.push(CgRoot { version: CgVersion::V2, root: m.point });
        }
    }
    roots
}

/// Where read throttling works: cgroup-v1 blkio first (where our test machines bind the block
/// controller), else a cgroup-v2 hierarchy offering the `io` controller.
fn throttle_root() -> Result<CgRoot, String> {
    let roots = cgroup_roots();
    if let Some(v1) = roots.iter().find(|r| r.version == CgVersion::V1) {
        if v1.root.join("blkio.throttle.read_iops_device").exists() {
            return Ok(v1.clone());
        }
        return Err(format!(
            "cgroup-v1 blkio at {} has no blkio.throttle.* files (CONFIG_BLK_DEV_THROTTLING off)",
            v1.root.display()
        ));
    }
    for v2 in roots.iter().filter(|r| r.version == CgVersion::V2) {
        let controllers =
            fs::read_to_string(v2.root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "io") {
            return Ok(v2.clone());
        }
    }
    Err("no cgroup-v1 blkio hierarchy and no cgroup v2 with the io controller: \
         cannot throttle a disk"
        .into())
}

fn cg_members_file(version: CgVersion) -> &'static str {
    match version {
        CgVersion::V1 => "tasks",
        CgVersion::V2 => "cgroup.procs",
    }
}

/// Lifts every throttle rule of a cgroup (releasing reads held by it), moves its members to
/// `home`, removes it. Returns the problems met.
fn release_cgroup(version: CgVersion, dir: &Path, home: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match version {
        CgVersion::V1 => {
            for file in [
                "blkio.throttle.read_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.write_iops_device",
            ] {
                let rules = fs::read_to_string(dir.join(file)).unwrap_or_default();
                for dev in rules.lines().filter_map(|l| l.split_whitespace().next()) {
                    if let Err(e) = fs::write(dir.join(file), format!("{dev} 0")) {
                        problems.push(format!("{}: {dev} 0: {e}", dir.join(file).display()));
                    }
                }
            }
        }
        CgVersion::V2 => {
            let rules = fs::read_to_string(dir.join("io.max")).unwrap_or_default();
            for dev in rules.lines().filter_map(|l| l.split_whitespace().next()) {
                let lift = format!("{dev} rbps=max wbps=max riops=max wiops=max");
                if let Err(e) = fs::write(dir.join("io.max"), &lift) {
                    problems.push(format!("{}: {lift}: {e}", dir.join("io.max").display()));
                }
            }
        }
    }
    let members = cg_members_file(version);
    let mut last = String::new();
    for _ in 0..100 {
        let ids = fs::read_to_string(dir.join(members)).unwrap_or_default();
        for id in ids.split_whitespace() {
            // A thread may end meanwhile (ESRCH): nothing to move then.
            let _ = fs::write(home.join(members), id);
        }
        match fs::remove_dir(dir) {
            Ok(()) => return problems,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return problems,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    problems.push(format!("cgroup {} not removed: {last}", dir.display()));
    problems
}

/// Removes what an earlier (crashed) run left: cgroups, mounts, loop devices, images.
fn clean_stale() {
    let dir = lab_dir();
    let mut cleaned = Vec::new();
    for root in cgroup_roots() {
        let Ok(entries) = fs::read_dir(&root.root) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(PREFIX) && entry.path().is_dir() {
                let problems = release_cgroup(root.version, &entry.path(), &root.root);
                cleaned.push(format!("cgroup {} {problems:?}", entry.path().display()));
            }
        }
    }
    let mut stale_mounts: Vec<PathBuf> =
        mounts().into_iter().map(|m| m.point).filter(|p| p.starts_with(&dir)).collect();
    stale_mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in stale_mounts {
        let outcome = unmount(&point);
        cleaned.push(format!("mount {} {outcome:?}", point.display()));
    }
    for (dev, backing) in loops_backed_under(&dir) {
        let outcome = sh("losetup", &["-d", path_str(&dev)]);
        cleaned.push(format!("loop {} ({backing}) {outcome:?}", dev.display()));
    }
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            cleaned.push(format!("file {}", p.display()));
        }
    }
    for c in cleaned {
        eprintln!("kernel_faults: removed stale {c}");
    }
}

/// Anything of ours still present (after a guard is dropped there must be none).
fn leftovers() -> Vec<String> {
    let dir = lab_dir();
    let mut left = Vec::new();
    for root in cgroup_roots() {
        if let Ok(entries) = fs::read_dir(&root.root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                    left.push(format!("cgroup {}", entry.path().display()));
                }
            }
        }
    }
    for m in mounts() {
        if m.point.starts_with(&dir) {
            left.push(format!("mount {}", m.point.display()));
        }
    }
    for (dev, backing) in loops_backed_under(&dir) {
        left.push(format!("loop {} ({backing})", dev.display()));
    }
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            left.push(format!("file {}", entry.path().display()));
        }
    }
    left
}

// ---------------------------------------------------------------------------------------------
// The guard: loop disks and a cgroup, removed in Drop
// ---------------------------------------------------------------------------------------------

/// A mounted loop disk.
#[derive(Debug, Clone)]
struct LoopDisk {
    dev: PathBuf,
    major: u32,
    minor: u32,
    /// The plots copied onto it, in the order given.
    plots: Vec<PathBuf>,
}

impl LoopDisk {
    fn devno(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    fn sysfs_name(&self) -> String {
        self.dev.file_name().expect("/dev/loopN").to_string_lossy().to_string()
    }
}

/// What the guard made, recorded step by step so a failure half-way is cleaned too.
struct LoopState {
    image: PathBuf,
    dev: Option<PathBuf>,
    mount_point: PathBuf,
    mounted: bool,
}

/// Throttle rule for one device.
#[derive(Debug, Clone, Copy)]
enum Rule {
    ReadIops(u64),
    ReadBps(u64),
    Unlimited,
}

struct Cgroup {
    version: CgVersion,
    dir: PathBuf,
    /// Where members go back to (v1: the root; v2: the test process's own cgroup).
    home: PathBuf,
}

impl Cgroup {
    fn set(&self, (major, minor): (u32, u32), rule: Rule) {
        let dev = format!("{major}:{minor}");
        let writes: Vec<(&str, String)> = match (self.version, rule) {
            (CgVersion::V1, Rule::ReadIops(n)) => {
                vec![("blkio.throttle.read_iops_device", format!("{dev} {n}"))]
            }
            (CgVersion::V1, Rule::ReadBps(n)) => {
                vec![("blkio.throttle.read_bps_device", format!("{dev} {n}"))]
            }
            (CgVersion::V1, Rule::Unlimited) => vec![
                ("blkio.throttle.read_bps_device", format!("{dev} 0")),
                ("blkio.throttle.read_iops_device", format!("{dev} 0")),
            ],
            (CgVersion::V2, Rule::ReadIops(n)) => vec![("io.max", format!("{dev} riops={n}"))],
            (CgVersion::V2, Rule::ReadBps(n)) => vec![("io.max", format!("{dev} rbps={n}"))],
            (CgVersion::V2, Rule::Unlimited) => {
                vec![("io.max", format!("{dev} rbps=max riops=max"))]
            }
        };
        for (file, line) in writes {
            let path = self.dir.join(file);
            fs::write(&path, &line).unwrap_or_else(|e| panic!("{}: {line}: {e}", path.display()));
        }
    }

    fn joiner(&self) -> Joiner {
        Joiner { version: self.version, dir: self.dir.clone() }
    }

    /// Thread ids (v1) or process ids (v2) in the cgroup.
    fn members(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join(cg_members_file(self.version)))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|id| id.parse().ok())
            .collect()
    }
}

/// Moves the calling thread into the cgroup (run on the shard thread, in `make_backend`).
#[derive(Debug, Clone)]
struct Joiner {
    version: CgVersion,
    dir: PathBuf,
}

impl Joiner {
    /// Returns the id written: the thread's (v1) or the process's (v2).
    fn join(&self) -> std::io::Result<u32> {
        let id = match self.version {
            CgVersion::V1 => current_tid()?,
            CgVersion::V2 => std::process::id(),
        };
        fs::write(self.dir.join(cg_members_file(self.version)), id.to_string())?;
        Ok(id)
    }
}

/// The calling thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
fn current_tid() -> std::io::Result<u32> {
    let link = fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|t| t.to_str())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("/proc/thread-self -> {}", link.display())))
}

/// Loop disks, their mounts and a cgroup, all removed in `Drop` (also during a panic).
struct Lab {
    name: String,
    dir: PathBuf,
    disks: Vec<LoopState>,
    cgroup: Option<Cgroup>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab {
            name: format!("{PREFIX}-{}-{tag}", std::process::id()),
            dir: lab_dir(),
            disks: Vec::new(),
            cgroup: None,
        }
    }

    /// A sparse image, attached as a loop device with 4096-byte sectors, formatted ext4,
    /// mounted, with `plots` copied onto it and synced.
    fn loop_disk(&mut self, tag: &str, plots: &[PathBuf]) -> Result<LoopDisk, String> {
        let base = format!("{}-{tag}", self.name);
        let image = self.dir.join(format!("{base}.img"));
        let mount_point = self.dir.join(format!("{base}.mnt"));
        self.disks.push(LoopState {
            image: image.clone(),
            dev: None,
            mount_point: mount_point.clone(),
            mounted: false,
        });
        let state = self.disks.len() - 1;
        File::create(&image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .map_err(|e| format!("{}: {e}", image.display()))?;
        let sector = SECTOR_BYTES.to_string();
        let dev = sh("losetup", &["--find", "--show", "--sector-size", &sector, path_str(&image)])?;
        let dev = PathBuf::from(dev);
        self.disks[state].dev = Some(dev.clone());
        let name =
            dev.file_name().ok_or("losetup printed no device")?.to_string_lossy().to_string();
        let numbers = fs::read_to_string(format!("/sys/block/{name}/dev"))
            .map_err(|e| format!("/sys/block/{name}/dev: {e}"))?;
        let (major, minor) = numbers
            .trim()
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| format!("/sys/block/{name}/dev: {numbers:?}"))?;
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                path_str(&dev),
            ],
        )?;
        fs::create_dir_all(&mount_point).map_err(|e| format!("{}: {e}", mount_point.display()))?;
        sh("mount", &["-t", "ext4", "-o", "noatime", path_str(&dev), path_str(&mount_point)])?;
        self.disks[state].mounted = true;
        let mut copies = Vec::new();
        for plot in plots {
            let to = mount_point.join(plot.file_name().expect("plot file name"));
            fs::copy(plot, &to).map_err(|e| format!("copy to {}: {e}", to.display()))?;
            File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("{}: {e}", to.display()))?;
            copies.push(to);
        }
        Ok(LoopDisk { dev, major, minor, plots: copies })
    }

    fn make_cgroup(&mut self, root: &CgRoot) -> Result<&Cgroup, String> {
        let dir = root.root.join(&self.name);
        let home = match root.version {
            CgVersion::V1 => root.root.clone(),
            CgVersion::V2 => {
                let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no cgroup-v2 line in /proc/self/cgroup")?;
                let enabled = fs::read_to_string(root.root.join("cgroup.subtree_control"))
                    .unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == "io") {
                    fs::write(root.root.join("cgroup.subtree_control"), "+io")
                        .map_err(|e| format!("enabling the io controller: {e}"))?;
                }
                root.root.join(path.trim().trim_start_matches('/'))
            }
        };
        fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(self.cgroup.insert(Cgroup { version: root.version, dir, home }))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        // First the cgroup: lifting its rules releases reads held in the kernel, so shard
        // threads of a failed test can finish and close their files.
        if let Some(cg) = self.cgroup.take() {
            problems.extend(release_cgroup(cg.version, &cg.dir, &cg.home));
        }
        let dir = self.dir.clone();
        for disk in self.disks.drain(..).rev() {
            if disk.mounted {
                match unmount(&disk.mount_point) {
                    Ok(false) => {}
                    Ok(true) => eprintln!(
                        "kernel_faults: {} was busy, detached lazily",
                        disk.mount_point.display()
                    ),
                    Err(e) => problems.push(e),
                }
            }
            let _ = fs::remove_dir(&disk.mount_point);
            if let Some(dev) = &disk.dev {
                if let Err(e) = detach(dev, &dir) {
                    problems.push(e);
                }
            }
            if let Err(e) = fs::remove_file(&disk.image) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("{}: {e}", disk.image.display()));
                }
            }
        }
        if problems.is_empty() {
            return;
        }
        let report = problems.join("; ");
        if std::thread::panicking() {
            eprintln!("kernel_faults: cleanup problems: {report}");
        } else {
            panic!("kernel_faults: cleanup failed: {report}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plots and the reference decoder
// ---------------------------------------------------------------------------------------------

fn fixture_plots() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/plots");
    let mut plots: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/make-fixtures.sh", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "plot"))
        .collect();
    plots.sort();
    plots
}

/// The two smallest fixture plots (they fit a small image and copy fast).
fn two_small_plots() -> Vec<PathBuf> {
    let mut plots = fixture_plots();
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
        seen.tid.store(u64::from(current_tid()?), Ordering::Relaxed);
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
    let mut lab = Lab::new("4k");
    let disk = lab.loop_disk("a", &originals).unwrap_or_else(|e| panic!("loop disk: {e}"));

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
    let cg_root = match throttle_root() {
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
    let mut lab = Lab::new("stuck");
    let healthy = lab.loop_disk("healthy", &originals).unwrap_or_else(|e| panic!("loop disk: {e}"));
    let stuck = lab.loop_disk("stuck", &originals).unwrap_or_else(|e| panic!("loop disk: {e}"));
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
    std::thread::sleep(Duration::from_millis(250)); // metrics are published every 100 ms
    let reads_before = h.metrics.snapshot().counters.reads;
    let round_start = clock.now();
    let alone = healthy_round(&h, &clock, &reference, &healthy_works, 1000);
    let round_time = clock.now().saturating_sub(round_start);
    std::thread::sleep(Duration::from_millis(250));
    let reads = h.metrics.snapshot().counters.reads - reads_before;
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
        assert!(
            *at >= *deadline && *at <= *deadline + DEADLINE_TOLERANCE,
            "stuck job {} ended {:+.1} ms from its deadline",
            i + 1,
            ms(*at) - ms(*deadline)
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
    for _ in 0..50 {
        if snapshot.degraded && snapshot.reads_in_flight > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        snapshot = stuck_metrics.snapshot();
    }
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
