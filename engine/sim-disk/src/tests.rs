//! Tests of the simulated disk through the `Backend` trait, as the shard uses it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use disk_io::{Backend, Buffer, Completion, DirectIo, FileId, Full, IoError, ReadOp};

use crate::{Faults, Latency, Rng, SimClock, SimConfig, SimDisk, SimStats, EINVAL, EIO};

const FILE_A: &str = "/plots/a.plot";
const FILE_B: &str = "/plots/b.plot";
const FILE_BYTES: usize = 1 << 16;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Bytes of a file: a function of `seed`, so every read's expected bytes are known.
fn contents(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// A disk with files A and B (contents seeds 1 and 2), both open.
fn disk_with_files(config: SimConfig) -> (SimDisk, FileId, FileId) {
    let mut disk = SimDisk::new(config, SimClock::new());
    disk.add_file(FILE_A, contents(1, FILE_BYTES));
    disk.add_file(FILE_B, contents(2, FILE_BYTES));
    let a = disk.open(Path::new(FILE_A), DirectIo::Prefer).unwrap().id;
    let b = disk.open(Path::new(FILE_B), DirectIo::Prefer).unwrap().id;
    (disk, a, b)
}

fn op(tag: u64, file: FileId, offset: u64, len: u32) -> ReadOp {
    ReadOp { tag, file, offset, len }
}

/// Waits (virtually) and drains until nothing is in flight; every completion with its time.
fn run_until_idle(disk: &mut SimDisk) -> Vec<(Duration, Completion)> {
    let mut done = Vec::new();
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        if disk.in_flight() == 0 {
            return done;
        }
        disk.submit_and_wait(Some(Duration::from_secs(1))).unwrap();
        disk.drain(&mut out);
        let now = disk.now();
        done.extend(out.drain(..).map(|c| (now, c)));
    }
    panic!("reads still in flight after a million waits: {:?}", disk.stats());
}

fn bytes_of(c: &Completion) -> &[u8] {
    c.result.as_ref().expect("a successful read").bytes()
}

#[test]
fn reads_return_the_file_bytes_after_the_latency() {
    let config = SimConfig { direct_alignment: Some(4096), ..SimConfig::new(1, 8) };
    let (mut disk, a, b) = disk_with_files(config);
    let (a_bytes, b_bytes) = (contents(1, FILE_BYTES), contents(2, FILE_BYTES));
    disk.push(op(1, a, 100, 50)).unwrap();
    disk.push(op(2, b, FILE_BYTES as u64 - 10, 50)).unwrap(); // short at end of file
    disk.push(op(3, a, FILE_BYTES as u64 + 5, 50)).unwrap(); // past the end: empty
    disk.push(op(4, a, 0, 0)).unwrap(); // nothing asked: at once
    disk.submit_and_wait(None).unwrap();
    assert_eq!(disk.now(), Duration::ZERO, "no timeout: no waiting");
    let mut out = Vec::new();
    disk.drain(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].tag, bytes_of(&out[0]).len()), (4, 0));
    disk.recycle(out.pop().unwrap().result.unwrap());
    disk.submit_and_wait(Some(ms(10))).unwrap();
    assert_eq!(disk.now(), crate::LATENCY_DEFAULT, "jumped to the completions");
    disk.drain(&mut out);
    assert_eq!(out.iter().map(|c| c.tag).collect::<Vec<_>>(), [1, 2, 3], "equal times: push order");
    assert_eq!(bytes_of(&out[0]), &a_bytes[100..150]);
    assert_eq!(bytes_of(&out[1]), &b_bytes[FILE_BYTES - 10..]);
    assert!(bytes_of(&out[2]).is_empty());
    assert_eq!(disk.in_flight(), 0);
    for c in out {
        disk.recycle(c.result.unwrap());
    }
    let stats = disk.stats();
    stats.check();
    assert_eq!((stats.reads_ok, stats.bytes_read, stats.buffers_recycled), (4, 60, 4));
    assert_eq!(stats.buffers_with_caller_now, 0);

    let opened = disk.open(Path::new(FILE_A), DirectIo::Prefer).unwrap();
    assert_eq!((opened.len, opened.direct, opened.alignment), (FILE_BYTES as u64, true, 4096));
    let opened = disk.open(Path::new(FILE_A), DirectIo::Off).unwrap();
    assert_eq!((opened.direct, opened.alignment), (false, 1));
    let missing = disk.open(Path::new("/plots/none"), DirectIo::Prefer).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn refused_reads_fail_at_once_with_the_right_error() {
    let (mut disk, a, b) =
        disk_with_files(SimConfig { read_bytes_max: 1024, ..SimConfig::new(2, 8) });
    disk.close(b);
    disk.push(op(1, a, 0, 1025)).unwrap();
    disk.push(op(2, b, 0, 10)).unwrap();
    disk.push(op(3, FileId(77), 0, 10)).unwrap();
    disk.submit_and_wait(None).unwrap();
    let mut out = Vec::new();
    disk.drain(&mut out);
    let errors: Vec<_> = out.into_iter().map(|c| (c.tag, c.result.unwrap_err())).collect();
    let expected =
        [(1, IoError::Os(EINVAL)), (2, IoError::Closed), (3, IoError::UnknownFile(FileId(77)))];
    assert_eq!(errors, expected);
    let stats = disk.stats();
    stats.check();
    assert_eq!((stats.reads_failed_other, stats.reads_failed_closed), (2, 1));
}

