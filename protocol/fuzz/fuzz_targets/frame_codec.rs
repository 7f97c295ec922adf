//! Arbitrary bytes, cut into arbitrary chunks, through `FrameDecoder` (`feed` / `next_message`).
//!
//! Input: `flags | chunk sizes... | stream`. `flags & 7` + 1 chunk sizes follow (each 1..=256,
//! cycled over the stream); `flags & 0x80` picks small limits (frames of at most 300 bytes,
//! 2 pool keys) instead of `Limits::default()`.
//!
//! Checks: no panic; `feed` takes at most what it is given and makes progress; the buffer stays
//! within `frame_bytes_max + 4`; every decoded message re-encodes to exactly the frame bytes
//! consumed and passes `Message::check`; errors are final; without an error every byte is
//! consumed. Each whole frame also goes through `decode_message` alone, with the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{decode_message, CodecError, FrameDecoder, Limits};
use protocol_fuzz::{sample_messages, write_seeds_if_asked, Input};

const SMALL: Limits = Limits { frame_bytes_max: 300, pool_keys_max: 2 };

fn seeds() -> Vec<Vec<u8>> {
    let messages = sample_messages();
    let mut seeds = Vec::new();
    // Each message alone, in one chunk.
    for m in &messages {
        let mut seed = vec![0, 255];
        m.encode(&mut seed);
        seeds.push(seed);
    }
    // Streams of all short messages, in odd chunk sizes, under both limits.
    let mut stream = Vec::new();
    for m in messages.iter().filter(|m| m.to_frame().len() < 300) {
        m.encode(&mut stream);
    }
    seeds.push([&[0x02, 0, 6, 99][..], &stream].concat());
    seeds.push([&[0x81, 0, 40][..], &stream].concat());
    // An oversized prefix, and an empty frame.
    seeds.push(vec![0, 255, 0xff, 0xff, 0xff, 0xff, 0]);
    seeds.push(vec![0, 0, 0, 0, 0, 0]);
    seeds
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let limits = if flags & 0x80 != 0 { SMALL } else { Limits::default() };
    let sizes: Vec<usize> =
        (0..=(flags & 7)).map(|_| usize::from(input.u8()) + 1).collect();
    let bytes = input.rest();
    run(bytes, &sizes, limits);
});

fn run(bytes: &[u8], sizes: &[usize], limits: Limits) {
    let bound = limits.frame_bytes_max as usize + 4;
    let mut dec = FrameDecoder::new(limits);
    let mut consumed = 0usize;
    let mut frame_start = 0usize;
    let mut failed: Option<CodecError> = None;
    let mut at = 0usize;
    let mut i = 0usize;
    'outer: while at < bytes.len() {
        let end = (at + sizes[i % sizes.len()]).min(bytes.len());
        i += 1;
        let mut rest = &bytes[at..end];
        at = end;
        while !rest.is_empty() {
            let used = dec.feed(rest);
            assert!(used <= rest.len());
            assert!(dec.buffered_bytes() <= bound, "decoder holds more than one frame");
            rest = &rest[used..];
            consumed += used;
            loop {
                match dec.next_message() {
                    Ok(Some(m)) => {
                        let frame = &bytes[frame_start..consumed];
                        assert_eq!(m.to_frame(), frame, "re-encoding differs from the frame");
                        assert_eq!(m.check(&limits), Ok(()));
                        assert_eq!(decode_message(&frame[4..], &limits).as_ref(), Ok(&m));
                        frame_start = consumed;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The frame alone fails the same way (unless the prefix was refused).
                        if !matches!(e, CodecError::FrameTooLarge { .. }) {
                            let frame = &bytes[frame_start..consumed];
                            assert_eq!(decode_message(&frame[4..], &limits), Err(e.clone()));
                        }
                        failed = Some(e);
                        break 'outer;
                    }
                }
            }
            // No progress without a message or an error would spin the caller's loop.
            assert!(used > 0 || rest.is_empty(), "feed took nothing and gave nothing");
        }
    }
    match failed {
        Some(e) => {
            assert_eq!(dec.feed(&[0; 8]), 0, "feed after an error");
            assert_eq!(dec.next_message(), Err(e.clone()), "errors are final");
            assert_eq!(dec.error(), Some(&e));
            assert!(!e.to_string().is_empty());
        }
        None => {
            assert_eq!(consumed, bytes.len());
            assert_eq!(dec.buffered_bytes(), consumed - frame_start);
        }
    }
}
