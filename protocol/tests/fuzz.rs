//! Property-based fuzzing of the codec and the session (stable toolchain, proptest).
//!
//! 2000 cases per property by default; `PROPTEST_CASES=100000 cargo test -p protocol --test
//! fuzz` runs more.

use std::collections::HashMap;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use protocol::{
    decode_message, Body, Bytes32, CodecError, ErrorCode, FrameDecoder, HarvesterSession, Input,
    Limits, Message, ProofOfSpace, SessionLimits, SignKind, G1, G2,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    ProptestConfig::with_cases(cases)
}

fn g1() -> impl Strategy<Value = G1> {
    vec(any::<u8>(), 48).prop_map(|v| v.try_into().expect("48 bytes"))
}

fn g2() -> impl Strategy<Value = G2> {
    vec(any::<u8>(), 96).prop_map(|v| v.try_into().expect("96 bytes"))
}

fn b32() -> impl Strategy<Value = Bytes32> {
    any::<[u8; 32]>()
}

fn proof_of_space() -> impl Strategy<Value = ProofOfSpace> {
    (b32(), g1(), g1(), any::<u8>(), vec(any::<u8>(), 0..=400)).prop_map(
        |(challenge_hash, pool_pubkey, plot_pubkey, size, proof)| ProofOfSpace {
            challenge_hash,
            pool_pubkey,
            plot_pubkey,
            size,
            proof,
        },
    )
}

/// Any message within the default limits (error texts up to 1024 bytes, data up to 4096).
fn message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        vec(g1(), 0..20).prop_map(|pool_pubkeys| Body::HarvesterHandshake { pool_pubkeys }),
        b32().prop_map(|challenge_hash| Body::NewChallenge { challenge_hash }),
        (b32(), b32(), any::<u8>()).prop_map(|(challenge_hash, quality, plot_size)| {
            Body::ChallengeResponse { challenge_hash, quality, plot_size }
        }),
        b32().prop_map(|quality| Body::RequestProofOfSpace { quality }),
        (b32(), proof_of_space())
            .prop_map(|(quality, proof)| Body::RespondProofOfSpace { quality, proof }),
        (b32(), b32()).prop_map(|(quality, header_hash)| Body::RequestHeaderSignature {
            quality,
            header_hash
        }),
        (b32(), g2()).prop_map(|(quality, header_hash_signature)| {
            Body::RespondHeaderSignature { quality, header_hash_signature }
        }),
        (b32(), b32()).prop_map(|(quality, farmer_target_hash)| Body::RequestPartialProof {
            quality,
            farmer_target_hash
        }),
        (b32(), g2()).prop_map(|(quality, farmer_target_signature)| {
            Body::RespondPartialProof { quality, farmer_target_signature }
        }),
        (
            any::<i16>(),
            vec(any::<char>(), 0..=256),
            proptest::option::of(prop_oneof![
                vec(any::<u8>(), 0..64),
                vec(any::<u8>(), 4096..=4096)
            ])
        )
            .prop_map(|(code, chars, data)| Body::Error {
                code: ErrorCode::from_code(code),
                message: chars.into_iter().collect(),
                data,
            }),
    ];
    (proptest::option::of(any::<u16>()), body).prop_map(|(id, body)| Message { id, body })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// Byte streams: pure noise, or valid frames with a few mutations.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..2000),
        (vec(message(), 0..6), vec(mutation(), 0..4)).prop_map(|(messages, mutations)| {
            let mut bytes = Vec::new();
            for m in &messages {
                m.encode(&mut bytes);
            }
            for m in mutations {
                let len = bytes.len().max(1);
                match m {
                    Mutation::Flip { at, bits } => {
                        if let Some(b) = bytes.get_mut(at % len) {
                            *b ^= bits;
                        }
                    }
                    Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
                    Mutation::Remove { at } => {
                        if !bytes.is_empty() {
                            bytes.remove(at % len);
                        }
                    }
                    Mutation::Truncate { at } => bytes.truncate(at % len),
                }
            }
            bytes
        }),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (prop_oneof![Just(0u32), Just(40), Just(300), Just(1 << 20)], 0..30u32)
        .prop_map(|(frame_bytes_max, pool_keys_max)| Limits { frame_bytes_max, pool_keys_max })
}