#[test]
fn close_fails_reads_in_flight_but_not_those_already_done() {
    let latency = Latency::Uniform { min: ms(1), max: ms(9) };
    let config = SimConfig { faults: Faults::with_latency(latency), ..SimConfig::new(3, 64) };
    let (mut disk, a, _) = disk_with_files(config);
    for tag in 0..64 {
        disk.push(op(tag, a, tag * 16, 16)).unwrap();
    }
    disk.submit_and_wait(None).unwrap();
    disk.clock().advance(ms(5));
    disk.close(a);
    let done = run_until_idle(&mut disk);
    assert_eq!(done.len(), 64);
    for (time, c) in &done {
        match &c.result {
            Ok(_) => assert!(*time <= ms(5)),
            Err(e) => assert_eq!(*e, IoError::Closed),
        }
    }
    let stats = disk.stats();
    stats.check();
    assert!(stats.reads_ok > 10 && stats.reads_failed_closed > 10, "{stats:?}");
}

#[test]
fn full_at_the_limit_until_a_completion_is_drained() {
    let (mut disk, a, _) = disk_with_files(SimConfig::new(4, 4));
    assert_eq!(disk.reads_in_flight_max(), 4);
    for tag in 0..4 {
        disk.push(op(tag, a, 0, 8)).unwrap();
    }
    assert_eq!(disk.push(op(4, a, 0, 8)), Err(Full { limit: 4 }));
    disk.submit_and_wait(Some(ms(1))).unwrap();
    assert_eq!(disk.push(op(4, a, 0, 8)), Err(Full { limit: 4 }), "completed, not yet drained");
    assert_eq!(disk.in_flight(), 4);
    let mut out = Vec::new();
    disk.drain(&mut out);
    assert_eq!(out.len(), 4);
    assert_eq!(disk.in_flight(), 0);
    disk.push(op(4, a, 0, 8)).unwrap();
    let stats = disk.stats();
    stats.check();
    assert_eq!((stats.reads_refused_full, stats.in_flight_max_observed), (2, 4));
    assert_eq!(SimDisk::new(SimConfig::new(0, 0), SimClock::new()).reads_in_flight_max(), 1);
}

#[test]
fn completions_follow_completion_time_not_submit_order() {
    let latency = Latency::Uniform { min: us(10), max: ms(10) };
    let config = SimConfig { faults: Faults::with_latency(latency), ..SimConfig::new(5, 256) };
    let (mut disk, a, _) = disk_with_files(config);
    for tag in 0..256 {
        disk.push(op(tag, a, tag * 64, 64)).unwrap();
    }
    let done = run_until_idle(&mut disk);
    let tags: Vec<u64> = done.iter().map(|(_, c)| c.tag).collect();
    assert_ne!(tags, (0..256).collect::<Vec<_>>(), "reordered");
    assert!(done.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    let mut sorted = tags.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..256).collect::<Vec<_>>(), "each exactly once");
}

