//! Both backends on the real kernel: random reads equal the file's bytes, with O_DIRECT and
//! buffered; the in-flight limit; O_DIRECT fallbacks; close and drop with reads in flight.
//!
//! io_uring is required: a kernel without it fails these tests loudly (they are never
//! `#[ignore]`d, so they cannot be forgotten).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{expect_bytes, finish_all, random_reads, run, scratch_dir, Rng, TestFile};
use disk_io::pread::PreadBackend;
use disk_io::uring::{RingFlag, UringBackend, UringConfig};
use disk_io::{device, Backend, DirectIo, FileId, IoError, ReadOp};

const FILE_BYTES: usize = 3 * 1024 * 1024 + 1234; // not a multiple of any block size

fn uring(reads_in_flight_max: usize) -> UringBackend {
    UringBackend::new(reads_in_flight_max).expect("io_uring is available on this kernel")
}

fn check_random_reads<B: Backend>(mut backend: B, direct: DirectIo, name: &str, seed: u64) {
    let dir = scratch_dir();
    let disk = device::disk_of(&dir).expect("stat scratch dir");
    let file = TestFile::new(&dir, name, FILE_BYTES, seed);
    let opened = backend.open(&file.path, direct).expect("open");
    assert_eq!(opened.len, FILE_BYTES as u64);
    match direct {
        DirectIo::Off => assert_eq!((opened.direct, opened.alignment), (false, 1)),
        DirectIo::Prefer if disk.device.is_some() => {
            // A real block device file system (ext4 on vda here) takes O_DIRECT.
            assert!(opened.direct, "{disk:?}");
            assert!(opened.alignment >= disk.logical_block_bytes.min(512));
            assert!(opened.alignment.is_power_of_two());
        }
        DirectIo::Prefer => {}
    }
    let mut rng = Rng(seed);
    let ops = random_reads(&mut rng, opened.id, FILE_BYTES as u64, 3000, 0);
    let stats = run(&mut backend, &ops, expect_bytes(&file));
    assert_eq!(stats.completions, ops.len());
    assert_eq!(backend.direct_fallbacks(), 0);
    eprintln!("{name}: {opened:?} {stats:?}");
    backend.close(opened.id);
}

#[test]
fn pread_direct_random_reads_equal_the_file() {
    check_random_reads(PreadBackend::new(64), DirectIo::Prefer, "pread-direct", 1);
}

#[test]
fn pread_buffered_random_reads_equal_the_file() {
    check_random_reads(PreadBackend::new(64), DirectIo::Off, "pread-buffered", 2);
}

#[test]
fn uring_direct_random_reads_equal_the_file() {
    check_random_reads(uring(64), DirectIo::Prefer, "uring-direct", 3);
}

#[test]
fn uring_buffered_random_reads_equal_the_file() {
    check_random_reads(uring(64), DirectIo::Off, "uring-buffered", 4);
}

#[test]
fn uring_with_one_read_in_flight() {
    check_random_reads(uring(1), DirectIo::Prefer, "uring-qd1", 5);
}

/// Many more reads than the limit: `push` says Full at the limit, never more in flight.
fn check_limit<B: Backend>(mut backend: B, name: &str) {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, name, FILE_BYTES, 7);
    let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
    let mut rng = Rng(8);
    let ops = random_reads(&mut rng, opened.id, FILE_BYTES as u64, 1000, 0);
    // All at once first: exactly `max` are taken.
    let max = backend.reads_in_flight_max();
    let taken = ops.iter().take_while(|op| backend.push(**op).is_ok()).count();
    assert_eq!(taken, max);
    assert_eq!(backend.in_flight(), max);
    let first = finish_all(&mut backend);
    assert_eq!(first.len(), max);
    let mut check = expect_bytes(&file);
    for c in &first {
        check(&ops[c.tag as usize], &c.result);
    }
    let stats = run(&mut backend, &ops[max..], expect_bytes(&file));
    eprintln!("{name}: {stats:?}");
    assert_eq!(stats.in_flight_peak, max);
    assert!(stats.fulls > 0);
}

#[test]
fn pread_refuses_reads_beyond_the_limit() {
    check_limit(PreadBackend::new(8), "pread-limit");
}

#[test]
fn uring_refuses_reads_beyond_the_limit() {
    check_limit(uring(8), "uring-limit");
}

