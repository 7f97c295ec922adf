//! Header parsing and plot opening on arbitrary bytes.
//!
//! Input: `flags | [file_len u64 if flags & 1] | [challenge 32 if flags & 2] | prefix`.
//!
//! 1. `parse_header(prefix, file_len)` (file_len: the input's, else the prefix's length): never
//!    panics; an accepted header has k in 18..=50, pointers in order inside the file and a
//!    length within the prefix; `NeedBytes(n)` asks for more than it got, at most the file and
//!    at most ~64 KiB (both header length fields are 16 bits); `c2_read` stays inside the file.
//! 2. `PlotOpener` on the fixture plot with its first bytes replaced by `prefix` (and its
//!    length set to file_len, zeros past the fixture): opens within `OPEN_READS_MAX` reads or
//!    fails with a typed error. When it opens, a lookup (goal and mode from the flags) ends
//!    within 10,000 reads, each inside the file and below 1 MiB, with proofs of 8k bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plot_format::header::{parse_header, HeaderStatus};
use plot_format::layout::{K_MAX, K_MIN};
use plot_format::{c2_read, drive, Goal, Mode, PlotOpener, ReadRequest};
use plot_format_fuzz::{fixture, real_proofs, write_seeds_if_asked, Input, OPEN_READS_MAX};

/// Reads the harness serves; larger ones (C2 of a large k, asked for by a forged header) are
/// bounded by k, not by file bytes, and are not served.
const SERVED_BYTES_MAX: u64 = 16 << 20;

fn seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let header_len = f.plot.header().header_len as usize;
    let header = &f.bytes[..header_len];
    let challenge = real_proofs()[0].challenge;
    let mut seeds = Vec::new();
    // The real header: alone, with a challenge that has a proof, with the real file length.
    seeds.push([&[0u8][..], header].concat());
    for flags in [2u8, 2 | 4, 2 | 8 | 16] {
        seeds.push([&[flags][..], &challenge, header].concat());
    }
    let len = (f.bytes.len() as u64).to_be_bytes();
    seeds.push([&[3u8][..], &len, &challenge, header].concat());
    // Cut inside every field.
    for cut in [0, 3, 18, 19, 50, 51, 53, 57, 59, header_len - 81, header_len - 1] {
        seeds.push([&[0u8][..], &header[..cut]].concat());
    }
    // The same tables behind a bladebit v2 header (compression level 0), and a compressed one.
    let h = f.plot.header();
    let mut v2 = b"PLOT".to_vec();
    v2.extend(2u32.to_le_bytes());
    v2.extend(h.id);
    v2.push(h.k);
    v2.extend((h.memo.len() as u16).to_be_bytes());
    v2.extend(&h.memo);
    v2.extend(0u32.to_le_bytes());
    for p in h.table_pointers {
        v2.extend(p.to_be_bytes());
    }
    seeds.push([&[2u8][..], &challenge, &v2].concat());
    let mut compressed = v2.clone();
    let flags_at = v2.len() - 84;
    compressed[flags_at] = 1;
    compressed.insert(flags_at + 4, 3);
    seeds.push([&[0u8][..], &compressed].concat());
    seeds
}

/// The fixture with its first bytes replaced by `head`, `len` bytes long (zeros past the
/// fixture's end).
struct File<'a> {
    head: &'a [u8],
    base: &'a [u8],
    len: u64,
}

impl File<'_> {
    /// The bytes of `r` (short at the end of the file); `None` if too large to serve.
    fn read(&self, r: ReadRequest, buf: &mut Vec<u8>) -> Option<()> {
        buf.clear();
        let end = r.end().min(self.len);
        let start = r.offset.min(end);
        if end - start > SERVED_BYTES_MAX {
            return None;
        }
        let (start, end) = (start as usize, end as usize);
        buf.resize(end - start, 0);
        if start < self.base.len() {
            let base_end = end.min(self.base.len());
            buf[..base_end - start].copy_from_slice(&self.base[start..base_end]);
        }
        if start < self.head.len() {
            let head_end = end.min(self.head.len());
            buf[..head_end - start].copy_from_slice(&self.head[start..head_end]);
        }
        Some(())
    }
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let f = fixture();
    let mut input = Input::new(data);
    let flags = input.u8();
    let file_len = if flags & 1 != 0 { Some(input.u64()) } else { None };
    let challenge: [u8; 32] = if flags & 2 != 0 { input.array() } else { [0; 32] };
    let prefix = input.rest();

    check_parse(prefix, file_len.unwrap_or(prefix.len() as u64));
    check_parse(prefix, f.bytes.len() as u64);

    let file = File { head: prefix, base: &f.bytes, len: file_len.unwrap_or(f.bytes.len() as u64) };
    let mut opener = PlotOpener::new(file.len);
    let mut buf = Vec::new();
    let mut plot = None;
    for _ in 0..OPEN_READS_MAX {
        let r = opener.next_read();
        assert!(r.end() <= file.len, "open reads past the end: {r:?}");
        if file.read(r, &mut buf).is_none() {
            return;
        }
        match opener.supply(&buf) {
            Ok(Some(p)) => {
                plot = Some(p);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return;
            }
        }
    }
    let plot = plot.expect("opening ends within OPEN_READS_MAX reads");
    assert!((K_MIN..=K_MAX).contains(&plot.k()));
    assert!(plot.tables().pointers.iter().all(|&p| p <= file.len));

    let goal = match (flags >> 2) & 3 {
        0 => Goal::Qualities,
        1 => Goal::QualitiesAndProofs,
        _ => Goal::Proof { index: u32::from(flags >> 5) },
    };
    let mode = if flags & 0x80 != 0 { Mode::Chiapos } else { Mode::Complete };
    let mut lookup = plot.lookup(&challenge, goal, mode);
    let mut reads = 0u32;
    let served = drive(&mut lookup, &mut Vec::new(), |r, buf| {
        reads += 1;
        assert!(reads <= 10_000, "a lookup must end");
        assert!(r.end() <= file.len, "lookup reads past the end: {r:?}");
        assert!(r.len <= 1 << 20, "a lookup read of {} bytes", r.len);
        file.read(r, buf).ok_or(())
    });
    if served.is_err() {
        return;
    }
    match lookup.into_outcome().expect("driven to the end") {
        Ok(found) => {
            for hit in found {
                if let Some(proof) = hit.proof {
                    assert_eq!(proof.len(), 8 * usize::from(plot.k()));
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

fn check_parse(prefix: &[u8], file_len: u64) {
    match parse_header(prefix, file_len) {
        Ok(h) => {
            assert!((K_MIN..=K_MAX).contains(&h.k));
            assert!(h.header_len <= prefix.len() as u64);
            let mut previous = h.header_len;
            for p in h.table_pointers {
                assert!(previous <= p && p <= file_len, "pointers out of order or past the end");
                previous = p;
            }
            if let Ok(r) = c2_read(&h) {
                assert_eq!(r.offset, h.table_pointers[8]);
                assert!(r.end() <= file_len);
            }
        }
        Err(HeaderStatus::NeedBytes(n)) => {
            assert!(n > prefix.len() as u64, "asks for {n} bytes, has {}", prefix.len());
            assert!(n <= file_len);
            assert!(n <= 70_000, "a header of {n} bytes");
        }
        Err(HeaderStatus::Invalid(e)) => assert!(!e.to_string().is_empty()),
    }
}