/// Latency of each of `count` reads pushed at once (the disk's clock starts at zero).
fn latencies(faults: Faults, count: u64) -> Vec<Duration> {
    let config = SimConfig { faults, ..SimConfig::new(6, 8192) };
    let (mut disk, a, _) = disk_with_files(config);
    for tag in 0..count {
        disk.push(op(tag, a, (tag * 512) % FILE_BYTES as u64, 512)).unwrap();
    }
    let done = run_until_idle(&mut disk);
    assert_eq!(done.len() as u64, count);
    done.into_iter().map(|(time, _)| time).collect()
}

#[test]
fn latency_matches_the_configured_distribution() {
    let fixed = latencies(Faults::with_latency(Latency::Fixed(us(250))), 1000);
    assert!(fixed.iter().all(|&l| l == us(250)));

    let uniform =
        latencies(Faults::with_latency(Latency::Uniform { min: ms(1), max: ms(3) }), 8000);
    let mean = uniform.iter().sum::<Duration>() / 8000;
    assert!((ms(1)..=ms(3)).contains(uniform.iter().min().unwrap()));
    assert!((ms(1)..=ms(3)).contains(uniform.iter().max().unwrap()));
    assert!(mean > us(1970) && mean < us(2030), "mean {mean:?}");
    let below_1500 = uniform.iter().filter(|&&l| l < us(1500)).count();
    assert!((1800..2200).contains(&below_1500), "a quarter below 1.5 ms: {below_1500}");

    let tail = Latency::LongTail {
        min: us(100),
        max: us(200),
        slow_probability: 0.05,
        slow_min: ms(50),
        slow_max: ms(100),
    };
    let tail = latencies(Faults::with_latency(tail), 8000);
    let slow = tail.iter().filter(|&&l| l >= ms(50)).count();
    assert!(tail.iter().all(|&l| l <= us(200) || (ms(50)..=ms(100)).contains(&l)));
    assert!((330..470).contains(&slow), "5% slow: {slow}");
}

#[test]
fn eio_rate_matches_its_probability() {
    let faults = Faults { eio_probability: 0.1, ..Faults::none() };
    let config = SimConfig { faults, ..SimConfig::new(7, 8192) };
    let (mut disk, a, _) = disk_with_files(config);
    for tag in 0..8000 {
        disk.push(op(tag, a, 0, 64)).unwrap();
    }
    let done = run_until_idle(&mut disk);
    let eio = done.iter().filter(|(_, c)| c.result.as_ref().err() == Some(&IoError::Os(EIO)));
    let eio = eio.count();
    assert!((700..900).contains(&eio), "10% EIO: {eio}");
    assert!(done.iter().all(|(t, _)| *t == crate::LATENCY_DEFAULT), "errors take time too");
    let stats = disk.stats();
    stats.check();
    assert_eq!(stats.reads_failed_eio, eio as u64);
}

#[test]
fn short_reads_cost_rounds_and_counters_not_bytes() {
    let latency = Latency::Fixed(ms(1));
    let faults = Faults { short_read_probability: 0.5, ..Faults::with_latency(latency) };
    let config = SimConfig { faults, ..SimConfig::new(8, 1024) };
    let (mut disk, a, _) = disk_with_files(config);
    let expected = contents(1, FILE_BYTES);
    for tag in 0..1000 {
        disk.push(op(tag, a, tag * 32, 4096)).unwrap();
    }
    let done = run_until_idle(&mut disk);
    let mut rounds_extra = 0;
    for (time, c) in &done {
        let offset = c.tag as usize * 32;
        assert_eq!(bytes_of(c), &expected[offset..offset + 4096], "full bytes");
        let rounds = time.as_nanos() / ms(1).as_nanos();
        assert_eq!(*time, ms(rounds as u64), "a whole number of rounds");
        rounds_extra += rounds as u64 - 1;
    }
    let stats = disk.stats();
    stats.check();
    assert_eq!(stats.short_read_retries, rounds_extra);
    assert!((800..1200).contains(&rounds_extra), "about one retry per read: {rounds_extra}");
}

