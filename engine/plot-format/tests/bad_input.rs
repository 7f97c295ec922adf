//! Bad input: truncated files, random bytes, wrong magic, corrupt pointers and parks. Always a
//! typed error or an answer; never a panic, an endless loop or an allocation sized by file bytes.

mod support;

use plot_format::verify::validate_proof;
use plot_format::{Goal, Mode, PlotError};
use proptest::prelude::*;
use support::*;

fn sample() -> (Vec<u8>, Fixture) {
    let fixture = fixtures().into_iter().find(|f| f.k == 18).expect("a k=18 fixture");
    (std::fs::read(&fixture.path).expect("readable"), fixture)
}

/// Offsets of the header fields and table pointers of a v1 file with F = 4.
fn pointer_offset(bytes: &[u8], index: usize) -> usize {
    let memo_len = u16::from_be_bytes([bytes[58], bytes[59]]) as usize;
    60 + memo_len + 8 * index
}

#[test]
fn truncated_files_are_rejected_at_open() {
    let (bytes, _) = sample();
    let len = bytes.len();
    let mut offsets: Vec<usize> = vec![0, 1, 4, 18, 19, 50, 51, 52, 54, 58, 60, 100, 200, 300];
    offsets.extend((1..400).map(|i| i * len / 400));
    offsets.extend([len - 1, len - 2, len - 3000, len - 10_000]);
    for table in 0..10 {
        let p = u64::from_be_bytes(
            bytes[pointer_offset(&bytes, table)..][..8].try_into().expect("8 bytes"),
        ) as usize;
        offsets.extend([p.saturating_sub(1), p, p + 1]);
    }
    for off in offsets.into_iter().filter(|&o| o < len) {
        let result = open_bytes(&bytes[..off]);
        assert!(result.is_err(), "a file truncated at {off} of {len} opened");
    }
}

#[test]
fn header_errors_are_typed() {
    let (bytes, _) = sample();
    let check = |mutate: &dyn Fn(&mut Vec<u8>), want: &dyn Fn(&PlotError) -> bool, what: &str| {
        let mut b = bytes.clone();
        mutate(&mut b);
        match open_bytes(&b) {
            Err(e) => assert!(want(&e), "{what}: unexpected error {e}"),
            Ok(_) => panic!("{what}: opened"),
        }
    };
    check(&|b| b[0] = b'X', &|e| matches!(e, PlotError::BadMagic), "magic");
    check(&|b| b[51] = 17, &|e| matches!(e, PlotError::KOutOfRange { k: 17 }), "k=17");
    check(&|b| b[51] = 51, &|e| matches!(e, PlotError::KOutOfRange { k: 51 }), "k=51");
    check(&|b| b[57] = b'2', &|e| matches!(e, PlotError::UnknownFormat { .. }), "v2.0 description");
    check(&|b| b[53] = 5, &|e| matches!(e, PlotError::UnknownFormat { .. }), "description length");
    let p3 = pointer_offset(&bytes, 2);
    check(
        &|b| b[p3..p3 + 8].copy_from_slice(&u64::MAX.to_be_bytes()),
        &|e| matches!(e, PlotError::PointersOutOfOrder { .. } | PlotError::PointerPastEnd { .. }),
        "pointer past end",
    );
    let c3 = pointer_offset(&bytes, 9);
    let len = bytes.len() as u64;
    check(
        &|b| b[c3..c3 + 8].copy_from_slice(&(len + 1).to_be_bytes()),
        &|e| matches!(e, PlotError::PointerPastEnd { index: 10, .. }),
        "C3 past end",
    );
    check(
        &|b| b[p3..p3 + 8].copy_from_slice(&1u64.to_be_bytes()),
        &|e| matches!(e, PlotError::PointersOutOfOrder { index: 3, .. }),
        "pointers out of order",
    );
    // bladebit "PLOT" headers: compressed and unknown versions are refused.
    let mut v2 = b"PLOT".to_vec();
    v2.extend(2u32.to_le_bytes());
    v2.extend([7u8; 32]);
    v2.push(32);
    v2.extend(0u16.to_be_bytes());
    v2.extend(1u32.to_le_bytes());
    v2.push(3);
    v2.resize(4096, 0);
    assert!(matches!(open_bytes(&v2), Err(PlotError::Compressed { level: 3 })));
    v2[4] = 3;
    assert!(matches!(open_bytes(&v2), Err(PlotError::UnsupportedV2Version { version: 3 })));
}

/// The same tables behind a bladebit v2 header (compression level 0) give the same answers.
#[test]
fn uncompressed_v2_header_serves_like_v1() {
    let (bytes, fixture) = sample();
    let v1 = MemPlot::load(&fixture.path);
    let memo = v1.plot.memo().to_vec();
    let old_len = v1.plot.header().header_len as usize;
    let mut v2 = b"PLOT".to_vec();
    v2.extend(2u32.to_le_bytes());
    v2.extend(v1.plot.id());
    v2.push(v1.plot.k());
    v2.extend((memo.len() as u16).to_be_bytes());
    v2.extend(&memo);
    v2.extend(0u32.to_le_bytes());
    let new_len = v2.len() + 80;
    for p in v1.plot.header().table_pointers {
        v2.extend((p - old_len as u64 + new_len as u64).to_be_bytes());
    }
    v2.extend(&bytes[old_len..]);
    let plot = open_bytes(&v2).expect("v2 level 0 opens");
    for challenge in challenges("v2", 50) {
        let a = v1.lookup(&challenge, Goal::QualitiesAndProofs, Mode::Complete).expect("v1");
        let b = lookup_bytes(&plot, &v2, &challenge, Goal::QualitiesAndProofs, Mode::Complete)
            .expect("v2");
        assert_eq!(a, b);
    }
}

