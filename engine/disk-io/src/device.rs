//! The disk behind a file: which physical disk it lives on (one shard per disk), and the queue
//! facts that size its reads and its queue depth. Everything is read from `/sys`.
//!
//! - The file's `st_dev` names the block device of its file system: `/sys/dev/block/MAJ:MIN`
//!   links to its directory under `/sys/devices`.
//! - A partition (its directory has a `partition` file) maps to its parent disk, so the
//!   partitions of one disk group together. A stacked device (dm, md) over exactly one device
//!   (its `slaves/`) maps to that device, then on to its disk. Loop devices stay disks of their
//!   own (their backing file is not a slave), and so do stacks over several devices.
//! - File systems without a block device (`st_dev` major 0: tmpfs, overlay, NFS, FUSE, btrfs
//!   subvolumes) are looked up in `/proc/self/mountinfo`: if the mount source is a block device
//!   node, that device is used. Otherwise the disk is synthetic: key `dev-MAJ:MIN`, 4096-byte
//!   blocks, depth 32.
//!
//! The key is the kernel name of the whole disk (`vda`, `nvme0n1`, `loop0`, `dm-1`). It is
//! stable while the machine runs, which is what grouping needs; it is not a persistent id.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Block size assumed when `/sys` does not say.
pub const LOGICAL_BLOCK_BYTES_DEFAULT: u32 = 4096;
/// Queue depth assumed when `/sys` does not say (bio-based devices, no block device).
pub const QUEUE_DEPTH_DEFAULT: u32 = 32;
/// Largest single request assumed when `/sys` does not say (`max_sectors_kb` default).
pub const REQUEST_BYTES_DEFAULT: u32 = 128 * 1024;

/// Stacked and partition links followed from the file system's device down to its disk.
const DEVICE_HOPS_MAX: usize = 8;
/// Lines of `/proc/self/mountinfo` looked at.
const MOUNTINFO_LINES_MAX: usize = 100_000;

/// The disk a file lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Grouping key: kernel name of the whole disk, or `dev-MAJ:MIN` without a block device.
    pub key: String,
    /// Kernel name of the block device the file system sits on (`vda1`, `dm-0`, `vda`); `None`
    /// when there is none and the values below are the defaults.
    pub device: Option<String>,
    /// The file system's device number (`st_dev`).
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `queue/logical_block_size`: O_DIRECT offsets and lengths are multiples of this.
    pub logical_block_bytes: u32,
    /// `queue/nr_requests` of the disk: never keep more reads than this in flight.
    pub queue_depth_max: u32,
    /// `queue/max_sectors_kb` × 1024: the largest single request the disk takes.
    pub request_bytes_max: u32,
    /// `queue/rotational` (note: virtio disks report 1 by default).
    pub rotational: bool,
}

/// The disk of the file system holding `path`.
pub fn disk_of(path: &Path) -> io::Result<Disk> {
    let dev = fs::metadata(path)?.dev();
    Ok(disk_of_dev(libc::major(dev), libc::minor(dev)))
}

/// The disk of device number `major:minor` (a file system's `st_dev`).
pub fn disk_of_dev(major: u32, minor: u32) -> Disk {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    disk_in(Path::new("/sys"), &mountinfo, major, minor)
}

