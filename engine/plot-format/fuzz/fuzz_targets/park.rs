//! Park and FSE decoding on arbitrary bytes.
//!
//! Input: `selector | ...`; `selector % 3` picks:
//! 0. `park::line_point_at(bytes, Geometry::new(k), table, mode, p)` (k 18..=50, table 1..=6,
//!    mode from the selector's top bit, any p): an answer or a typed error; answers grow with p
//!    (a smaller p decodes too, to a line point no larger), and the line point splits into
//!    (x, y) with y < x that map back to it.
//! 1. `fse::decode` and `fse::Stream` (park tables 1..6 or C3; max_out 2047, 10000 or from the
//!    input; any dst length; chunk sizes from the input) against one full decode: `decode`
//!    writes a prefix of it, fails with `TooManySymbols` exactly when it has more than max_out
//!    symbols and dst can hold max_out; the stream yields it in any chunks (or its first
//!    max_out - 1 symbols, then the error, for ever).
//! 2. `line_point_to_square` / `square_to_line_point` on any 128-bit value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plot_format::fse::{self, DTable, FseError};
use plot_format::layout::{Geometry, K_MAX, K_MIN};
use plot_format::park::{line_point_at, line_point_to_square, square_to_line_point};
use plot_format::Mode;
use plot_format_fuzz::{fixture, write_seeds_if_asked, Input};

fn seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let t = f.plot.tables();
    let g = t.geometry;
    let mut seeds = Vec::new();
    for table in 1..=6u8 {
        let size = g.park_bytes(table);
        let parks = (t.table_end(table) - t.table_start(table)) / size;
        for park in [0, parks / 2, parks - 1] {
            let at = (t.table_start(table) + park * size) as usize;
            let bytes = &f.bytes[at..at + size as usize];
            // The line point of the last entry (complete mode) and of entry 100 (chiapos).
            seeds.push([&[0u8, 0, table - 1, 0x07, 0xff][..], bytes].concat());
            seeds.push([&[0x80u8, 0, table - 1, 0, 100][..], bytes].concat());
            // Its delta stream alone, for the FSE decoder.
            let size_at = (g.line_point_bytes() + g.stubs_bytes()) as usize;
            let n = usize::from(u16::from_le_bytes([bytes[size_at], bytes[size_at + 1]]) & 0x7fff);
            let stream = &bytes[size_at + 2..(size_at + 2 + n).min(bytes.len())];
            seeds.push([&[1u8, table - 1, 0, 0, 3, 17, 200, 1][..], stream].concat());
        }
    }
    // C3 parks: the stream after the 2-byte length.
    let c3 = g.c3_park_bytes() as usize;
    for park in [0usize, 3, 20] {
        let at = t.table_start(10) as usize + park * c3;
        let bytes = &f.bytes[at..at + c3];
        let n = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        seeds.push([&[1u8, 6, 1, 0, 1, 255][..], &bytes[2..2 + n]].concat());
        seeds.push([&[1u8, 6, 2, 100, 1, 2, 7][..], &bytes[2..2 + n]].concat());
    }
    seeds.push([&[2u8][..], &[0xff; 16]].concat());
    seeds.push([&[2u8][..], &[0; 8], &[0x01; 8]].concat());
    seeds
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.u8();
    match selector % 3 {
        0 => park(&mut input, selector),
        1 => fse_streams(&mut input),
        _ => {
            let lp = u128::from_be_bytes(input.array());
            check_square(lp);
            let (a, b) = (input.u64() >> 14, input.u64() >> 14);
            if a != b {
                assert_eq!(line_point_to_square(square_to_line_point(a, b)), (a.max(b), a.min(b)));
            }
        }
    }
});

