//! A full open and lookup of the fixture plot whose reads come back corrupted.
//!
//! Input: `flags | index | challenge 32 | (read u8, at u16, xor u8)*` (at most 32 records).
//! Reads are numbered in the order the driver issues them: 0 is the header probe, 1 is C2,
//! 2 and on are the lookup's (C1, C3, P7, then tables 6 down to 1). A record xors one byte of
//! its read (`at` modulo the read's length). `flags & 1`: chiapos mode (else complete);
//! `(flags >> 1) & 3`: qualities, qualities and proofs, proof `index % 4`.
//!
//! Checks: no panic; open ends within `OPEN_READS_MAX` reads; the lookup ends within 10,000
//! reads, each inside the file and below 1 MiB; no allocation above 64 MiB (`CappedAlloc`).
//! Every proof the lookup returns is 8k bytes, and if the verifier accepts it, its quality is
//! the one the lookup reported. With no byte changed, complete mode answers (or says there is no proof
//! `index`) and every proof verifies. Driven again together with a clean lookup of a challenge
//! that has proofs (`drive_many`: parks of the two decoded in pairs), the clean one answers as
//! it does alone, and the corrupted one answers as before (or fails as before, perhaps naming
//! another bad read of a round).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plot_format::verify::validate_proof;
use plot_format::{drive, drive_many, Goal, Mode, PlotError, PlotOpener, ReadRequest};
use plot_format_fuzz::{
    fixture, lookup_bytes, read_at, real_proofs, write_seeds_if_asked, Input, OPEN_READS_MAX,
};

const RECORDS_MAX: usize = 32;

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, real) in real_proofs().iter().take(4).enumerate() {
        for flags in [0u8, 1, 2, 3, 4, 5] {
            seeds.push([&[flags, 0][..], &real.challenge].concat());
        }
        // One corrupted byte in each of the reads of a proof lookup.
        for read in 0..12u8 {
            let at = (i as u16).wrapping_mul(977).to_be_bytes();
            seeds.push([&[2u8, 0][..], &real.challenge, &[read, at[0], at[1], 0x5a]].concat());
        }
    }
    seeds
}

/// The fixture's bytes with the input's corruptions, one read at a time.
struct Reader {
    records: Vec<(u8, u16, u8)>,
    reads: u32,
    changed: bool,
}

impl Reader {
    fn read(&mut self, bytes: &[u8], r: ReadRequest, buf: &mut Vec<u8>) {
        assert!(r.end() <= bytes.len() as u64, "read past the end of the file: {r:?}");
        assert!(r.len <= 1 << 20, "a read of {} bytes", r.len);
        buf.clear();
        buf.extend_from_slice(read_at(bytes, r));
        for &(read, at, xor) in &self.records {
            if u32::from(read) == self.reads && !buf.is_empty() && xor != 0 {
                let n = buf.len();
                buf[usize::from(at) % n] ^= xor;
                self.changed = true;
            }
        }
        self.reads += 1;
    }
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let f = fixture();
    let bytes = &f.bytes[..];
    let mut input = Input::new(data);
    let flags = input.u8();
    let index = u32::from(input.u8() % 4);
    let challenge: [u8; 32] = input.array();
    let mut records = Vec::new();
    while !input.is_empty() && records.len() < RECORDS_MAX {
        records.push((input.u8(), input.u16(), input.u8()));
    }
    let mode = if flags & 1 != 0 { Mode::Chiapos } else { Mode::Complete };
    let goal = match (flags >> 1) & 3 {
        0 => Goal::Qualities,
        1 => Goal::QualitiesAndProofs,
        _ => Goal::Proof { index },
    };
    let mut reader = Reader { records, reads: 0, changed: false };
    let mut buf = Vec::new();

    let mut opener = PlotOpener::new(bytes.len() as u64);
    let mut plot = None;
    for _ in 0..OPEN_READS_MAX {
        reader.read(bytes, opener.next_read(), &mut buf);
        match opener.supply(&buf) {
            Ok(Some(p)) => {
                plot = Some(p);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                assert!(reader.changed, "the intact fixture does not open: {e}");
                return;
            }
        }
    }
    let plot = plot.expect("opening ends within OPEN_READS_MAX reads");
    let opening_reads = reader.reads;

    let mut lookup = plot.lookup(&challenge, goal, mode);
    let mut lookup_reads = 0u32;
    drive(&mut lookup, &mut Vec::new(), |r, buf| {
        lookup_reads += 1;
        assert!(lookup_reads <= 10_000, "a lookup must end");
        reader.read(bytes, r, buf);
        Ok::<(), ()>(())
    })
    .expect("memory reads do not fail");
    let outcome = lookup.into_outcome().expect("driven to the end");

    let reals = real_proofs();
    let partner = reals[usize::from(flags >> 3) % reals.len()].challenge;
    let mut lookups = [plot.lookup(&challenge, goal, mode), plot.lookup(&partner, goal, mode)];
    reader.reads = opening_reads;
    drive_many(&mut lookups, &mut Vec::new(), |l, r, buf| {
        if l == 0 {
            reader.read(bytes, r, buf);
        } else {
            buf.clear();
            buf.extend_from_slice(read_at(bytes, r));
        }
        Ok::<(), ()>(())
    })
    .expect("memory reads do not fail");
    let [again, partner_outcome] = lookups.map(|l| l.into_outcome().expect("driven to the end"));
    assert_eq!(partner_outcome, lookup_bytes(&plot, bytes, &partner, goal, mode));
    match (&outcome, &again) {
        (Ok(_), _) | (_, Ok(_)) => assert_eq!(outcome, again, "driven with another lookup"),
        (Err(_), Err(_)) => {}
    }

    let k = plot.k();
    match outcome {
        Ok(found) => {
            for hit in &found {
                let Some(proof) = &hit.proof else { continue };
                assert_eq!(proof.len(), 8 * usize::from(k));
                match validate_proof(plot.id(), k, &challenge, proof) {
                    Ok(quality) => assert_eq!(quality, hit.quality, "valid, another quality"),
                    Err(e) => assert!(reader.changed, "the intact plot gave a bad proof: {e}"),
                }
            }
        }
        Err(PlotError::NoProof { .. }) if matches!(goal, Goal::Proof { .. }) => {}
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(reader.changed || mode == Mode::Chiapos, "the intact plot fails: {e}");
        }
    }
});