#[test]
fn corruption_flips_exactly_one_byte() {
    let faults = Faults { corrupt_probability: 0.2, ..Faults::none() };
    let (mut disk, a, _) = disk_with_files(SimConfig { faults, ..SimConfig::new(9, 2048) });
    let expected = contents(1, FILE_BYTES);
    for tag in 0..2000 {
        disk.push(op(tag, a, tag * 16, 256)).unwrap();
    }
    let mut corrupted = 0;
    for (_, c) in run_until_idle(&mut disk) {
        let offset = c.tag as usize * 16;
        let bytes = bytes_of(&c);
        let wrong = bytes.iter().zip(&expected[offset..]).filter(|(x, y)| x != y).count();
        assert!(wrong <= 1);
        corrupted += wrong as u64;
    }
    assert_eq!(disk.stats().reads_corrupted, corrupted);
    assert!((320..480).contains(&corrupted), "20% corrupted: {corrupted}");
}

#[test]
fn hung_reads_never_complete_and_deadlines_pass_in_virtual_time() {
    let (mut disk, a, b) = disk_with_files(SimConfig::new(10, 16));
    disk.set_file_faults(FILE_A, Some(Faults { hang_probability: 1.0, ..Faults::none() }));
    disk.push(op(1, a, 0, 64)).unwrap();
    disk.push(op(2, b, 0, 64)).unwrap();
    let mut out = Vec::new();
    // The read of B completes though A's hangs.
    disk.submit_and_wait(Some(ms(50))).unwrap();
    disk.drain(&mut out);
    assert_eq!(out.iter().map(|c| c.tag).collect::<Vec<_>>(), [2]);
    // A shard-like loop waits for its one-minute deadline: 60,000 ticks, instantly.
    let deadline = Duration::from_secs(60);
    let mut ticks = 0;
    while disk.now() < deadline {
        disk.submit_and_wait(Some(ms(1))).unwrap();
        disk.drain(&mut out);
        ticks += 1;
    }
    assert_eq!(out.len(), 1, "the hung read never completed");
    assert!((59_990..=60_000).contains(&ticks), "{ticks}");
    assert_eq!(disk.in_flight(), 1, "still owned by the disk");
    assert_eq!(disk.next_completion_at(), None);
    let stats = disk.stats();
    stats.check();
    assert_eq!((stats.reads_hung, stats.reads_hung_now), (1, 1));

    assert_eq!(disk.unhang(), 1);
    let released_at = disk.now();
    disk.submit_and_wait(Some(ms(10))).unwrap();
    disk.drain(&mut out);
    assert_eq!(out[1].tag, 1);
    assert_eq!(bytes_of(&out[1]), &contents(1, FILE_BYTES)[..64]);
    assert_eq!(disk.now(), released_at + crate::LATENCY_DEFAULT);
    let stats = disk.stats();
    stats.check();
    assert_eq!((stats.reads_unhung, stats.reads_hung_now), (1, 0));
}