#[test]
fn uring_keeps_the_table_within_the_limit() {
    // 256 reads in flight in the kernel at once, then again through a smaller ring.
    for max in [256, 5] {
        let mut backend = uring(max);
        assert!(backend.setup().sq_entries as usize >= max);
        let dir = scratch_dir();
        let file = TestFile::new(&dir, &format!("uring-table-{max}"), FILE_BYTES, 9);
        let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
        let mut rng = Rng(10);
        let ops = random_reads(&mut rng, opened.id, FILE_BYTES as u64, 600, 0);
        let mut check = expect_bytes(&file);
        let stats = run(&mut backend, &ops, |op, r| {
            check(op, r);
        });
        assert!(backend.reads_in_table() <= max);
        assert_eq!(stats.in_flight_peak, max);
    }
}

/// Zero-length, past end of file, too long, overflowing, unknown and closed files: the same
/// outcome from both backends.
fn edge_outcomes<B: Backend>(mut backend: B, name: &str) -> Vec<Result<usize, IoError>> {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, name, 10_000, 11);
    let a = backend.open(&file.path, DirectIo::Prefer).expect("open").id;
    let b = backend.open(&file.path, DirectIo::Off).expect("open").id;
    backend.close(b);
    let ops = [
        (a, 0, 0),
        (a, 9_999, 0),
        (a, 10_000, 10),
        (a, 1 << 40, 4096),
        (a, 9_990, 100),
        (a, 0, 10_000),
        (a, 0, 5 << 20),
        (a, u64::MAX - 4, 100),
        (b, 0, 10),
        (FileId(999), 0, 10),
    ];
    for (tag, &(file, offset, len)) in ops.iter().enumerate() {
        backend.push(ReadOp { tag: tag as u64, file, offset, len }).expect("room");
    }
    let mut done = finish_all(&mut backend);
    done.sort_by_key(|c| c.tag);
    assert_eq!(done.len(), ops.len());
    done.into_iter().map(|c| c.result.map(|buffer| buffer.len())).collect()
}

#[test]
fn edge_reads_end_the_same_way_on_both_backends() {
    let pread = edge_outcomes(PreadBackend::new(16), "edge-pread");
    let uring = edge_outcomes(uring(16), "edge-uring");
    assert_eq!(pread, uring);
    let einval = Err(IoError::Os(libc::EINVAL));
    let expected = vec![
        Ok(0),
        Ok(0),
        Ok(0),
        Ok(0),
        Ok(10),
        Ok(10_000),
        einval.clone(), // longer than read_bytes_max (4 MiB by default)
        einval,         // ends past u64::MAX
        Err(IoError::Closed),
        Err(IoError::UnknownFile(FileId(999))),
    ];
    assert_eq!(pread, expected);
}

/// `/proc` refuses O_DIRECT at open: read buffered instead, counted.
fn check_open_fallback<B: Backend>(mut backend: B) {
    let paths = [Path::new("/proc/version"), Path::new("/proc/sys/kernel/osrelease")];
    for (i, path) in paths.iter().enumerate() {
        let want = std::fs::read(path).expect("read");
        let opened = backend.open(path, DirectIo::Prefer).expect("open");
        assert!(!opened.direct);
        assert_eq!(opened.alignment, 1);
        assert_eq!(backend.direct_fallbacks(), i as u64 + 1);
        backend.push(ReadOp { tag: 0, file: opened.id, offset: 0, len: 4096 }).expect("room");
        backend.push(ReadOp { tag: 1, file: opened.id, offset: 3, len: 5 }).expect("room");
        let mut done = finish_all(&mut backend);
        done.sort_by_key(|c| c.tag);
        let whole = done[0].result.as_ref().expect("read");
        assert_eq!(whole.bytes(), &want[..], "{}", path.display());
        assert_eq!(done[1].result.as_ref().expect("read").bytes(), &want[3..8]);
    }
    // Asked for buffered reads: not a fallback.
    backend.open(paths[0], DirectIo::Off).expect("open");
    assert_eq!(backend.direct_fallbacks(), 2);
}

#[test]
fn pread_reads_procfs_buffered_and_counts_it() {
    check_open_fallback(PreadBackend::new(4));
}

#[test]
fn uring_reads_procfs_buffered_and_counts_it() {
    check_open_fallback(uring(4));
}