/// Splits `bytes` by the cycled chunk sizes.
fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let end = (at + sizes[i % sizes.len()]).min(bytes.len());
        out.push(&bytes[at..end]);
        at = end;
        i += 1;
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// (1) Arbitrary bytes in arbitrary chunks: no panic, the buffer stays bounded, the decoder
    /// never spins, and every decoded message re-encodes to exactly its frame's bytes.
    #[test]
    fn frame_decoder_on_arbitrary_bytes(
        bytes in stream(),
        sizes in vec(1..300usize, 1..20),
        limits in limits(),
    ) {
        let bound = limits.frame_bytes_max as usize + 4;
        let mut dec = FrameDecoder::new(limits);
        let mut consumed = 0usize;
        let mut frame_start = 0usize;
        let mut failed: Option<CodecError> = None;
        'outer: for chunk in chunks(&bytes, &sizes) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let used = dec.feed(rest);
                prop_assert!(used <= rest.len());
                prop_assert!(dec.buffered_bytes() <= bound);
                rest = &rest[used..];
                consumed += used;
                loop {
                    match dec.next_message() {
                        Ok(Some(m)) => {
                            prop_assert_eq!(&m.to_frame()[..], &bytes[frame_start..consumed]);
                            prop_assert_eq!(m.check(&limits), Ok(()));
                            frame_start = consumed;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e);
                            break 'outer;
                        }
                    }
                }
                // No progress without a message or an error would be an endless loop.
                prop_assert!(used > 0 || rest.is_empty());
            }
        }
        match failed {
            Some(e) => {
                prop_assert_eq!(dec.feed(&[0; 8]), 0);
                prop_assert_eq!(dec.next_message(), Err(e.clone()));
                let _ = e.to_string();
            }
            None => {
                prop_assert_eq!(consumed, bytes.len());
                prop_assert_eq!(dec.buffered_bytes(), consumed - frame_start);
            }
        }
    }

    /// (2) Valid messages round-trip, alone and as a stream in arbitrary chunks.
    #[test]
    fn valid_messages_round_trip(
        messages in vec(message(), 1..6),
        sizes in vec(1..500usize, 1..10),
    ) {
        let limits = Limits::default();
        let mut bytes = Vec::new();
        for m in &messages {
            prop_assert_eq!(m.check(&limits), Ok(()));
            let frame = m.to_frame();
            prop_assert_eq!(frame.len(), 4 + m.payload_bytes());
            prop_assert_eq!(decode_message(&frame[4..], &limits), Ok(m.clone()));
            bytes.extend_from_slice(&frame);
        }
        let mut dec = FrameDecoder::new(limits);
        let mut decoded = Vec::new();
        for chunk in chunks(&bytes, &sizes) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let used = dec.feed(rest);
                rest = &rest[used..];
                while let Some(m) = dec.next_message().expect("valid frames decode") {
                    decoded.push(m);
                }
            }
        }
        prop_assert_eq!(decoded, messages);
        prop_assert_eq!(dec.buffered_bytes(), 0);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Message(Message),
    Quality { challenge: u8, quality: u8, plot: u32, index: u32 },
    Done { challenge: u8 },
    Expire,
    Advance { ms: u64 },
}

fn small(i: u8) -> Bytes32 {
    [i; 32]
}

/// Messages over a small set of challenges and qualities, so they collide.
fn session_message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        1 => vec(g1(), 0..3).prop_map(|pool_pubkeys| Body::HarvesterHandshake { pool_pubkeys }),
        6 => (0..8u8).prop_map(|c| Body::NewChallenge { challenge_hash: small(c) }),
        4 => (0..24u8).prop_map(|q| Body::RequestProofOfSpace { quality: small(q) }),
        2 => (0..24u8, b32()).prop_map(|(q, header_hash)| Body::RequestHeaderSignature {
            quality: small(q),
            header_hash
        }),
        2 => (0..24u8, b32()).prop_map(|(q, farmer_target_hash)| Body::RequestPartialProof {
            quality: small(q),
            farmer_target_hash
        }),
        1 => message().prop_map(|m| m.body),
    ];
    (proptest::option::of(any::<u16>()), body).prop_map(|(id, body)| Message { id, body })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => session_message().prop_map(Op::Message),
        6 => (0..8u8, 0..24u8, 0..4u32, 0..4u32).prop_map(|(challenge, quality, plot, index)| {
            Op::Quality { challenge, quality, plot, index }
        }),
        2 => (0..8u8).prop_map(|challenge| Op::Done { challenge }),
        1 => Just(Op::Expire),
        2 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn session_limits() -> impl Strategy<Value = SessionLimits> {
    (0..6usize, 0..6usize, 0..12usize, 0..100u64).prop_map(
        |(challenges_in_flight_max, challenges_remembered_max, qualities_max, ttl_s)| {
            SessionLimits {
                challenges_in_flight_max,
                challenges_remembered_max,
                qualities_max,
                quality_ttl: Duration::from_secs(ttl_s),
            }
        },
    )
}

