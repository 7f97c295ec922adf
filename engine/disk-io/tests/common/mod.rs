//! Shared by the integration tests: scratch files on the real disk, a seeded PRNG, and a driver
//! that runs reads through any backend and checks the limit on every step.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use disk_io::{Backend, Completion, FileId, Full, IoError, ReadOp};

/// A scratch directory under `target/` (the real disk here; `/tmp` may be tmpfs elsewhere).
pub fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("disk-io");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A file with seeded pseudo-random bytes, removed on drop.
pub struct TestFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl TestFile {
    pub fn new(dir: &Path, name: &str, len: usize, seed: u64) -> TestFile {
        let path = dir.join(format!("{name}-{}.bin", std::process::id()));
        let mut rng = Rng(seed);
        let mut bytes = vec![0u8; len];
        for chunk in bytes.chunks_mut(8) {
            let word = rng.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        std::fs::write(&path, &bytes).expect("write test file");
        TestFile { path, bytes }
    }

    /// What a read of `len` bytes at `offset` must return.
    pub fn expected(&self, offset: u64, len: u32) -> &[u8] {
        let start = (offset.min(self.bytes.len() as u64)) as usize;
        let end = (offset.saturating_add(u64::from(len)).min(self.bytes.len() as u64)) as usize;
        &self.bytes[start..end]
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random reads of `file`: unaligned, aligned, tiny, large, crossing and past end of file,
/// zero-length.
pub fn random_reads(
    rng: &mut Rng,
    file: FileId,
    file_len: u64,
    count: usize,
    first_tag: u64,
) -> Vec<ReadOp> {
    (0..count)
        .map(|i| {
            let (offset, len) = match rng.below(8) {
                0 => (rng.below(file_len), 1 + rng.below(64) as u32),
                1 => (rng.below(file_len / 4096) * 4096, 4096),
                2 => (rng.below(file_len), 1 + rng.below(20_000) as u32),
                3 => (file_len - rng.below(5000).min(file_len), 1 + rng.below(12_000) as u32),
                4 => (file_len + rng.below(10_000), 1 + rng.below(9000) as u32),
                5 => (rng.below(file_len + 100), 0),
                6 => (rng.below(file_len), 1 + rng.below(300_000) as u32),
                _ => (rng.below(file_len), 3000 + rng.below(6000) as u32),
            };
            ReadOp { tag: first_tag + i as u64, file, offset, len }
        })
        .collect()
}

/// Runs `ops` through `backend`, pushing until `Full`, and hands every completion to `check`.
/// Asserts the contract on the way: `Full` exactly at the limit, never more in flight, one
/// completion per read, nothing left at the end.
pub fn run<B: Backend>(
    backend: &mut B,
    ops: &[ReadOp],
    mut check: impl FnMut(&ReadOp, &Result<disk_io::Buffer, IoError>),
) -> RunStats {
    let max = backend.reads_in_flight_max();
    let mut pending: VecDeque<ReadOp> = ops.iter().copied().collect();
    let mut by_tag: HashMap<u64, ReadOp> = HashMap::new();
    let mut out: Vec<Completion> = Vec::new();
    let mut stats = RunStats::default();
    let mut rounds = 0;
    while stats.completions < ops.len() {
        rounds += 1;
        assert!(rounds < 1_000_000, "reads do not finish");
        while let Some(op) = pending.front().copied() {
            match backend.push(op) {
                Ok(()) => {
                    assert!(by_tag.insert(op.tag, op).is_none(), "tags are unique");
                    pending.pop_front();
                    assert!(
                        backend.in_flight() <= max,
                        "{} in flight > {max}",
                        backend.in_flight()
                    );
                }
                Err(Full { limit }) => {
                    assert_eq!(limit, max);
                    assert_eq!(backend.in_flight(), max, "Full only at the limit");
                    stats.fulls += 1;
                    break;
                }
            }
        }
        stats.in_flight_peak = stats.in_flight_peak.max(backend.in_flight());
        backend.submit_and_wait(Some(Duration::from_secs(5))).expect("submit_and_wait");
        backend.drain(&mut out);
        for c in out.drain(..) {
            let op = by_tag.remove(&c.tag).expect("one completion per pushed read");
            check(&op, &c.result);
            stats.completions += 1;
            if let Ok(buffer) = c.result {
                backend.recycle(buffer);
            }
        }
    }
    assert!(pending.is_empty() && by_tag.is_empty());
    assert_eq!(backend.in_flight(), 0);
    stats
}

#[derive(Debug, Default)]
pub struct RunStats {
    pub completions: usize,
    pub fulls: usize,
    pub in_flight_peak: usize,
}

/// `check` for [`run`]: every read returns exactly the file's bytes.
pub fn expect_bytes<'a>(
    file: &'a TestFile,
) -> impl FnMut(&ReadOp, &Result<disk_io::Buffer, IoError>) + 'a {
    move |op, result| {
        let buffer = result.as_ref().unwrap_or_else(|e| panic!("{op:?}: {e}"));
        let want = file.expected(op.offset, op.len);
        assert_eq!(buffer.len(), want.len(), "{op:?}: length");
        assert!(buffer.bytes() == want, "{op:?}: bytes differ");
    }
}

/// Waits for and drains everything in flight.
pub fn finish_all<B: Backend>(backend: &mut B) -> Vec<Completion> {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        if backend.in_flight() == 0 {
            return all;
        }
        backend.submit_and_wait(Some(Duration::from_secs(5))).expect("submit_and_wait");
        backend.drain(&mut all);
    }
    panic!("reads do not finish");
}
