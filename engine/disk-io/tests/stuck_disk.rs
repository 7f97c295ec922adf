//! A stuck disk on the real kernel: a loop device (`losetup --direct-io=on`) whose reads this
//! thread's cgroup-v1 blkio group throttles to 1 byte/s (`blkio.throttle.read_bps_device`). A
//! 4 KiB read is then held in the block layer until the limit is lifted (a limit of 0 releases
//! it), and cannot be cancelled meanwhile.
//!
//! Checks: the caller stops waiting (timeout) while the read stays owned by the backend; other
//! files keep working; `close` holds the fd; `drop` gives up after `drop_wait_max` and leaks the
//! buffer instead of freeing memory the kernel will write later; the late write lands harmlessly.
//!
//! Needs root, `/dev/loop-control`, `losetup` and cgroup-v1 blkio; skipped otherwise (a failure
//! under `HARVESTER_REQUIRE_FACILITIES=1`, as in CI). The loop device and the cgroup are a
//! `test_support::loopdisk::Lab`'s, removed by it also when the test fails.

mod common;

use std::time::{Duration, Instant};

use common::{finish_all, scratch_dir, TestFile};
use disk_io::uring::{leaked_buffer_bytes, UringBackend, UringConfig};
use disk_io::{Backend, DirectIo, ReadOp};
use test_support::loopdisk::{self, CgRoot, CgVersion, Lab, LoopDisk, Rule};

/// Prefix of the loop device's cgroup (`<prefix>-<pid>-<tag>`).
const PREFIX: &str = "disk-io-stuck";

/// What the test needs; the reason when something is missing (cgroup v1 only: the stuck read
/// must be held for this thread alone).
fn requirements() -> Result<CgRoot, String> {
    loopdisk::loop_devices_usable()?;
    match loopdisk::throttle_root()? {
        root if root.version == CgVersion::V1 => Ok(root),
        root => Err(format!("no cgroup-v1 blkio (only {})", root.root.display())),
    }
}

#[test]
fn a_stuck_read_is_owned_until_its_cqe_and_drop_leaks_it() {
    let cg_root = match requirements() {
        Ok(root) => root,
        Err(why) => {
            test_support::facility_missing(
                "stuck_disk",
                &format!("needs root, loop devices and cgroup-v1 blkio: {why}"),
            );
            return;
        }
    };
    let dir = scratch_dir();
    let healthy = TestFile::new(&dir, "stuck-healthy", 1 << 20, 30);
    let backing = TestFile::new(&dir, "stuck-backing", 16 << 20, 31);
    // Declared after the files, so dropped (the device detached) before them.
    let mut lab = Lab::new(PREFIX, "stuck", &dir);
    let device = match lab.attach(&backing.path, &["--direct-io=on"]) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("losetup: {e}");
            test_support::facility_missing("stuck_disk", "no free loop device");
            return;
        }
    };
    let mut config = UringConfig::new(8);
    config.drop_wait_max = Duration::from_millis(500);
    let mut backend = UringBackend::with_config(config).expect("ring");
    let stuck = backend.open(&device.dev, DirectIo::Prefer).expect("open loop device");
    let good = backend.open(&healthy.path, DirectIo::Prefer).expect("open");
    assert!(stuck.direct, "{stuck:?}");

    // This thread in a blkio cgroup that throttles the loop device to 1 byte/s.
    let Ok(cgroup) = lab.make_cgroup(&cg_root) else {
        test_support::facility_missing("stuck_disk", "cannot create a blkio cgroup");
        return;
    };
    cgroup.set(device.devno(), Rule::ReadBps(1));
    cgroup.joiner().join().expect("this thread joins the cgroup");
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
    let reads_before = reads_completed(&device);
    lab.release_cgroup(); // lifts the limit (releasing the held read), this thread back home
    test_support::wait_for(
        &format!("the held read to complete on {}", device.dev.display()),
        Duration::from_secs(10),
        || reads_completed(&device) > reads_before,
    );
    assert!(canaries.iter().all(|c| c.iter().all(|&b| b == 0x5A)));

    // The disk works again for a new backend.
    let mut backend = UringBackend::new(4).expect("ring");
    let again = backend.open(&device.dev, DirectIo::Prefer).expect("open");
    backend.push(ReadOp { tag: 3, file: again.id, offset: 4096, len: 100 }).expect("room");
    let done = finish_all(&mut backend);
    let want = &backing.bytes[4096..4196];
    assert_eq!(done[0].result.as_ref().expect("read").bytes(), want);
}

/// Reads the device has completed (`/sys/block/loopN/stat`, field 1): a read held by the
/// throttle counts once it is done.
fn reads_completed(device: &LoopDisk) -> u64 {
    let path = format!("/sys/block/{}/stat", device.sysfs_name());
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("reads completed")
}
