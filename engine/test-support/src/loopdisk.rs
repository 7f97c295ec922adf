//! Disks that misbehave in the real kernel, for tests that run as root: loop devices (raw, or
//! ext4 with a chosen sector size, mounted), and blk-throttle cgroups that slow a device's reads
//! down to HDD speed or to a stuck 1 byte/s.
//!
//! Throttling uses the cgroup-v1 `blkio` controller (`blkio.throttle.read_*_device`, single
//! threads moved through `tasks`); when only cgroup v2 offers an `io` controller it uses `io.max`
//! (`riops=`, `rbps=`) with the same meaning, but cgroup v2 cannot hold one thread of a process
//! in a cgroup with the `io` controller, so there the whole process is moved (`cgroup.procs`,
//! moved back afterwards).
//!
//! A [`Lab`] makes everything under one name, `<prefix>-<pid>-<tag>`, and removes it in `Drop`,
//! also when the test panics: first the cgroup (lifting its rules releases the reads it holds,
//! so threads of a failed test can finish and close their files), then mounts, loop devices and
//! the images it made. [`clean_stale`] removes what a crashed earlier run left (by the prefix),
//! [`leftovers`] lists what is still there. `scripts/lib/loopdisk.sh` is the same for the
//! benchmark scripts.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::wait_until_every;

/// Runs a program; its trimmed stdout, or an error naming the command and its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
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

/// A path made here as a `&str` (for command lines).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("paths made here are UTF-8")
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether loop devices can be made here (root, `/dev/loop-control`, `losetup`); the reason
/// when not.
pub fn loop_devices_usable() -> Result<(), String> {
    if effective_uid() != Some(0) {
        return Err("needs root (loop devices, mount, cgroups)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control (kernel without loop devices)".into());
    }
    sh("losetup", &["--help"]).map(|_| ()).map_err(|e| format!("no usable losetup: {e}"))
}

/// Whether [`Lab::loop_disk`] works here (beyond [`loop_devices_usable`]): `losetup
/// --sector-size`, `mkfs.ext4`, `mount`, ext4 in the kernel; the reason when not.
pub fn ext4_loop_disks_usable() -> Result<(), String> {
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
    Ok(())
}

/// The calling thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
pub fn current_tid() -> std::io::Result<u32> {
    let link = fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|t| t.to_str())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("/proc/thread-self -> {}", link.display())))
}