/// [`disk_of_dev`] against a given sysfs root and mountinfo text.
fn disk_in(sys: &Path, mountinfo: &str, major: u32, minor: u32) -> Disk {
    let device_dir = device_dir(sys, major, minor).or_else(|| {
        let (source_major, source_minor) = mount_source_device(mountinfo, major, minor)?;
        device_dir(sys, source_major, source_minor)
    });
    let Some(device_dir) = device_dir else {
        return Disk {
            key: format!("dev-{major}:{minor}"),
            device: None,
            dev_major: major,
            dev_minor: minor,
            logical_block_bytes: LOGICAL_BLOCK_BYTES_DEFAULT,
            queue_depth_max: QUEUE_DEPTH_DEFAULT,
            request_bytes_max: REQUEST_BYTES_DEFAULT,
            rotational: false,
        };
    };
    let disk_dir = whole_disk(&device_dir);
    let queue = |dir: &Path, name: &str| read_u32(&dir.join("queue").join(name));
    let block = |dir: &Path| queue(dir, "logical_block_size").filter(|b| valid_block_bytes(*b));
    // The strictest of the two: a stacked device's block size is at least its disk's.
    let logical_block_bytes = match (block(&device_dir), block(&disk_dir)) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b).unwrap_or(LOGICAL_BLOCK_BYTES_DEFAULT),
    };
    let queue_depth_max = queue(&disk_dir, "nr_requests")
        .or_else(|| queue(&device_dir, "nr_requests"))
        .filter(|d| *d > 0)
        .unwrap_or(QUEUE_DEPTH_DEFAULT);
    let request_bytes_max = queue(&disk_dir, "max_sectors_kb")
        .filter(|kb| *kb > 0)
        .map_or(REQUEST_BYTES_DEFAULT, |kb| kb.saturating_mul(1024));
    Disk {
        key: dir_name(&disk_dir),
        device: Some(dir_name(&device_dir)),
        dev_major: major,
        dev_minor: minor,
        logical_block_bytes,
        queue_depth_max,
        request_bytes_max,
        rotational: queue(&disk_dir, "rotational") == Some(1),
    }
}

/// `/sys/devices/...` directory of block device `major:minor`, if there is one.
fn device_dir(sys: &Path, major: u32, minor: u32) -> Option<PathBuf> {
    if major == 0 {
        return None; // anonymous device numbers never name a block device
    }
    fs::canonicalize(sys.join("dev/block").join(format!("{major}:{minor}"))).ok()
}

/// Follows partition → disk and single-slave stacked device → slave, a bounded number of hops.
fn whole_disk(device_dir: &Path) -> PathBuf {
    let mut dir = device_dir.to_path_buf();
    for _ in 0..DEVICE_HOPS_MAX {
        if dir.join("partition").is_file() {
            match dir.parent() {
                Some(parent) => {
                    dir = parent.to_path_buf();
                    continue;
                }
                None => break,
            }
        }
        let slaves: Vec<PathBuf> = match fs::read_dir(dir.join("slaves")) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).take(2).collect(),
            Err(_) => Vec::new(),
        };
        match slaves.as_slice() {
            [only] => match fs::canonicalize(only) {
                Ok(slave) => dir = slave,
                Err(_) => break,
            },
            _ => break,
        }
    }
    dir
}

/// The block device number of the mount source of file system `major:minor`, if the source
/// is a block device node (btrfs and other file systems with anonymous `st_dev`).
fn mount_source_device(mountinfo: &str, major: u32, minor: u32) -> Option<(u32, u32)> {
    let wanted = format!("{major}:{minor}");
    for line in mountinfo.lines().take(MOUNTINFO_LINES_MAX) {
        // "36 35 98:0 /root /mnt opts [optional...] - fstype source superopts"
        let mut fields = line.split(' ');
        if fields.nth(2) != Some(wanted.as_str()) {
            continue;
        }
        let Some((_, after)) = line.split_once(" - ") else { continue };
        let Some(source) = after.split(' ').nth(1) else { continue };
        if !source.starts_with('/') {
            continue;
        }
        let Ok(meta) = fs::metadata(source) else { continue };
        if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            return Some((libc::major(rdev), libc::minor(rdev)));
        }
    }
    None
}

