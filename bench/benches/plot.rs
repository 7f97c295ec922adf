//! Criterion benches of the decoder's hot paths, from memory (no I/O): FSE decode, park
//! decode, one quality lookup, one full proof, verify. Needs the fixture plots
//! (`scripts/make-fixtures.sh`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use plot_format::layout::Geometry;
use plot_format::{drive_many, fse, park, Goal, Lookup, Mode, Plot};
use test_support::plot::{drive_bytes, drive_slices};

struct Sample {
    bytes: Vec<u8>,
    plot: Plot,
}

fn sample() -> Sample {
    let (_, bytes, plot) = test_support::plot::k18_fixture();
    Sample { bytes, plot }
}

fn run(s: &Sample, challenge: &[u8; 32], goal: Goal, mode: Mode, buf: &mut Vec<Vec<u8>>) -> usize {
    drive_bytes(s.plot.lookup(challenge, goal, mode), &s.bytes, buf).map_or(0, |f| f.len())
}

fn challenges(n: u32) -> Vec<[u8; 32]> {
    use sha2::{Digest, Sha256};
    (0..n).map(|i| Sha256::digest(i.to_be_bytes()).into()).collect()
}

fn benches(c: &mut Criterion) {
    let s = sample();
    let g = Geometry::new(s.plot.k());
    let t = *s.plot.tables();
    // Park 3 of table 1: a full park with 2047 deltas.
    let park_bytes = g.park_bytes(1) as usize;
    let start = t.table_start(1) as usize + 3 * park_bytes;
    let park = &s.bytes[start..start + park_bytes];
    let size_at = (g.line_point_bytes() + g.stubs_bytes()) as usize;
    let size = u16::from_le_bytes([park[size_at], park[size_at + 1]]) as usize;
    let stream = &park[size_at + 2..size_at + 2 + size];

    let mut group = c.benchmark_group("decode");
    group.bench_function("fse_full_park_2047_symbols", |b| {
        let mut out = [0u8; 2047];
        b.iter(|| {
            fse::decode(fse::park_table(1), black_box(stream), 2047, &mut out).expect("valid")
        })
    });
    // Two parks' streams (tables 1 and 2) decoded one after the other, then interleaved.
    let park2 = &s.bytes[t.table_start(2) as usize + 3 * g.park_bytes(2) as usize..];
    let size2 = u16::from_le_bytes([park2[size_at], park2[size_at + 1]]) as usize;
    let stream2 = &park2[size_at + 2..size_at + 2 + size2];
    group.bench_function("fse_two_parks_one_after_the_other", |b| {
        let (mut out, mut out2) = ([0u8; 2047], [0u8; 2047]);
        b.iter(|| {
            let n = fse::decode(fse::park_table(1), black_box(stream), 2047, &mut out);
            let n2 = fse::decode(fse::park_table(2), black_box(stream2), 2047, &mut out2);
            n.expect("valid") + n2.expect("valid")
        })
    });
    group.bench_function("fse_two_parks_interleaved", |b| {
        let (mut out, mut out2) = ([0u8; 2047], [0u8; 2047]);
        b.iter(|| {
            let [n, n2] = fse::decode_pair(
                (fse::park_table(1), black_box(stream), 2047, &mut out),
                (fse::park_table(2), black_box(stream2), 2047, &mut out2),
            );
            n.expect("valid") + n2.expect("valid")
        })
    });
    group.bench_function("park_line_point_last_entry", |b| {
        b.iter(|| park::line_point_at(black_box(park), g, 1, Mode::Complete, 2047).expect("valid"))
    });
    group.bench_function("park_line_point_middle_entry", |b| {
        b.iter(|| park::line_point_at(black_box(park), g, 1, Mode::Complete, 1024).expect("valid"))
    });
    group.finish();

    let set = challenges(256);
    let mut buf = Vec::new();
    let mut group = c.benchmark_group("lookup_from_memory");
    for (name, goal, mode) in [
        ("quality_chiapos", Goal::Qualities, Mode::Chiapos),
        ("quality_complete", Goal::Qualities, Mode::Complete),
        ("qualities_and_proofs_complete", Goal::QualitiesAndProofs, Mode::Complete),
    ] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % set.len();
                run(&s, &set[i], goal, mode, &mut buf)
            })
        });
    }
    // The same lookups without the copy of each read into a buffer: the decoder alone.
    let mut i = 0;
    group.bench_function("quality_chiapos_decode_only", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            drive_slices(s.plot.lookup(&set[i], Goal::Qualities, Mode::Chiapos), &s.bytes)
                .map_or(0, |f| f.len())
        })
    });
    // Eight quality lookups one after the other, then driven together (`drive_many`: their
    // C3 and walk parks decoded in pairs); both read through copies, as `harvester prove`.
    let mut i = 0;
    group.bench_function("quality_chiapos_8_one_by_one", |b| {
        b.iter(|| {
            i = (i + 8) % set.len();
            set[i..i + 8]
                .iter()
                .map(|ch| run(&s, ch, Goal::Qualities, Mode::Chiapos, &mut buf))
                .sum::<usize>()
        })
    });
    let mut i = 0;
    group.bench_function("quality_chiapos_8_together", |b| {
        b.iter(|| {
            i = (i + 8) % set.len();
            let mut lookups: Vec<Lookup> = set[i..i + 8]
                .iter()
                .map(|ch| s.plot.lookup(ch, Goal::Qualities, Mode::Chiapos))
                .collect();
            let read = |_, r: plot_format::ReadRequest, out: &mut Vec<u8>| {
                out.clear();
                out.extend_from_slice(test_support::plot::read_at(&s.bytes, r));
                Ok::<(), ()>(())
            };
            drive_many(&mut lookups, &mut buf, read).expect("memory reads");
            lookups.iter().filter_map(|l| l.outcome()?.as_ref().ok()).map(Vec::len).sum::<usize>()
        })
    });
    group.finish();

    // Verify: the proofs of the sample challenges.
    let mut proofs = Vec::new();
    for ch in &set {
        let lookup = s.plot.lookup(ch, Goal::QualitiesAndProofs, Mode::Complete);
        for f in drive_bytes(lookup, &s.bytes, &mut buf).expect("found") {
            proofs.push((*ch, f.proof.expect("asked")));
        }
    }
    let mut i = 0;
    c.bench_function("verify_proof", |b| {
        b.iter(|| {
            i = (i + 1) % proofs.len();
            let (ch, proof) = &proofs[i];
            plot_format::verify::validate_proof(s.plot.id(), s.plot.k(), ch, proof).expect("valid")
        })
    });
}

criterion_group!(name = decoder; config = Criterion::default().sample_size(30); targets = benches);
criterion_main!(decoder);