// ---------------------------------------------------------------------------------------------
// Mounts and loop devices: finding and removing them
// ---------------------------------------------------------------------------------------------

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The mounts this process sees.
pub fn mounts() -> Vec<MountEntry> {
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

pub fn is_mounted(point: &Path) -> bool {
    mounts().iter().any(|m| m.point == point)
}

/// Unmounts, retrying for 3 s while busy (a thread of a failed test may still hold files for
/// a moment), then detaches lazily. `Ok(true)` when it had to detach lazily.
pub fn unmount(point: &Path) -> Result<bool, String> {
    let mut last = String::new();
    let retry = Duration::from_millis(100);
    let done = wait_until_every(Duration::from_secs(3), retry, || {
        match sh("umount", &[path_str(point)]) {
            Ok(_) => true,
            Err(_) if !is_mounted(point) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    if done {
        return Ok(false);
    }
    sh("umount", &["-l", path_str(point)])
        .map(|_| true)
        .map_err(|e| format!("{last}; lazy unmount: {e}"))
}

/// Loop devices whose backing file lies under `dir`: (`/dev/loopN`, backing file).
pub fn loops_backed_under(dir: &Path) -> Vec<(PathBuf, String)> {
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
pub fn detach(dev: &Path, dir: &Path) -> Result<(), String> {
    if loops_backed_under(dir).iter().any(|(d, _)| d == dev) {
        sh("losetup", &["-d", path_str(dev)]).map(|_| ())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// cgroups: finding and removing them
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgVersion {
    /// cgroup v1 `blkio`: throttle files per device, single threads through `tasks`.
    V1,
    /// cgroup v2 `io`: `io.max`, whole processes through `cgroup.procs`.
    V2,
}

impl CgVersion {
    /// The file that lists (and takes) a cgroup's members.
    pub fn members_file(self) -> &'static str {
        match self {
            CgVersion::V1 => "tasks",
            CgVersion::V2 => "cgroup.procs",
        }
    }
}

/// A hierarchy where blk-throttle cgroups can live.
#[derive(Debug, Clone)]
pub struct CgRoot {
    pub version: CgVersion,
    pub root: PathBuf,
}

/// Every hierarchy where blk-throttle cgroups could live (for stale cleanup).
pub fn cgroup_roots() -> Vec<CgRoot> {
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
pub fn throttle_root() -> Result<CgRoot, String> {
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

/// Lifts every throttle rule of a cgroup (releasing reads held by it), moves its members to
/// `home`, removes it (retrying for 2 s while members are still leaving). Returns the problems
/// met.
pub fn release_cgroup(version: CgVersion, dir: &Path, home: &Path) -> Vec<String> {
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
    let members = version.members_file();
    let mut last = String::new();
    let removed = wait_until_every(Duration::from_secs(2), Duration::from_millis(20), || {
        let ids = fs::read_to_string(dir.join(members)).unwrap_or_default();
        for id in ids.split_whitespace() {
            // A thread may end meanwhile (ESRCH): nothing to move then.
            let _ = fs::write(home.join(members), id);
        }
        match fs::remove_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    if !removed {
        problems.push(format!("cgroup {} not removed: {last}", dir.display()));
    }
    problems
}

/// Removes what an earlier (crashed) run left: cgroups named `prefix*`, mounts under `dir`,
/// loop devices backed by files under `dir`, the files in `dir`. Says what it removed.
pub fn clean_stale(prefix: &str, dir: &Path) {
    let mut cleaned = Vec::new();
    for root in cgroup_roots() {
        let Ok(entries) = fs::read_dir(&root.root) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) && entry.path().is_dir() {
                let problems = release_cgroup(root.version, &entry.path(), &root.root);
                cleaned.push(format!("cgroup {} {problems:?}", entry.path().display()));
            }
        }
    }
    let mut stale_mounts: Vec<PathBuf> =
        mounts().into_iter().map(|m| m.point).filter(|p| p.starts_with(dir)).collect();
    stale_mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in stale_mounts {
        let outcome = unmount(&point);
        cleaned.push(format!("mount {} {outcome:?}", point.display()));
    }
    for (dev, backing) in loops_backed_under(dir) {
        let outcome = sh("losetup", &["-d", path_str(&dev)]);
        cleaned.push(format!("loop {} ({backing}) {outcome:?}", dev.display()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            cleaned.push(format!("file {}", p.display()));
        }
    }
    for c in cleaned {
        eprintln!("{prefix}: removed stale {c}");
    }
}

/// Anything of a prefix still present: cgroups named `prefix*`, mounts, loop devices and files
/// under `dir` (after a [`Lab`] is dropped there must be none).
pub fn leftovers(prefix: &str, dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    for root in cgroup_roots() {
        if let Ok(entries) = fs::read_dir(&root.root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    left.push(format!("cgroup {}", entry.path().display()));
                }
            }
        }
    }
    for m in mounts() {
        if m.point.starts_with(dir) {
            left.push(format!("mount {}", m.point.display()));
        }
    }
    for (dev, backing) in loops_backed_under(dir) {
        left.push(format!("loop {} ({backing})", dev.display()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            left.push(format!("file {}", entry.path().display()));
        }
    }
    left
}

// ---------------------------------------------------------------------------------------------
// The guard: loop disks and a cgroup, removed in Drop
// ---------------------------------------------------------------------------------------------

/// An attached loop device; with [`Lab::loop_disk`], mounted and holding plots.
#[derive(Debug, Clone)]
pub struct LoopDisk {
    pub dev: PathBuf,
    pub major: u32,
    pub minor: u32,
    /// The plots copied onto it, in the order given (none for a raw device).
    pub plots: Vec<PathBuf>,
}

impl LoopDisk {
    pub fn devno(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    pub fn sysfs_name(&self) -> String {
        self.dev.file_name().expect("/dev/loopN").to_string_lossy().to_string()
    }
}

/// What the guard made, recorded step by step so a failure half-way is cleaned too.
struct LoopState {
    image: PathBuf,
    /// Made by the guard (removed in `Drop`), not the caller's file.
    image_made: bool,
    dev: Option<PathBuf>,
    mount_point: Option<PathBuf>,
    mounted: bool,
}

/// Throttle rule for one device.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    ReadIops(u64),
    ReadBps(u64),
    Unlimited,
}

/// A blk-throttle cgroup made by a [`Lab`].
pub struct Cgroup {
    version: CgVersion,
    dir: PathBuf,
    /// Where members go back to (v1: the root; v2: the test process's own cgroup).
    home: PathBuf,
}

impl Cgroup {
    pub fn version(&self) -> CgVersion {
        self.version
    }

    /// Sets the rule for device `(major, minor)`; panics if the kernel refuses it.
    pub fn set(&self, (major, minor): (u32, u32), rule: Rule) {
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

    pub fn joiner(&self) -> Joiner {
        Joiner { version: self.version, dir: self.dir.clone() }
    }

    /// Thread ids (v1) or process ids (v2) in the cgroup.
    pub fn members(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join(self.version.members_file()))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|id| id.parse().ok())
            .collect()
    }
}

/// Moves the calling thread into a cgroup (it can be sent to the thread that must join).
#[derive(Debug, Clone)]
pub struct Joiner {
    version: CgVersion,
    dir: PathBuf,
}

impl Joiner {
    /// Returns the id written: the thread's (v1) or the process's (v2).
    pub fn join(&self) -> std::io::Result<u32> {
        let id = match self.version {
            CgVersion::V1 => current_tid()?,
            CgVersion::V2 => std::process::id(),
        };
        fs::write(self.dir.join(self.version.members_file()), id.to_string())?;
        Ok(id)
    }
}

/// Loop devices, their mounts and a cgroup, all removed in `Drop` (also during a panic). A
/// cleanup that fails panics (or, during a panic, says so on stderr).
pub struct Lab {
    prefix: String,
    name: String,
    dir: PathBuf,
    disks: Vec<LoopState>,
    cgroup: Option<Cgroup>,
}

impl Lab {
    /// Everything named `<prefix>-<pid>-<tag>`; images and mount points in `dir` (made if
    /// missing).
    pub fn new(prefix: &str, tag: &str, dir: &Path) -> Lab {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let dir = dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Lab {
            prefix: prefix.to_string(),
            name: format!("{prefix}-{}-{tag}", std::process::id()),
            dir,
            disks: Vec::new(),
            cgroup: None,
        }
    }

    /// Attaches `image` (a file under the lab's folder, which stays the caller's) as a loop
    /// device with `losetup --find --show <options>`, detached in `Drop`.
    pub fn attach(&mut self, image: &Path, options: &[&str]) -> Result<LoopDisk, String> {
        self.disks.push(LoopState {
            image: image.to_path_buf(),
            image_made: false,
            dev: None,
            mount_point: None,
            mounted: false,
        });
        self.attach_last(options)
    }

    fn attach_last(&mut self, options: &[&str]) -> Result<LoopDisk, String> {
        let state = self.disks.last_mut().expect("a disk recorded");
        let mut args = vec!["--find", "--show"];
        args.extend_from_slice(options);
        args.push(path_str(&state.image));
        let dev = PathBuf::from(sh("losetup", &args)?);
        state.dev = Some(dev.clone());
        let name =
            dev.file_name().ok_or("losetup printed no device")?.to_string_lossy().to_string();
        let numbers = fs::read_to_string(format!("/sys/block/{name}/dev"))
            .map_err(|e| format!("/sys/block/{name}/dev: {e}"))?;
        let (major, minor) = numbers
            .trim()
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| format!("/sys/block/{name}/dev: {numbers:?}"))?;
        Ok(LoopDisk { dev, major, minor, plots: Vec::new() })
    }

    /// A sparse image of `image_bytes`, attached as a loop device with `sector_bytes` logical
    /// sectors, formatted ext4, mounted, with `plots` copied onto it and synced.
    pub fn loop_disk(
        &mut self,
        tag: &str,
        image_bytes: u64,
        sector_bytes: u32,
        plots: &[PathBuf],
    ) -> Result<LoopDisk, String> {
        let base = format!("{}-{tag}", self.name);
        let image = self.dir.join(format!("{base}.img"));
        let mount_point = self.dir.join(format!("{base}.mnt"));
        self.disks.push(LoopState {
            image: image.clone(),
            image_made: true,
            dev: None,
            mount_point: Some(mount_point.clone()),
            mounted: false,
        });
        File::create(&image)
            .and_then(|f| f.set_len(image_bytes))
            .map_err(|e| format!("{}: {e}", image.display()))?;
        let mut disk = self.attach_last(&["--sector-size", &sector_bytes.to_string()])?;
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                path_str(&disk.dev),
            ],
        )?;
        fs::create_dir_all(&mount_point).map_err(|e| format!("{}: {e}", mount_point.display()))?;
        sh("mount", &["-t", "ext4", "-o", "noatime", path_str(&disk.dev), path_str(&mount_point)])?;
        self.disks.last_mut().expect("a disk recorded").mounted = true;
        for plot in plots {
            let to = mount_point.join(plot.file_name().expect("plot file name"));
            fs::copy(plot, &to).map_err(|e| format!("copy to {}: {e}", to.display()))?;
            File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("{}: {e}", to.display()))?;
            disk.plots.push(to);
        }
        Ok(disk)
    }

    /// The lab's cgroup under `root` (one per lab), removed in `Drop` or by
    /// [`Lab::release_cgroup`].
    pub fn make_cgroup(&mut self, root: &CgRoot) -> Result<&Cgroup, String> {
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

    /// Lifts the cgroup's rules (the reads it holds complete), moves its members back and
    /// removes it, before the rest of the lab; panics if that fails.
    pub fn release_cgroup(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let problems = release_cgroup(cg.version, &cg.dir, &cg.home);
            assert!(problems.is_empty(), "{}: cgroup release failed: {problems:?}", self.prefix);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        // First the cgroup: lifting its rules releases reads held in the kernel, so threads of
        // a failed test can finish and close their files.
        if let Some(cg) = self.cgroup.take() {
            problems.extend(release_cgroup(cg.version, &cg.dir, &cg.home));
        }
        let dir = self.dir.clone();
        for disk in self.disks.drain(..).rev() {
            if let Some(mount_point) = &disk.mount_point {
                if disk.mounted {
                    match unmount(mount_point) {
                        Ok(false) => {}
                        Ok(true) => eprintln!(
                            "{}: {} was busy, detached lazily",
                            self.prefix,
                            mount_point.display()
                        ),
                        Err(e) => problems.push(e),
                    }
                }
                let _ = fs::remove_dir(mount_point);
            }
            if let Some(dev) = &disk.dev {
                if let Err(e) = detach(dev, &dir) {
                    problems.push(e);
                }
            }
            if disk.image_made {
                if let Err(e) = fs::remove_file(&disk.image) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        problems.push(format!("{}: {e}", disk.image.display()));
                    }
                }
            }
        }
        if problems.is_empty() {
            return;
        }
        let report = problems.join("; ");
        if std::thread::panicking() {
            eprintln!("{}: cleanup problems: {report}", self.prefix);
        } else {
            panic!("{}: cleanup failed: {report}", self.prefix);
        }
    }
}