/// tmpfs: since Linux 6.6 it accepts O_DIRECT (served from the page cache, any alignment).
/// statx does not report DIOALIGN there, so the alignment is the no-device default (4096).
/// Either way the bytes are right, and a refusal would be counted.
fn check_tmpfs<B: Backend>(mut backend: B, name: &str) {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        test_support::facility_missing("backends::tmpfs", "no /dev/shm");
        return;
    }
    let file = TestFile::new(shm, name, 200_000, 12);
    let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
    eprintln!("tmpfs {name}: {opened:?}, fallbacks {}", backend.direct_fallbacks());
    if opened.direct {
        assert_eq!(backend.direct_fallbacks(), 0);
        assert_eq!(opened.alignment, device::LOGICAL_BLOCK_BYTES_DEFAULT);
    } else {
        assert_eq!(backend.direct_fallbacks(), 1);
        assert_eq!(opened.alignment, 1);
    }
    let mut rng = Rng(13);
    let ops = random_reads(&mut rng, opened.id, 200_000, 500, 0);
    run(&mut backend, &ops, expect_bytes(&file));
}

#[test]
fn pread_reads_tmpfs() {
    check_tmpfs(PreadBackend::new(16), "pread-tmpfs");
}

#[test]
fn uring_reads_tmpfs() {
    check_tmpfs(uring(16), "uring-tmpfs");
}

/// Closing a file with reads in flight: they end with their bytes or Closed; the fd is held
/// until the last one ends; later reads of the id end with Closed.
#[test]
fn uring_close_waits_for_reads_in_flight() {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, "uring-close", FILE_BYTES, 14);
    let mut backend = uring(128);
    let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
    let other = backend.open(&file.path, DirectIo::Off).expect("open");
    let mut rng = Rng(15);
    let ops = random_reads(&mut rng, opened.id, FILE_BYTES as u64, 100, 0);
    for op in &ops {
        backend.push(*op).expect("room");
    }
    backend.submit_and_wait(None).expect("submit");
    if backend.setup().flags.contains(&RingFlag::DeferTaskrun) {
        // Disk reads complete through deferred task work, run only by a later enter: they are
        // still in the table (zero-length and past-EOF reads are already done).
        let on_disk = ops.iter().filter(|op| op.len > 0 && op.offset < FILE_BYTES as u64).count();
        assert!(
            backend.reads_in_table() > on_disk / 2,
            "{} of {on_disk}",
            backend.reads_in_table()
        );
    }
    let in_table = backend.reads_in_table();
    backend.close(opened.id);
    assert_eq!(
        backend.files_open(),
        if in_table > 0 { 2 } else { 1 },
        "the fd is held for its reads"
    );
    // Pushed after close: Closed at once.
    backend.push(ReadOp { tag: 1000, file: opened.id, offset: 0, len: 10 }).expect("room");
    let done = finish_all(&mut backend);
    assert_eq!(done.len(), ops.len() + 1);
    let mut check = expect_bytes(&file);
    for c in &done {
        if c.tag == 1000 {
            assert_eq!(c.result.as_ref().err(), Some(&IoError::Closed));
        } else if !matches!(c.result, Err(IoError::Closed)) {
            check(&ops[c.tag as usize], &c.result);
        }
    }
    assert_eq!(backend.files_open(), 1, "closed after its last read");
    // The other file is untouched.
    run(
        &mut backend,
        &random_reads(&mut rng, other.id, FILE_BYTES as u64, 50, 0),
        expect_bytes(&file),
    );
}

/// `submit_and_wait(None)` never blocks, yet calling it again and again finishes the reads
/// (with DEFER_TASKRUN, TASKRUN_FLAG makes the non-waiting enter run the completions).
#[test]
fn uring_progresses_without_waiting() {
    let (file, mut backend, ops) = uring_with_64_reads_pushed("uring-nowait", 20);
    let started = std::time::Instant::now();
    let mut done = Vec::new();
    while done.len() < ops.len() {
        assert!(started.elapsed() < Duration::from_secs(30), "no progress without waiting");
        backend.submit_and_wait(None).expect("submit");
        backend.drain(&mut done);
    }
    check_each(&file, &ops, &done);
}

/// A uring backend (64 reads in flight) with 64 random O_DIRECT reads of a new file pushed,
/// not yet submitted.
fn uring_with_64_reads_pushed(name: &str, seed: u64) -> (TestFile, UringBackend, Vec<ReadOp>) {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, name, FILE_BYTES, seed);
    let mut backend = uring(64);
    let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
    let mut rng = Rng(seed + 1);
    let ops = random_reads(&mut rng, opened.id, FILE_BYTES as u64, 64, 0);
    for op in &ops {
        backend.push(*op).expect("room");
    }
    (file, backend, ops)
}

/// Each completion holds the bytes of its read (`ops[tag]`).
fn check_each(file: &TestFile, ops: &[ReadOp], done: &[disk_io::Completion]) {
    let mut check = expect_bytes(file);
    for c in done {
        check(&ops[c.tag as usize], &c.result);
    }
}