fn read_u32(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn valid_block_bytes(bytes: u32) -> bool {
    bytes.is_power_of_two() && (512..=65536).contains(&bytes)
}

fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The real disk of this crate's sources: whatever it is, the values are the disk's sysfs.
    #[test]
    fn the_source_tree_disk_matches_sysfs() {
        let disk = disk_of(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("stat");
        eprintln!("source tree: {disk:?}");
        let Some(device) = &disk.device else {
            assert!(disk.key.starts_with("dev-"), "{disk:?}");
            return;
        };
        assert!(!device.is_empty());
        let queue = Path::new("/sys/block").join(&disk.key).join("queue");
        assert!(queue.is_dir(), "{} is a disk", disk.key);
        let lbs = read_u32(&queue.join("logical_block_size")).expect("logical_block_size");
        assert!(disk.logical_block_bytes >= lbs);
        assert!(valid_block_bytes(disk.logical_block_bytes));
        if let Some(nr) = read_u32(&queue.join("nr_requests")) {
            assert_eq!(disk.queue_depth_max, nr);
        }
        let rotational = read_u32(&queue.join("rotational")) == Some(1);
        assert_eq!(disk.rotational, rotational);
    }

    #[test]
    fn tmpfs_has_no_block_device() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let disk = disk_of(shm).expect("stat /dev/shm");
        eprintln!("/dev/shm: {disk:?}");
        assert_eq!(disk.dev_major, 0, "/dev/shm is tmpfs here");
        assert_eq!(disk.device, None);
        assert_eq!(disk.key, format!("dev-0:{}", disk.dev_minor));
        assert_eq!(disk.logical_block_bytes, LOGICAL_BLOCK_BYTES_DEFAULT);
        assert_eq!(disk.queue_depth_max, QUEUE_DEPTH_DEFAULT);
    }

    #[test]
    fn every_real_block_device_resolves_to_itself() {
        let Ok(entries) = fs::read_dir("/sys/block") else { return };
        for entry in entries {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            let dev = fs::read_to_string(format!("/sys/block/{name}/dev")).expect("dev");
            let (major, minor) = dev.trim().split_once(':').expect("MAJ:MIN");
            let disk = disk_in(
                Path::new("/sys"),
                "",
                major.parse().unwrap_or(0),
                minor.parse().unwrap_or(0),
            );
            eprintln!("{name}: {disk:?}");
            assert_eq!(disk.device.as_deref(), Some(name.as_str()));
            // A whole disk with slaves (dm, md) maps onward; everything else is its own key.
            if !Path::new(&format!("/sys/block/{name}/slaves"))
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
            {
                assert_eq!(disk.key, name);
            }
        }
    }

    #[test]
    fn mount_source_gives_the_device_of_anonymous_file_systems() {
        let root = fs::metadata("/").expect("stat /");
        let (major, minor) = (libc::major(root.dev()), libc::minor(root.dev()));
        let Some(line) = fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .find(|l| l.split(' ').nth(2) == Some(&format!("{major}:{minor}")) && l.contains(" - "))
            .map(str::to_owned)
        else {
            return;
        };
        let source = line.split_once(" - ").and_then(|(_, a)| a.split(' ').nth(1)).unwrap_or("");
        if !fs::metadata(source).is_ok_and(|m| m.file_type().is_block_device()) {
            return; // the root is not on a plain device node here
        }
        // Pretend the root file system had an anonymous device number, as btrfs does.
        let fake = line.replacen(&format!(" {major}:{minor} "), " 0:4242 ", 1);
        assert_eq!(mount_source_device(&fake, 0, 4242), mount_source_device(&line, major, minor));
        let via_source = disk_in(Path::new("/sys"), &fake, 0, 4242);
        let direct = disk_in(Path::new("/sys"), "", major, minor);
        assert_eq!(via_source.key, direct.key);
        assert_eq!(via_source.logical_block_bytes, direct.logical_block_bytes);
        assert_eq!(mount_source_device("1 2 0:4242 / / rw - tmpfs tmpfs rw", 0, 4242), None);
    }

    /// A sysfs tree laid out like the kernel's, with partitions, nvme, dm and loop.
    struct FakeSys {
        root: PathBuf,
    }

    impl FakeSys {
        fn new(name: &str) -> FakeSys {
            let root =
                std::env::temp_dir().join(format!("disk-io-sys-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("dev/block")).expect("mkdir");
            FakeSys { root }
        }

        /// A disk at `devices/<bus>/block/<name>` with queue attributes.
        fn disk(
            &self,
            bus: &str,
            name: &str,
            dev: &str,
            lbs: u32,
            nr: Option<u32>,
            rot: u32,
        ) -> PathBuf {
            let dir = self.root.join("devices").join(bus).join("block").join(name);
            fs::create_dir_all(dir.join("queue")).expect("mkdir");
            fs::write(dir.join("queue/logical_block_size"), format!("{lbs}\n")).expect("write");
            if let Some(nr) = nr {
                fs::write(dir.join("queue/nr_requests"), format!("{nr}\n")).expect("write");
            }
            fs::write(dir.join("queue/rotational"), format!("{rot}\n")).expect("write");
            fs::write(dir.join("queue/max_sectors_kb"), "1280\n").expect("write");
            self.link(dev, &dir);
            dir
        }

        fn partition(&self, disk: &Path, name: &str, dev: &str) -> PathBuf {
            let dir = disk.join(name);
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("partition"), "1\n").expect("write");
            self.link(dev, &dir);
            dir
        }

        fn slave(&self, upper: &Path, lower: &Path) {
            fs::create_dir_all(upper.join("slaves")).expect("mkdir");
            let name = lower.file_name().expect("name");
            symlink(lower, upper.join("slaves").join(name)).expect("symlink");
        }

        fn link(&self, dev: &str, dir: &Path) {
            symlink(dir, self.root.join("dev/block").join(dev)).expect("symlink");
        }

        fn disk_of(&self, dev: &str) -> Disk {
            let (major, minor) = dev.split_once(':').expect("MAJ:MIN");
            disk_in(&self.root, "", major.parse().expect("major"), minor.parse().expect("minor"))
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn partitions_group_with_their_disk_and_stacks_follow_one_slave() {
        let sys = FakeSys::new("layout");
        let sda = sys.disk("pci0/host0/target0/0:0:0:0", "sda", "8:0", 512, Some(64), 1);
        let sda1 = sys.partition(&sda, "sda1", "8:1");
        let sda2 = sys.partition(&sda, "sda2", "8:2");
        let nvme = sys.disk("pci0/nvme/nvme0", "nvme0n1", "259:0", 4096, Some(1023), 0);
        let nvme_p1 = sys.partition(&nvme, "nvme0n1p1", "259:1");
        sys.disk("virtual", "loop3", "7:3", 512, Some(128), 0);
        let crypt = sys.disk("virtual", "dm-0", "252:0", 4096, None, 0);
        sys.slave(&crypt, &sda2);
        let span = sys.disk("virtual", "dm-1", "252:1", 512, None, 0);
        sys.slave(&span, &sda1);
        sys.slave(&span, &nvme_p1);
        sys.disk("virtual", "zram0", "251:0", 4096, None, 0);

        let a1 = sys.disk_of("8:1");
        assert_eq!((a1.key.as_str(), a1.device.as_deref()), ("sda", Some("sda1")));
        assert_eq!((a1.logical_block_bytes, a1.queue_depth_max, a1.rotational), (512, 64, true));
        assert_eq!(a1.request_bytes_max, 1280 * 1024);
        assert_eq!(sys.disk_of("8:2").key, "sda");
        assert_eq!(sys.disk_of("8:0").key, "sda");
        let n = sys.disk_of("259:1");
        assert_eq!(
            (n.key.as_str(), n.logical_block_bytes, n.queue_depth_max),
            ("nvme0n1", 4096, 1023)
        );
        assert_eq!(sys.disk_of("7:3").key, "loop3");
        // dm-crypt over sda2: grouped with sda; its 4096-byte blocks win over sda's 512.
        let c = sys.disk_of("252:0");
        assert_eq!((c.key.as_str(), c.device.as_deref()), ("sda", Some("dm-0")));
        assert_eq!((c.logical_block_bytes, c.queue_depth_max), (4096, 64));
        // A stack over two disks is a disk of its own; bio-based, so the default depth.
        let s = sys.disk_of("252:1");
        assert_eq!((s.key.as_str(), s.queue_depth_max), ("dm-1", QUEUE_DEPTH_DEFAULT));
        assert_eq!(sys.disk_of("251:0").queue_depth_max, QUEUE_DEPTH_DEFAULT);
        // Unknown numbers are synthetic disks.
        let u = sys.disk_of("8:9");
        assert_eq!((u.key.as_str(), u.device.clone()), ("dev-8:9", None));
    }

    #[test]
    fn garbage_attributes_fall_back_to_defaults() {
        let sys = FakeSys::new("garbage");
        let d = sys.disk("virtual", "odd0", "240:0", 3000, Some(0), 7);
        fs::write(d.join("queue/max_sectors_kb"), "lots\n").expect("write");
        let disk = sys.disk_of("240:0");
        assert_eq!(disk.logical_block_bytes, LOGICAL_BLOCK_BYTES_DEFAULT);
        assert_eq!(disk.queue_depth_max, QUEUE_DEPTH_DEFAULT);
        assert_eq!(disk.request_bytes_max, REQUEST_BYTES_DEFAULT);
        assert!(!disk.rotational);
    }
}