#[test]
fn vanish_fails_every_read_in_flight_and_later_and_open() {
    let latency = Latency::Fixed(ms(2));
    let (mut disk, a, b) = disk_with_files(SimConfig {
        faults: Faults::with_latency(latency),
        ..SimConfig::new(11, 16)
    });
    disk.set_file_faults(FILE_B, Some(Faults { hang_probability: 1.0, ..Faults::none() }));
    disk.push(op(1, a, 0, 8)).unwrap(); // due at 2 ms: done before the vanish
    disk.push(op(2, b, 0, 8)).unwrap(); // hung
    disk.submit_and_wait(None).unwrap();
    disk.clock().advance(ms(3));
    disk.push(op(3, a, 0, 8)).unwrap(); // due at 5 ms
    disk.submit_and_wait(None).unwrap();
    disk.push(op(4, a, 0, 8)).unwrap(); // queued, not submitted
    disk.vanish();
    assert!(disk.is_vanished());
    let err = disk.open(Path::new(FILE_A), DirectIo::Prefer).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    disk.push(op(5, a, 0, 8)).unwrap();
    let done = run_until_idle(&mut disk);
    assert!(done.iter().all(|(time, _)| *time == ms(3)), "at once, nothing waits");
    let mut results: Vec<_> = done.into_iter().map(|(_, c)| (c.tag, c.result.is_ok())).collect();
    results.sort_unstable();
    assert_eq!(results, [(1, true), (2, false), (3, false), (4, false), (5, false)]);
    let stats = disk.stats();
    stats.check();
    assert_eq!((stats.reads_failed_vanished, stats.reads_unhung), (4, 1));

    disk.reappear();
    let a_again = disk.open(Path::new(FILE_A), DirectIo::Prefer).unwrap().id;
    disk.push(op(6, a, 0, 8)).unwrap(); // opened before the vanish: dead
    disk.push(op(7, a_again, 0, 8)).unwrap();
    let done = run_until_idle(&mut disk);
    let results: Vec<_> = done.into_iter().map(|(_, c)| (c.tag, c.result.is_ok())).collect();
    assert_eq!(results, [(6, false), (7, true)]);
}

#[test]
fn a_device_serving_one_read_at_a_time_queues_them() {
    let faults = Faults::with_latency(Latency::Fixed(ms(1)));
    let config = SimConfig { faults, device_reads_max: Some(1), ..SimConfig::new(12, 16) };
    let (mut disk, a, _) = disk_with_files(config);
    for tag in 0..10 {
        disk.push(op(tag, a, 0, 8)).unwrap();
    }
    let done = run_until_idle(&mut disk);
    let times: Vec<Duration> = done.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, (1..=10).map(ms).collect::<Vec<_>>());
}

#[test]
fn replacing_a_file_shrinks_it_under_open_readers() {
    let (mut disk, a, _) = disk_with_files(SimConfig::new(13, 4));
    disk.add_file(FILE_A, vec![7u8; 100]);
    disk.push(op(1, a, 90, 20)).unwrap();
    let done = run_until_idle(&mut disk);
    assert_eq!(bytes_of(&done[0].1), &[7u8; 10]);
}

#[test]
fn dropped_buffers_are_noticed_when_their_address_comes_back() {
    let (mut disk, a, _) = disk_with_files(SimConfig::new(14, 4));
    for round in 0..100 {
        disk.push(op(round, a, 0, 64)).unwrap();
        let done = run_until_idle(&mut disk);
        if round % 2 == 0 {
            disk.recycle(done.into_iter().next().unwrap().1.result.unwrap());
        } // else: dropped here
    }
    let stats = disk.stats();
    stats.check();
    assert_eq!(stats.buffers_recycled, 50);
    assert!(stats.buffers_dropped > 0, "the allocator hands freed addresses out again");
}

#[test]
fn the_disk_and_its_handle_can_go_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SimDisk>();
    send_sync::<crate::SimHandle>();
    let (mut disk, a, _) = disk_with_files(SimConfig::new(15, 4));
    let handle = disk.handle();
    let thread = std::thread::spawn(move || {
        disk.push(op(1, a, 0, 8)).unwrap();
        run_until_idle(&mut disk).len()
    });
    assert_eq!(thread.join().unwrap(), 1);
    assert_eq!(handle.stats().reads_ok, 1);
}

