//! Optional side-by-side with the pure-Rust peer prover `dg_xch_pos` (GalactechsLLC), on the
//! same k18 fixture plot and the same challenges as `benches/plot.rs`, both from memory.
//! Off by default: `cargo bench -p bench --features peer --bench peer`.
//!
//! Fairness:
//! - Both sides read the whole plot from a `Vec<u8>` held in memory (no file I/O): ours
//!   through `plot_format::drive` (`test_support::plot::drive_bytes`), theirs through a
//!   `PlotFile` whose "file" is a `std::io::Cursor` over the same bytes (tokio implements
//!   `AsyncRead`/`AsyncSeek` for it).
//! - `dg_xch_pos` is async (tokio). One current-thread runtime is created once, outside every
//!   timed loop, and each timed iteration is a `block_on` of one lookup; nothing in it ever
//!   waits (the cursor is always ready), so the runtime cost is the future polling only.
//!   Their `PlotReader` is built once (it loads C2 at construction), like our `Plot`.
//! - Both sides run once over every challenge before timing (asserting agreement), so both
//!   are warm.
//! - Qualities: ours `Goal::Qualities` in `Mode::Chiapos`, theirs
//!   `fetch_qualities_for_challenge`. Proofs: ours `Goal::QualitiesAndProofs` in
//!   `Mode::Chiapos` (every proof of the challenge, plus their qualities, which cost one
//!   SHA-256 each), theirs `fetch_proofs_for_challenge` (every proof of the challenge, in
//!   proof order, packed into k u64 words; deduplicated through a hash set). A challenge with
//!   no match is an empty answer on our side and a `NotFound` error on theirs; both count as
//!   "no answer".

use std::fmt;
use std::io::{Cursor, ErrorKind};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use dg_xch_core::plots::{PlotFile, PlotHeader, PlotTable};
use dg_xch_core::traits::SizedBytes;
use dg_xch_pos::plots::plot_reader::{read_plot_header, PlotReader};
use plot_format::{Found, Goal, Mode, Plot};
use test_support::plot::drive_bytes;
use tokio::sync::Mutex;

/// An in-memory plot for `dg_xch_pos`: the header it parsed and a cursor over the bytes.
struct MemPlot {
    name: String,
    header: PlotHeader,
    size: u64,
    file: Arc<Mutex<Cursor<Vec<u8>>>>,
}