fn park(input: &mut Input<'_>, selector: u8) {
    let k = K_MIN + input.u8() % (K_MAX - K_MIN + 1);
    let table = 1 + input.u8() % 6;
    let mode = if selector & 0x80 != 0 { Mode::Chiapos } else { Mode::Complete };
    let p = usize::from(input.u16());
    let bytes = input.rest();
    let g = Geometry::new(k);
    match line_point_at(bytes, g, table, mode, p) {
        Ok(lp) => {
            check_square(lp);
            let lower = line_point_at(bytes, g, table, mode, p / 2)
                .expect("a park that decodes up to p decodes up to p / 2");
            assert!(lower <= lp, "line points of one park do not decrease");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_square(lp: u128) {
    let (x, y) = line_point_to_square(lp);
    if lp < 1 << 120 {
        assert!(y < x, "({x}, {y}) from {lp}");
        assert_eq!(square_to_line_point(x, y), lp);
    }
}

fn fse_streams(input: &mut Input<'_>) {
    let t = input.u8() % 7;
    let table = if t == 6 { fse::c3_table() } else { fse::park_table(t + 1) };
    let max_out = match input.u8() % 4 {
        0 => 2047,
        1 => 10_000,
        2 => usize::from(input.u8()),
        _ => usize::from(input.u16()),
    };
    let dst_len = match input.u8() % 3 {
        0 => max_out,
        1 => usize::from(input.u16()) % (max_out + 1),
        _ => max_out + usize::from(input.u8()),
    };
    let chunks: Vec<usize> = (0..=input.u8() % 4).map(|_| usize::from(input.u8()) + 1).collect();
    let src = input.rest();

    // The whole stream: every symbol uses at least one bit, so 8 per byte (+ the two states'
    // last symbols) is more than enough room.
    let Some(full) = decode_all(table, src) else {
        return;
    };

    let mut dst = vec![0u8; dst_len];
    let result = fse::decode(table, src, max_out, &mut dst);
    if dst_len >= max_out {
        let expected = if full.len() <= max_out {
            Ok(full.len())
        } else {
            Err(FseError::TooManySymbols { max_out })
        };
        assert_eq!(result, expected, "{} symbols, max_out {max_out}", full.len());
    } else {
        assert_eq!(result, Ok(full.len().min(dst_len)));
    }
    if let Ok(n) = result {
        assert_eq!(dst[..n], full[..n]);
    }

    let mut stream = fse::Stream::new(table, src, max_out).expect("accepted above");
    let mut out = Vec::new();
    let mut buf = [0u8; 257];
    let mut error = None;
    for &size in chunks.iter().cycle() {
        match stream.next_chunk(&mut buf[..size]) {
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= size);
                out.extend_from_slice(&buf[..n]);
                assert!(out.len() <= full.len());
            }
            Err(e) => {
                assert_eq!(stream.next_chunk(&mut buf[..5]), Err(e.clone()), "errors stay");
                error = Some(e);
                break;
            }
        }
    }
    if full.len() <= max_out {
        assert_eq!(error, None);
        assert_eq!(out, full);
        assert_eq!(stream.next_chunk(&mut buf[..5]), Ok(0), "the end stays");
    } else {
        assert_eq!(error, Some(FseError::TooManySymbols { max_out }));
        assert_eq!(out, full[..max_out.saturating_sub(1)]);
    }
}

/// Every symbol of `src`, or `None` if the stream is refused up front (then `decode` and
/// `Stream::new` refuse it the same way).
fn decode_all(table: &DTable, src: &[u8]) -> Option<Vec<u8>> {
    let room = 8 * src.len() + 64;
    let mut all = vec![0u8; room];
    match fse::decode(table, src, room, &mut all) {
        Ok(n) => {
            all.truncate(n);
            Some(all)
        }
        Err(e @ (FseError::EmptyStream | FseError::MissingEndMark)) => {
            assert_eq!(fse::Stream::new(table, src, 10).err(), Some(e.clone()));
            assert_eq!(fse::decode(table, src, 0, &mut []), Err(e));
            None
        }
        Err(e) => panic!("{e} with room for {room} symbols from {} bytes", src.len()),
    }
}