/// Drives a disk with random operations and checks every completion against a model:
/// each pushed tag completes exactly once, with the file's bytes (or one flipped byte when
/// corruption is on) or an error; `in_flight` always equals the reads not yet drained.
struct Driver {
    rng: Rng,
    disk: SimDisk,
    paths: [&'static str; 2],
    expected: [Vec<u8>; 2],
    /// Open files: (id, which path).
    open: Vec<(FileId, usize)>,
    outstanding: HashMap<u64, (ReadOp, Option<usize>)>,
    tag_next: u64,
    held: Vec<Buffer>,
    out: Vec<Completion>,
    /// (time, tag, ok, fingerprint of the bytes): the run's history.
    trace: Vec<(Duration, u64, bool, u64)>,
    corrupted: u64,
}

impl Driver {
    fn new(driver_seed: u64, disk_seed: u64, faults: Faults) -> Driver {
        let config = SimConfig { faults, ..SimConfig::new(disk_seed, 64) };
        let (disk, a, b) = disk_with_files(config);
        Driver {
            rng: Rng::new(driver_seed),
            disk,
            paths: [FILE_A, FILE_B],
            expected: [contents(1, FILE_BYTES), contents(2, FILE_BYTES)],
            open: vec![(a, 0), (b, 1)],
            outstanding: HashMap::new(),
            tag_next: 0,
            held: Vec::new(),
            out: Vec::new(),
            trace: Vec::new(),
            corrupted: 0,
        }
    }

    fn step(&mut self) {
        match self.rng.below(1000) {
            0..=399 => self.push(),
            400..=649 => {
                let timeout = self.rng.below(20_000_000);
                let timeout = (timeout > 0).then(|| Duration::from_nanos(timeout));
                self.disk.submit_and_wait(timeout).unwrap();
            }
            650..=899 => self.drain(),
            900..=979 => {
                if !self.held.is_empty() {
                    let buffer =
                        self.held.swap_remove(self.rng.below(self.held.len() as u64) as usize);
                    self.disk.recycle(buffer);
                }
            }
            980..=989 => {
                self.disk.unhang();
            }
            990..=991 => self.reopen(),
            992..=997 => self.change_faults(),
            _ => self.vanish_or_reappear(),
        }
        assert_eq!(self.disk.in_flight(), self.outstanding.len());
    }

    fn push(&mut self) {
        let pick = self.rng.below(self.open.len() as u64 * 5 + 1) as usize / 5;
        let file = match self.open.get(pick) {
            Some(&(id, _)) => id,
            // Maybe open, maybe closed, or unknown forever (an id not handed out yet might be
            // opened before the submit, and the read then find it).
            None => match self.rng.below(8) as u32 {
                id if self.open.iter().any(|(open, _)| open.0 >= id) => FileId(id),
                _ => FileId(u32::MAX),
            },
        };
        let which = self.open.iter().find(|(id, _)| *id == file).map(|&(_, which)| which);
        let offset = self.rng.below(FILE_BYTES as u64 + 100);
        let op = op(self.tag_next, file, offset, self.rng.below(8192) as u32);
        match self.disk.push(op) {
            Ok(()) => {
                self.outstanding.insert(op.tag, (op, which));
                self.tag_next += 1;
            }
            Err(Full { limit }) => assert_eq!(self.outstanding.len(), limit),
        }
    }