/// Once submitted, finished reads come out of `drain` alone, without another submit or wait:
/// the shard drains between waits while it decodes, to refill the device's queue. (With
/// DEFER_TASKRUN the kernel holds them until an enter with GETEVENTS; `drain` makes that enter
/// when TASKRUN_FLAG says it holds some.)
#[test]
fn uring_drain_alone_takes_reads_that_finished() {
    let (file, mut backend, ops) = uring_with_64_reads_pushed("uring-drain", 22);
    backend.submit_and_wait(None).expect("submit");
    let mut done = Vec::new();
    let all_taken = test_support::wait_until(Duration::from_secs(30), || {
        backend.drain(&mut done);
        done.len() >= ops.len()
    });
    assert!(all_taken, "drain alone took {} of {} finished reads", done.len(), ops.len());
    assert_eq!(backend.in_flight(), 0);
    check_each(&file, &ops, &done);
}

#[test]
fn pread_close_ends_queued_reads_as_closed() {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, "pread-close", 100_000, 16);
    let mut backend = PreadBackend::new(8);
    let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
    backend.push(ReadOp { tag: 0, file: opened.id, offset: 0, len: 10 }).expect("room");
    backend.close(opened.id);
    assert_eq!(backend.files_open(), 0);
    let done = finish_all(&mut backend);
    assert_eq!(done[0].result.as_ref().err(), Some(&IoError::Closed));
}

/// Dropping a backend with reads in the kernel waits for them before freeing their buffers.
/// A canary: memory allocated right after the drop (likely the freed buffers) must keep its
/// pattern while the disk would still be writing.
#[test]
fn uring_drop_with_reads_in_flight_is_safe() {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, "uring-drop", 16 << 20, 17);
    let mut rng = Rng(18);
    for round in 0..20 {
        let mut backend = uring(256);
        let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
        let ops: Vec<ReadOp> = (0..256)
            .map(|i| ReadOp { tag: i, file: opened.id, offset: rng.below(16 << 20), len: 60_000 })
            .collect();
        for op in &ops {
            backend.push(*op).expect("room");
        }
        backend.submit_and_wait(None).expect("submit");
        if round % 2 == 1 {
            backend.close(opened.id); // a deferred close pending at drop, too
        }
        drop(backend);
        let canaries: Vec<Vec<u8>> = (0..256).map(|_| vec![0xA5u8; 65536]).collect();
        std::thread::sleep(Duration::from_millis(5));
        for c in &canaries {
            assert!(c.iter().all(|&b| b == 0xA5), "freed memory was written after drop");
        }
    }
}

#[test]
fn uring_ring_uses_the_engine_notes_flags() {
    let backend = uring(64);
    let setup = backend.setup().clone();
    eprintln!("ring setup: {setup:?}");
    assert_eq!(setup.sq_entries, 64);
    assert!(setup.cq_entries >= 128);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut numbers = release.trim().split(['.', '-']).map(|s| s.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version >= (6, 1) {
        for flag in [
            RingFlag::SingleIssuer,
            RingFlag::DeferTaskrun,
            RingFlag::CoopTaskrun,
            RingFlag::CqSize,
        ] {
            assert!(setup.flags.contains(&flag), "{flag:?} on kernel {release}");
        }
    }
    assert_eq!(UringBackend::new(200).expect("ring").setup().sq_entries, 256);
    assert!(UringBackend::new(0).is_err());
    assert!(UringBackend::with_config(UringConfig::new(1 << 20)).is_err());
}

#[test]
fn buffers_go_back_to_a_bounded_pool() {
    let dir = scratch_dir();
    let file = TestFile::new(&dir, "pool", 1 << 20, 19);
    let mut config = UringConfig::new(32);
    config.buffer_pool_bytes_max = 64 * 1024;
    let mut backend = UringBackend::with_config(config).expect("ring");
    let opened = backend.open(&file.path, DirectIo::Prefer).expect("open");
    let ops: Vec<ReadOp> = (0..32)
        .map(|i| ReadOp { tag: i, file: opened.id, offset: i * 20_000, len: 9000 })
        .collect();
    run(&mut backend, &ops, expect_bytes(&file));
    assert!(backend.buffer_pool_bytes() > 0);
    assert!(backend.buffer_pool_bytes() <= 64 * 1024);
    // Heap buffers (the simulated disk's) are accepted and dropped.
    backend.recycle(disk_io::Buffer::from_vec(vec![1, 2, 3]));
    assert!(backend.buffer_pool_bytes() <= 64 * 1024);
}