/// The reads a lookup makes on intact bytes.
fn reads_of(mem: &MemPlot, challenge: &[u8; 32], goal: Goal, mode: Mode) -> Vec<(u64, u64)> {
    let mut lookup = mem.plot.lookup(challenge, goal, mode);
    let mut reads = Vec::new();
    plot_format::drive(&mut lookup, &mut Vec::new(), |r, buf| {
        reads.push((r.offset, r.end()));
        buf.clear();
        buf.extend_from_slice(&mem.bytes[r.offset as usize..r.end() as usize]);
        Ok::<(), ()>(())
    })
    .expect("memory reads");
    reads
}

/// Corrupt bytes in every table, aimed at bytes that lookups really read: each lookup ends
/// with an answer or a typed error, and the errors name what broke.
#[test]
fn corrupt_tables_never_panic_or_loop() {
    let (_, fixture) = sample();
    let mem = MemPlot::load(&fixture.path);
    let t = *mem.plot.tables();
    let pool = challenges("corrupt", 300);
    let goal = Goal::QualitiesAndProofs;
    let traced: Vec<_> =
        pool.iter().map(|c| (c, reads_of(&mem, c, goal, Mode::Complete))).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut lookups, mut errors, mut changed) = (0, 0, 0);
    for table in [1u8, 2, 3, 4, 5, 6, 7, 8, 10] {
        let (start, end) = (t.table_start(table), t.table_end(table));
        for round in 0..8 {
            // A challenge whose walk reads this table; corrupt a burst inside one of its reads.
            let (challenge, reads) = traced[(next() % traced.len() as u64) as usize].clone();
            let Some(&(from, to)) = reads.iter().find(|(o, e)| *o >= start && *e <= end) else {
                continue;
            };
            let mut b = mem.bytes.clone();
            // Every fourth round zeroes the whole read (a lost block); the others flip a burst.
            let wipe = round % 4 == 0;
            let (at, n) = if wipe {
                (from, to - from)
            } else {
                (from + next() % (to - from), 1 + next() % 48)
            };
            for i in at..(at + n).min(to) {
                b[i as usize] = if wipe { 0 } else { b[i as usize] ^ (next() as u8 | 1) };
            }
            let clean = mem.lookup(challenge, goal, Mode::Complete);
            for mode in [Mode::Chiapos, Mode::Complete] {
                for goal in [Goal::Qualities, goal, Goal::Proof { index: 0 }] {
                    lookups += 1;
                    match lookup_bytes(&mem.plot, &b, challenge, goal, mode) {
                        Err(e) => {
                            errors += 1;
                            assert!(!e.to_string().is_empty());
                        }
                        Ok(found) => {
                            let clean = clean.as_ref().expect("clean lookup");
                            // A proof that the intact plot does not give must fail verification.
                            for f in &found {
                                let Some(proof) = &f.proof else { continue };
                                if !clean.iter().any(|c| c.proof.as_ref() == Some(proof)) {
                                    changed += 1;
                                    let verdict =
                                        validate_proof(mem.plot.id(), 18, challenge, proof);
                                    assert!(verdict.is_err(), "table {table}: a valid new proof");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{lookups} lookups on corrupt tables: {errors} typed errors, {changed} wrong proofs, all rejected by the verifier");
    assert!(errors > 0 && changed > 0, "the corruption must reach the answers");
}
/// The park decoder on arbitrary bytes: an answer or a typed error, never a panic.
#[test]
fn park_decoder_takes_any_bytes() {
    let g = plot_format::layout::Geometry::new(18);
    proptest!(ProptestConfig::with_cases(2000), |(
        bytes in proptest::collection::vec(any::<u8>(), 0..6000),
        table in 1u8..=6,
        p in 0usize..2048,
        complete in any::<bool>(),
    )| {
        let mode = if complete { Mode::Complete } else { Mode::Chiapos };
        let _ = plot_format::park::line_point_at(&bytes, g, table, mode, p);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_open_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        prop_assert!(open_bytes(&bytes).is_err());
    }

    /// A valid header over random tables: lookups end, with an error or an answer.
    #[test]
    fn random_tables_never_panic(seed in any::<u64>(), challenge in any::<[u8; 32]>()) {
        let (bytes, _) = sample();
        let header_len = pointer_offset(&bytes, 10);
        let mut b = bytes[..header_len].to_vec();
        let mut x = seed | 1;
        b.extend((header_len..bytes.len()).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }));
        if let Ok(plot) = open_bytes(&b) {
            for mode in [Mode::Chiapos, Mode::Complete] {
                let _ = lookup_bytes(&plot, &b, &challenge, Goal::QualitiesAndProofs, mode);
            }
        }
    }
}
