//! A sequence of farmer messages and daemon calls into `HarvesterSession<u32>`.
//!
//! Input: 4 bytes of limits (in flight 0..8, remembered 0..8, qualities 0..16, ttl 0..100 s),
//! then operations, each an opcode byte and its arguments:
//! `NewChallenge`, the three requests, handshakes (over 8 challenges and 24 qualities, so they
//! collide), any message decoded from raw frame bytes, `on_quality`, `on_challenge_done`,
//! `expire` and clock steps.
//!
//! Checks after every operation: challenges in flight <= the limit and <= challenges
//! remembered, remembered <= max(limit, 1), qualities <= `qualities_max`. Every `Proof` and
//! `Sign` resolves to the plot that last announced the quality; every `Reply` echoes the id
//! and is `NotReady` exactly before the handshake; `Close` only for harvester-only messages.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use protocol::{
    decode_message, Body, Bytes32, ErrorCode, HarvesterSession, Input, Limits, Message,
    SessionLimits,
};
use protocol_fuzz::{sample_messages, write_seeds_if_asked, Input as Bytes};

fn small(i: u8) -> Bytes32 {
    [i; 32]
}

fn seeds() -> Vec<Vec<u8>> {
    // Opcodes (see `step`): 0 challenge, 1 proof, 2 header, 3 partial, 4 handshake, 5 raw,
    // 6 quality, 7 done/expire/advance; | 8 adds an id.
    let handshake = [4, 1];
    let mut seeds = vec![
        // Handshake, challenge 1, a quality, the three requests, done.
        [
            &[4, 4, 8, 60][..],
            &handshake,
            &[0, 1, 6, 1, 5, 7, 0, 9, 1, 5, 10, 0, 2, 11, 0, 3, 5, 7, 0, 1],
        ]
        .concat(),
        // Requests before the handshake, then the limits: many challenges and qualities.
        [&[2, 3, 5, 10][..], &[8, 0, 1, 0, 2], &handshake, &[0, 1, 0, 2, 0, 3, 0, 4]].concat(),
        [
            &[3, 2, 4, 1][..],
            &handshake,
            &[0, 1, 6, 1, 1, 0, 0, 6, 1, 2, 0, 1, 6, 1, 3, 0, 2, 7, 2, 0xff, 0xff, 7, 1, 1, 2],
        ]
        .concat(),
    ];
    // Every sample message as a raw frame after a handshake.
    for m in sample_messages() {
        let frame = m.to_frame();
        if frame.len() - 4 <= 255 {
            let mut seed = [&[4, 4, 8, 60][..], &handshake, &[5, (frame.len() - 4) as u8]].concat();
            seed.extend_from_slice(&frame[4..]);
            seeds.push(seed);
        }
    }
    seeds
}

struct Model {
    session: HarvesterSession<u32>,
    now: Duration,
    /// quality -> (plot, index, challenge) of its latest announcement.
    announced: HashMap<Bytes32, (u32, u32, Bytes32)>,
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let mut input = Bytes::new(data);
    let limits = SessionLimits {
        challenges_in_flight_max: usize::from(input.u8() % 8),
        challenges_remembered_max: usize::from(input.u8() % 8),
        qualities_max: usize::from(input.u8() % 16),
        quality_ttl: Duration::from_secs(u64::from(input.u8() % 100)),
    };
    let mut m = Model {
        session: HarvesterSession::new(limits),
        now: Duration::from_secs(5),
        announced: HashMap::new(),
    };
    let mut ops = 0;
    while !input.is_empty() && ops < 2000 {
        ops += 1;
        step(&mut m, &mut input);
        let s = &m.session;
        assert!(s.challenges_in_flight() <= limits.challenges_in_flight_max);
        assert!(s.challenges_in_flight() <= s.challenges_remembered());
        assert!(s.challenges_remembered() <= limits.challenges_remembered_max.max(1));
        assert!(s.qualities_len() <= limits.qualities_max);
    }
});

fn step(m: &mut Model, input: &mut Bytes<'_>) {
    let op = input.u8();
    let id = if op & 8 != 0 { Some(input.u16()) } else { None };
    let body = match op & 7 {
        0 => Body::NewChallenge { challenge_hash: small(input.u8() % 8) },
        1 => Body::RequestProofOfSpace { quality: small(input.u8() % 24) },
        2 => Body::RequestHeaderSignature {
            quality: small(input.u8() % 24),
            header_hash: [input.u8(); 32],
        },
        3 => Body::RequestPartialProof {
            quality: small(input.u8() % 24),
            farmer_target_hash: [input.u8(); 32],
        },
        4 => {
            let n = input.u8() % 3;
            Body::HarvesterHandshake { pool_pubkeys: (0..n).map(|i| [i; 48]).collect() }
        }
        5 => {
            // Any message the codec accepts: a length byte, then that many payload bytes.
            let n = usize::from(input.u8());
            match decode_message(input.take(n), &Limits::default()) {
                Ok(decoded) => return on_message(m, decoded),
                Err(_) => return,
            }
        }
        6 => {
            let (c, q) = (small(input.u8() % 8), small(input.u8() % 24));
            let (plot, index) = (u32::from(input.u8()), u32::from(input.u8()));
            let now = m.now;
            if let Some(response) = m.session.on_quality(c, q, 32, plot, index, now) {
                let body = Body::ChallengeResponse { challenge_hash: c, quality: q, plot_size: 32 };
                assert_eq!(response, Message { id: None, body });
                m.announced.insert(q, (plot, index, c));
                // Answerable at once.
                let request =
                    Message { id: Some(1), body: Body::RequestProofOfSpace { quality: q } };
                let answer = m.session.on_message(request, now);
                assert!(matches!(answer, Input::Proof { .. }), "{answer:?}");
            }
            return;
        }
        _ => {
            let arg = input.u8();
            match arg % 3 {
                0 => m.session.on_challenge_done(small(input.u8() % 8)),
                1 => m.session.expire(m.now),
                _ => m.now += Duration::from_millis(u64::from(input.u16()) * 10),
            }
            return;
        }
    };
    on_message(m, Message { id, body });
}

fn on_message(m: &mut Model, msg: Message) {
    let was_ready = m.session.is_ready();
    let id = msg.id;
    let harvester_only = msg.body.is_harvester_only();
    match m.session.on_message(msg, m.now) {
        Input::Select { .. } => assert!(m.session.is_ready()),
        Input::Challenge { .. } => assert!(was_ready),
        Input::Proof { id: pid, quality, challenge_hash, plot, index } => {
            assert_eq!(pid, id);
            assert_eq!(m.announced.get(&quality), Some(&(plot, index, challenge_hash)));
        }
        Input::Sign { id: sid, quality, plot, .. } => {
            assert_eq!(sid, id);
            assert_eq!(m.announced.get(&quality).map(|a| a.0), Some(plot));
        }
        Input::Reply(reply) => {
            assert_eq!(reply.id, id);
            let Body::Error { code, .. } = reply.body else {
                panic!("a Reply that is not an Error")
            };
            assert!(matches!(
                code,
                ErrorCode::NotReady
                    | ErrorCode::UnknownQuality
                    | ErrorCode::Overloaded
                    | ErrorCode::DuplicateChallenge
            ));
            assert_eq!(code == ErrorCode::NotReady, !was_ready);
            assert_eq!(reply.check(&Limits::default()), Ok(()));
        }
        Input::FarmerError { .. } => {}
        Input::Close { reply, .. } => {
            assert!(harvester_only);
            assert_eq!(reply.check(&Limits::default()), Ok(()));
        }
    }
}