impl fmt::Display for MemPlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl<'a> PlotFile<'a, Cursor<Vec<u8>>> for MemPlot {
    /// The default, except that C2 is reported without its trailing sentinel entry (f7 = 0).
    ///
    /// Workaround for dg_xch_pos 2.1.3 on small plots: `load_c2entries` keeps C2 entries
    /// while they do not decrease, so on a plot whose only real C2 entry (fewer than 10^8
    /// entries: k <= 26) is 0 (its smallest f7 is 0, the usual case; every k18 fixture) it
    /// also keeps the sentinel 0, and `get_p7indices_for_f7` then starts in the non-existent
    /// C1 group 1 and finds nothing for any challenge. Where the last real C2 entry is above
    /// 0 (every k >= 27 plot) their loader drops the sentinel itself, so this changes nothing.
    fn table_size(&'a self, table: PlotTable) -> u64 {
        let size = table_size_default(&self.header, self.size, table);
        if table == PlotTable::C2 {
            size - u64::from(self.header.k()).div_ceil(8)
        } else {
            size
        }
    }
    fn header(&'a self) -> &'a PlotHeader {
        &self.header
    }
    fn plot_size(&'a self) -> &'a u64 {
        &self.size
    }
    fn load_p7_park(&'a self, _index: u64) -> u128 {
        unreachable!("not used by PlotReader")
    }
    fn file(&'a self) -> Arc<Mutex<Cursor<Vec<u8>>>> {
        self.file.clone()
    }
}

/// `PlotFile::table_size`'s default body (dg_xch_core 2.1), for V1 (chiapos) headers.
fn table_size_default(header: &PlotHeader, plot_size: u64, table: PlotTable) -> u64 {
    let PlotHeader::V1(h) = header else { panic!("the fixtures are chiapos v1 plots") };
    let address = h.table_begin_pointers[table as usize];
    match h.table_begin_pointers.get(table as usize + 1) {
        Some(&next) if next > address => next - address,
        _ => plot_size - address,
    }
}

type PeerReader = PlotReader<Cursor<Vec<u8>>, MemPlot>;

struct Sample {
    bytes: Vec<u8>,
    plot: Plot,
    peer: PeerReader,
    rt: tokio::runtime::Runtime,
}

fn sample() -> Sample {
    let (path, bytes, plot) = test_support::plot::k18_fixture();

    // The one runtime of the peer side, created here, outside every timed loop.
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let header = read_plot_header(&mut std::fs::File::open(&path).expect("readable fixture"))
        .expect("dg_xch_pos parses the header");
    let mem = MemPlot {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        header,
        size: bytes.len() as u64,
        file: Arc::new(Mutex::new(Cursor::new(bytes.clone()))),
    };
    let peer = rt.block_on(PlotReader::new(mem, None, None)).expect("dg_xch_pos opens the plot");
    eprintln!("fixture: {} (k={})", path.display(), plot.k());
    Sample { bytes, plot, peer, rt }
}

fn ours(s: &Sample, challenge: &[u8; 32], goal: Goal, buf: &mut Vec<Vec<u8>>) -> Vec<Found> {
    let lookup = s.plot.lookup(challenge, goal, Mode::Chiapos);
    drive_bytes(lookup, &s.bytes, buf).expect("our lookup succeeds")
}

fn not_found<T>(r: std::io::Result<Vec<T>>) -> Vec<T> {
    match r {
        Ok(v) => v,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("dg_xch_pos lookup failed: {e}"),
    }
}

fn theirs_qualities(s: &Sample, challenge: &[u8; 32]) -> Vec<[u8; 32]> {
    let q = not_found(s.rt.block_on(s.peer.fetch_qualities_for_challenge(challenge)));
    q.into_iter().map(|(_, q)| q.bytes()).collect()
}

fn theirs_proofs(s: &Sample, challenge: &[u8; 32]) -> Vec<Vec<u64>> {
    not_found(s.rt.block_on(s.peer.fetch_proofs_for_challenge(challenge)))
}

/// Their proof: the 64 x values (proof order) packed MSB first into k big-endian u64 words,
/// which is our packed proof (8k bytes) read as u64s.
fn their_proof_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn challenges(n: u32) -> Vec<[u8; 32]> {
    use sha2::{Digest, Sha256};
    (0..n).map(|i| Sha256::digest(i.to_be_bytes()).into()).collect()
}

/// Runs both sides over every challenge once: warms both up and checks that they agree.
fn check(s: &Sample, set: &[[u8; 32]]) {
    let mut buf = Vec::new();
    let (mut answered, mut entries, mut q_diff, mut p_diff) = (0, 0, 0, 0);
    for ch in set {
        let our_q: Vec<[u8; 32]> =
            ours(s, ch, Goal::Qualities, &mut buf).iter().map(|f| f.quality).collect();
        let their_q = theirs_qualities(s, ch);
        if our_q != their_q {
            q_diff += 1;
            eprintln!(
                "qualities differ for {}: ours {:?} theirs {:?}",
                hex::encode(ch),
                our_q.iter().map(hex::encode).collect::<Vec<_>>(),
                their_q.iter().map(hex::encode).collect::<Vec<_>>()
            );
        }
        // Theirs go through a hash set (deduplicated, unordered): compare as sorted sets.
        let mut our_p: Vec<Vec<u8>> = ours(s, ch, Goal::QualitiesAndProofs, &mut buf)
            .into_iter()
            .map(|f| f.proof.expect("asked"))
            .collect();
        let mut their_p: Vec<Vec<u8>> =
            theirs_proofs(s, ch).iter().map(|p| their_proof_bytes(p)).collect();
        our_p.sort();
        our_p.dedup();
        their_p.sort();
        if our_p != their_p {
            p_diff += 1;
            eprintln!(
                "proofs differ for {}: ours {} theirs {}",
                hex::encode(ch),
                our_p.len(),
                their_p.len()
            );
        }
        answered += usize::from(!our_q.is_empty());
        entries += our_q.len();
    }
    eprintln!(
        "agreement over {} challenges ({answered} with an answer, {entries} entries): \
         {q_diff} differ in qualities, {p_diff} in proofs",
        set.len()
    );
    assert_eq!((q_diff, p_diff), (0, 0), "ours and dg_xch_pos disagree");
}

fn benches(c: &mut Criterion) {
    let s = sample();
    let set = challenges(256);
    check(&s, &set);

    let mut buf = Vec::new();
    let mut group = c.benchmark_group("peer_quality_chiapos");
    let mut i = 0;
    group.bench_function("ours", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            ours(&s, &set[i], Goal::Qualities, &mut buf).len()
        })
    });
    let mut i = 0;
    group.bench_function("dg_xch_pos", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            theirs_qualities(&s, &set[i]).len()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("peer_full_proofs_chiapos");
    let mut i = 0;
    group.bench_function("ours", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            ours(&s, &set[i], Goal::QualitiesAndProofs, &mut buf).len()
        })
    });
    let mut i = 0;
    group.bench_function("dg_xch_pos", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            theirs_proofs(&s, &set[i]).len()
        })
    });
    group.finish();
}

criterion_group!(name = peer; config = Criterion::default().sample_size(30); targets = benches);
criterion_main!(peer);