    fn drain(&mut self) {
        self.disk.drain(&mut self.out);
        let now = self.disk.now();
        for c in std::mem::take(&mut self.out) {
            let (op, which) = self.outstanding.remove(&c.tag).expect("a tag completes once");
            let Ok(buffer) = c.result else {
                self.trace.push((now, c.tag, false, 0));
                continue;
            };
            let file = &self.expected[which.expect("only open files read bytes")];
            let start = (op.offset as usize).min(FILE_BYTES);
            let end = (op.offset as usize + op.len as usize).min(FILE_BYTES);
            assert_eq!(buffer.len(), end - start);
            let wrong = buffer.bytes().iter().zip(&file[start..end]).filter(|(x, y)| x != y);
            let wrong = wrong.count() as u64;
            assert!(wrong <= 1, "one byte flipped at most");
            self.corrupted += wrong;
            let fingerprint = buffer.bytes().iter().fold(0u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3) // FNV-1a
            });
            self.trace.push((now, c.tag, true, fingerprint));
            self.held.push(buffer);
        }
    }

    fn reopen(&mut self) {
        if self.disk.is_vanished() || self.open.is_empty() {
            return;
        }
        let (id, which) = self.open.remove(self.rng.below(self.open.len() as u64) as usize);
        self.disk.close(id);
        let opened = self.disk.open(Path::new(self.paths[which]), DirectIo::Prefer).unwrap();
        self.open.push((opened.id, which));
    }

    fn change_faults(&mut self) {
        let p = |rng: &mut Rng, max: u64| rng.below(max) as f64 / 1000.0;
        let faults = Faults {
            latency: Latency::LongTail {
                min: us(self.rng.below(100)),
                max: us(100 + self.rng.below(2000)),
                slow_probability: p(&mut self.rng, 100),
                slow_min: ms(5),
                slow_max: ms(50),
            },
            eio_probability: p(&mut self.rng, 100),
            short_read_probability: p(&mut self.rng, 300),
            hang_probability: p(&mut self.rng, 20),
            corrupt_probability: p(&mut self.rng, 50),
        };
        self.disk.set_faults(faults);
    }

    fn vanish_or_reappear(&mut self) {
        // Vanished about a tenth of the time.
        let vanished = self.disk.is_vanished();
        if !vanished && self.rng.below(10) != 0 {
            return;
        }
        if vanished {
            self.disk.reappear();
            self.open.clear();
            for (which, path) in self.paths.iter().enumerate() {
                let opened = self.disk.open(Path::new(path), DirectIo::Prefer).unwrap();
                self.open.push((opened.id, which));
            }
        } else {
            self.disk.vanish();
        }
    }

    /// Releases everything and waits until every read completed; returns the final stats.
    fn finish(&mut self) -> SimStats {
        self.disk.unhang();
        for _ in 0..1_000_000 {
            if self.outstanding.is_empty() {
                break;
            }
            self.disk.submit_and_wait(Some(Duration::from_secs(1))).unwrap();
            self.drain();
        }
        assert!(self.outstanding.is_empty());
        for buffer in self.held.drain(..) {
            self.disk.recycle(buffer);
        }
        let stats = self.disk.stats();
        stats.check();
        assert_eq!(stats.reads_pushed, self.tag_next);
        assert_eq!(stats.reads_completed, self.tag_next);
        assert_eq!(stats.reads_corrupted, self.corrupted);
        assert_eq!(stats.buffers_with_caller_now, 0, "every buffer came back");
        stats
    }
}

fn faulty() -> Faults {
    Faults {
        latency: Latency::LongTail {
            min: us(50),
            max: ms(2),
            slow_probability: 0.02,
            slow_min: ms(20),
            slow_max: ms(80),
        },
        eio_probability: 0.02,
        short_read_probability: 0.1,
        hang_probability: 0.002,
        corrupt_probability: 0.01,
    }
}

#[test]
fn every_pushed_read_completes_exactly_once_over_100k_random_operations() {
    let mut driver = Driver::new(0xC41A, 0xD15C, faulty());
    for _ in 0..100_000 {
        driver.step();
    }
    let stats = driver.finish();
    // Every fault and path was exercised.
    assert!(stats.reads_pushed > 15_000 && stats.reads_ok > 5_000, "{stats:?}");
    assert!(stats.reads_refused_full > 0, "{stats:?}");
    assert!(stats.reads_failed_eio > 0 && stats.reads_failed_vanished > 0, "{stats:?}");
    assert!(stats.reads_failed_closed > 0 && stats.reads_failed_other > 0, "{stats:?}");
    assert!(stats.reads_hung > 0 && stats.short_read_retries > 0, "{stats:?}");
    assert!(stats.reads_corrupted > 0 && stats.buffers_recycled > 0, "{stats:?}");
    assert_eq!(stats.in_flight_max_observed, 64);
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let run = |disk_seed| {
        let mut driver = Driver::new(77, disk_seed, faulty());
        for _ in 0..20_000 {
            driver.step();
        }
        let stats = driver.finish();
        (std::mem::take(&mut driver.trace), stats, driver.disk.now())
    };
    let (trace, stats, end) = run(1);
    assert!(trace.len() > 2000);
    let (again, stats_again, end_again) = run(1);
    assert_eq!(trace, again, "same completions, same order, same times, same bytes");
    assert_eq!((stats, end), (stats_again, end_again));
    let (other, _, _) = run(2);
    assert_ne!(trace, other);
}
