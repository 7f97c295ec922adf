//! A stuck disk on the real kernel: a loop device (`losetup --direct-io=on`) whose reads this
//! thread's cgroup-v1 blkio group throttles to 1 byte/s (`blkio.throttle.read_bps_device`). A
//! 4 KiB read is then held in the block layer until the limit is lifted (a limit of 0 releases
//! it), and cannot be cancelled meanwhile.
//!
//! Checks: the caller stops waiting (timeout) while the read stays owned by the backend; other
//! files keep working; `close` holds the fd; `drop` gives up after `drop_wait_max` and leaks the
//! buffer instead of freeing memory the kernel will write later; the late write lands harmlessly.
//!
//! Needs root, `/dev/loop-control`, `losetup` and `/sys/fs/cgroup/blkio`; skipped otherwise (a failure under
//! `HARVESTER_REQUIRE_FACILITIES=1`, as in CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{finish_all, scratch_dir, TestFile};
use disk_io::uring::{leaked_buffer_bytes, UringBackend, UringConfig};
use disk_io::{Backend, DirectIo, ReadOp};

const BLKIO: &str = "/sys/fs/cgroup/blkio";

struct LoopDevice {
    device: PathBuf,
    major_minor: String,
    _backing: TestFile,
}

impl LoopDevice {
    fn attach(backing: TestFile) -> Option<LoopDevice> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(&backing.path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("losetup: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let name = device.file_name()?.to_string_lossy().into_owned();
        let major_minor =
            std::fs::read_to_string(format!("/sys/block/{name}/dev")).ok()?.trim().to_owned();
        Some(LoopDevice { device, major_minor, _backing: backing })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// This thread in a blkio cgroup that throttles the loop device; undone on drop.
struct Throttle {
    dir: PathBuf,
    major_minor: String,
}

impl Throttle {
    fn stick(major_minor: &str) -> Option<Throttle> {
        let dir = Path::new(BLKIO).join(format!("disk-io-stuck-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let throttle = Throttle { dir, major_minor: major_minor.to_owned() };
        throttle.set_bps(1).ok()?;
        std::fs::write(throttle.dir.join("tasks"), thread_id()).ok()?;
        Some(throttle)
    }

    fn set_bps(&self, bps: u64) -> std::io::Result<()> {
        let rule = format!("{} {bps}", self.major_minor);
        std::fs::write(self.dir.join("blkio.throttle.read_bps_device"), rule)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let _ = self.set_bps(0); // releases held reads
        let _ = std::fs::write(Path::new(BLKIO).join("tasks"), thread_id());
        for _ in 0..200 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// The kernel id of this thread, from `/proc/thread-self` ("PID/task/TID").
fn thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name().expect("tid").to_string_lossy().into_owned()
}

fn available() -> bool {
    // Whether we may create a cgroup shows only when trying (`Throttle::stick`).
    Path::new("/dev/loop-control").exists()
        && Path::new(BLKIO).join("tasks").exists()
        && Command::new("losetup").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn a_stuck_read_is_owned_until_its_cqe_and_drop_leaks_it() {
    if !available() {
        test_support::facility_missing(
            "stuck_disk",
            "needs root, loop devices and cgroup-v1 blkio",
        );
        return;
    }
    let dir = scratch_dir();
    let healthy = TestFile::new(&dir, "stuck-healthy", 1 << 20, 30);
    let Some(device) = LoopDevice::attach(TestFile::new(&dir, "stuck-backing", 16 << 20, 31))
    else {
        test_support::facility_missing("stuck_disk", "no free loop device");
        return;
    };
    let mut config = UringConfig::new(8);
    config.drop_wait_max = Duration::from_millis(500);
    let mut backend = UringBackend::with_config(config).expect("ring");
    let stuck = backend.open(&device.device, DirectIo::Prefer).expect("open loop device");
    let good = backend.open(&healthy.path, DirectIo::Prefer).expect("open");
    assert!(stuck.direct, "{stuck:?}");

    let Some(throttle) = Throttle::stick(&device.major_minor) else {
        test_support::facility_missing("stuck_disk", "cannot create a blkio cgroup");
        return;
    };
    backend.push(ReadOp { tag: 1, file: stuck.id, offset: 1 << 20, len: 4096 }).expect("room");
    // The caller's deadline: it stops waiting, the backend keeps the read and its buffer.
    let started = Instant::now();
    for _ in 0..3 {
        backend.submit_and_wait(Some(Duration::from_millis(100))).expect("submit");
    }
    let mut out = Vec::new();
    backend.drain(&mut out);
    assert!(out.is_empty(), "the throttled read cannot finish: {out:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(backend.reads_in_table(), 1);

    // Another file (on another disk) still reads fine meanwhile.
    backend.push(ReadOp { tag: 2, file: good.id, offset: 1000, len: 5000 }).expect("room");
    for _ in 0..100 {
        backend.submit_and_wait(Some(Duration::from_millis(100))).expect("submit");
        backend.drain(&mut out);
        if !out.is_empty() {
            break;
        }
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].tag, 2);
    assert_eq!(out[0].result.as_ref().expect("read").bytes(), healthy.expected(1000, 5000));

    // Closing the stuck file keeps its fd until the read ends.
    backend.close(stuck.id);
    assert_eq!(backend.files_open(), 2);

    // Drop gives up after drop_wait_max and leaks the buffer (cancel cannot reach the read).
    let leaked_before = leaked_buffer_bytes();
    let dropping = Instant::now();
    drop(backend);
    let took = dropping.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "drop took {took:?}"
    );
    assert!(leaked_buffer_bytes() >= leaked_before + 4096);

    // Release the disk: the late read lands in the leaked buffer; allocations stay intact.
    let canaries: Vec<Vec<u8>> = (0..64).map(|_| vec![0x5Au8; 4096]).collect();
    drop(throttle);
    std::thread::sleep(Duration::from_millis(200));
    assert!(canaries.iter().all(|c| c.iter().all(|&b| b == 0x5A)));

    // The disk works again for a new backend.
    let mut backend = UringBackend::new(4).expect("ring");
    let again = backend.open(&device.device, DirectIo::Prefer).expect("open");
    backend.push(ReadOp { tag: 3, file: again.id, offset: 4096, len: 100 }).expect("room");
    let done = finish_all(&mut backend);
    let want = &device._backing.bytes[4096..4196];
    assert_eq!(done[0].result.as_ref().expect("read").bytes(), want);
}
