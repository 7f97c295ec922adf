//! Helpers shared by the plot-format fuzz targets: the fixture plot (loaded once), an
//! in-memory reader for the sans-IO state machines, a cursor over the fuzzer's bytes, the
//! seed-corpus writer and an allocator that turns any huge allocation into a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plot_format::{Goal, Mode, Plot};

/// No input may make the code under test ask for this much memory at once: every size it
/// allocates must come from k (at most a C2 table, ~160 MB at k = 50, never reached with the
/// k = 18 fixture) or from bytes already in hand, never from a length field in the file.
pub const ALLOCATION_BYTES_MAX: usize = 64 << 20;

/// Refuses (and so aborts the process: `handle_alloc_error`) allocations above
/// [`ALLOCATION_BYTES_MAX`]; libFuzzer reports the abort as a crash with its input.
pub struct CappedAlloc;

// SAFETY: defers to `System` for every allocation it does not refuse; a refusal returns null,
// which the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAlloc = CappedAlloc;

/// Reads `PlotOpener` may ask for: the 4 KiB probe; when a forged memo length outgrows it,
/// one re-read per header field after the memo (`NeedBytes` names the end of the next field
/// only: v2 flags, level, 10 pointers); then C2. 15 at most.
pub const OPEN_READS_MAX: usize = 15;

/// Reads the fuzzer's input front to back; past the end every read gives 0.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        u64::from_be_bytes(b)
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.iter_mut().for_each(|x| *x = self.u8());
        out
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
}

/// When `FUZZ_WRITE_SEEDS=<dir>` is set, writes `seeds()` there as files `seed-NNN` and exits;
/// otherwise does nothing. Called from each target's `init`, so the seeds come from the same
/// code and fixture the target runs on; `scripts/fuzz.sh` calls it before fuzzing.
pub fn write_seeds_if_asked(seeds: impl FnOnce() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os("FUZZ_WRITE_SEEDS") else { return };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("seed directory");
    let seeds = seeds();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("write seed");
    }
    eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    std::process::exit(0);
}

/// The fixture plot the targets fuzz around: `plots/k18-og-a.plot` in the fixture folder
/// (`test_support::fixtures`, made by `scripts/make-fixtures.sh`). 4 MB, k = 18.
pub fn fixture_path() -> PathBuf {
    test_support::fixtures().join("plots/k18-og-a.plot")
}

pub struct Fixture {
    pub bytes: Vec<u8>,
    pub plot: Plot,
}

/// The fixture, read and opened once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = fixture_path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}: run scripts/make-fixtures.sh first", path.display())
        });
        let plot = open_bytes(&bytes).expect("the fixture opens");
        Fixture { bytes, plot }
    })
}

pub use test_support::plot::{lookup_bytes, open_bytes, read_at};

/// Deterministic pseudo-random challenges (xorshift; no hashing needed).
pub fn challenges(seed: u64, n: usize) -> Vec<[u8; 32]> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            let mut c = [0u8; 32];
            for chunk in c.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_be_bytes());
            }
            c
        })
        .collect()
}

/// A real proof from the fixture: `(challenge, proof, quality)`.
pub struct RealProof {
    pub challenge: [u8; 32],
    pub proof: Vec<u8>,
    pub quality: [u8; 32],
}

/// Up to 8 real proofs of the fixture (found once per process).
pub fn real_proofs() -> &'static [RealProof] {
    static PROOFS: OnceLock<Vec<RealProof>> = OnceLock::new();
    PROOFS.get_or_init(|| {
        let f = fixture();
        let mut out = Vec::new();
        for c in challenges(0x5eed, 200) {
            let Ok(found) =
                lookup_bytes(&f.plot, &f.bytes, &c, Goal::QualitiesAndProofs, Mode::Complete)
            else {
                continue;
            };
            for hit in found {
                let proof = hit.proof.expect("asked for proofs");
                out.push(RealProof { challenge: c, proof, quality: hit.quality });
            }
            if out.len() >= 8 {
                break;
            }
        }
        assert!(!out.is_empty(), "no proof found in the fixture");
        out
    })
}