proptest! {
    #![proptest_config(config())]

    /// (3) Any sequence of messages and daemon calls: no panic, the limits hold, and every
    /// proof or sign request resolves to the plot that announced the quality.
    #[test]
    fn session_limits_hold(limits in session_limits(), ops in vec(op(), 0..200)) {
        let mut s: HarvesterSession<(u32, u32)> = HarvesterSession::new(limits);
        let mut now = Duration::from_secs(5);
        // quality -> (plot, index, challenge) of its latest announcement.
        let mut announced: HashMap<Bytes32, ((u32, u32), u32, Bytes32)> = HashMap::new();
        for op in ops {
            match op {
                Op::Message(m) => {
                    let was_ready = s.is_ready();
                    let id = m.id;
                    let harvester_only = matches!(
                        m.body,
                        Body::ChallengeResponse { .. }
                            | Body::RespondProofOfSpace { .. }
                            | Body::RespondHeaderSignature { .. }
                            | Body::RespondPartialProof { .. }
                    );
                    match s.on_message(m, now) {
                        Input::Select { .. } => prop_assert!(s.is_ready()),
                        Input::Challenge { .. } => prop_assert!(was_ready),
                        Input::Proof { id: pid, quality, challenge_hash, plot, index } => {
                            prop_assert_eq!(pid, id);
                            let expected = (plot, index, challenge_hash);
                            prop_assert_eq!(announced.get(&quality), Some(&expected));
                        }
                        Input::Sign { id: sid, quality, plot, kind, .. } => {
                            prop_assert_eq!(sid, id);
                            prop_assert_eq!(announced.get(&quality).map(|a| a.0), Some(plot));
                            prop_assert!(matches!(kind, SignKind::Header | SignKind::Partial));
                        }
                        Input::Reply(reply) => {
                            prop_assert_eq!(reply.id, id);
                            let Body::Error { code, .. } = reply.body else {
                                return Err(TestCaseError::fail("a Reply that is not an Error"));
                            };
                            prop_assert!(matches!(
                                code,
                                ErrorCode::NotReady
                                    | ErrorCode::UnknownQuality
                                    | ErrorCode::Overloaded
                                    | ErrorCode::DuplicateChallenge
                            ));
                            prop_assert_eq!(code == ErrorCode::NotReady, !was_ready);
                            prop_assert_eq!(reply.to_frame().len(), 4 + reply.payload_bytes());
                        }
                        Input::FarmerError { .. } => {}
                        Input::Close { reply, .. } => {
                            prop_assert!(harvester_only);
                            prop_assert_eq!(reply.check(&Limits::default()), Ok(()));
                        }
                    }
                }
                Op::Quality { challenge, quality, plot, index } => {
                    let (c, q) = (small(challenge), small(quality));
                    let plot = (plot, u32::from(challenge));
                    if let Some(response) = s.on_quality(c, q, 32, plot, index, now) {
                        let (challenge_hash, quality, plot_size) = (c, q, 32);
                        let body = Body::ChallengeResponse { challenge_hash, quality, plot_size };
                        prop_assert_eq!(response, Message { id: None, body });
                        announced.insert(q, (plot, index, c));
                        // Answerable right away.
                        let body = Body::RequestProofOfSpace { quality: q };
                        let request = Message { id: Some(1), body };
                        let answer = s.on_message(request, now);
                        prop_assert!(matches!(answer, Input::Proof { .. }), "{:?}", answer);
                    }
                }
                Op::Done { challenge } => s.on_challenge_done(small(challenge)),
                Op::Expire => s.expire(now),
                Op::Advance { ms } => now += Duration::from_millis(ms),
            }
            prop_assert!(s.challenges_in_flight() <= limits.challenges_in_flight_max);
            prop_assert!(s.challenges_in_flight() <= s.challenges_remembered());
            prop_assert!(s.challenges_remembered() <= limits.challenges_remembered_max.max(1));
            prop_assert!(s.qualities_len() <= limits.qualities_max);
        }
    }
}
