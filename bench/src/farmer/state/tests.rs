use protocol::ErrorCode;

use super::*;
use crate::farmer::testkit::{farmer_keys, fixture_proof};

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn farmer(request: RequestMode) -> Farmer {
    Farmer::new(FarmerConfig { request, dump: true, ..FarmerConfig::default() }, farmer_keys())
}

fn response(challenge: Bytes32, quality: Bytes32, plot_size: u8) -> Message {
    Message {
        id: None,
        body: Body::ChallengeResponse { challenge_hash: challenge, quality, plot_size },
    }
}

/// The single request in `out`, to `conn`: its id and body.
fn one_request(out: Vec<(ConnId, Message)>, conn: ConnId) -> (u16, Body) {
    assert_eq!(out.len(), 1, "{out:?}");
    let (to, msg) = out.into_iter().next().expect("one");
    assert_eq!(to, conn);
    (msg.id.expect("requests carry an id"), msg.body)
}

/// HDR histograms report values to 3 significant digits.
fn assert_close(got_ms: f64, want_ms: f64) {
    assert!((got_ms - want_ms).abs() <= want_ms / 500.0, "{got_ms} ms, want {want_ms} ms");
}

fn quality(n: u8) -> Bytes32 {
    [n; 32]
}

#[test]
fn handshake_then_challenges_to_every_connected_harvester() {
    let mut f = farmer(RequestMode::All);
    let hs = f.on_connect(A, ms(0));
    assert_eq!(hs.id, None);
    assert_eq!(hs.body, Body::HarvesterHandshake { pool_pubkeys: farmer_keys().pool_pubkeys });
    let c0 = challenge_hash(7, 0);
    let out = f.on_challenge(c0, ms(1));
    assert_eq!(
        out,
        vec![(A, Message { id: None, body: Body::NewChallenge { challenge_hash: c0 } })]
    );
    // A late harvester gets only the challenges after it connected.
    f.on_connect(B, ms(2));
    assert_eq!(f.harvesters_ready(), 2);
    let out = f.on_challenge(challenge_hash(7, 1), ms(3));
    assert_eq!(out.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![A, B]);
    f.on_disconnect(A, ms(4));
    assert_eq!(f.on_challenge(challenge_hash(7, 2), ms(5)).len(), 1);
    let stats = f.finish(ms(6));
    assert_eq!((stats.harvesters, stats.disconnects, stats.challenges), (2, 1, 3));
}

#[test]
fn challenge_hashes_follow_the_seed() {
    let mut h = Sha256::new();
    h.update(5u64.to_le_bytes());
    h.update(9u64.to_le_bytes());
    assert_eq!(challenge_hash(5, 9), <[u8; 32]>::from(h.finalize()));
    assert_ne!(challenge_hash(5, 9), challenge_hash(6, 9));
}

#[test]
fn a_real_quality_goes_through_proof_and_both_signatures() {
    let fx = fixture_proof();
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    f.on_challenge(fx.challenge, ms(10));
    let out = f.on_message(A, response(fx.challenge, fx.quality, 18), ms(15));
    let (id, body) = one_request(out, A);
    assert_eq!(body, Body::RequestProofOfSpace { quality: fx.quality });
    assert_eq!(f.outstanding(), 1);

    let answer = Message {
        id: Some(id),
        body: Body::RespondProofOfSpace { quality: fx.quality, proof: fx.proof.clone() },
    };
    let out = f.on_message(A, answer, ms(20));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(f.outstanding(), 2);
    for (to, msg) in out {
        assert_eq!(to, A);
        let id = msg.id;
        let body = match msg.body {
            Body::RequestPartialProof { quality, farmer_target_hash } => {
                assert_eq!(quality, fx.quality);
                let sig = fx.keys.sign_local_share(&farmer_target_hash);
                Body::RespondPartialProof { quality, farmer_target_signature: sig }
            }
            Body::RequestHeaderSignature { quality, header_hash } => {
                assert_eq!(quality, fx.quality);
                let sig = fx.keys.sign_local_share(&header_hash);
                Body::RespondHeaderSignature { quality, header_hash_signature: sig }
            }
            other => panic!("unexpected {other:?}"),
        };
        assert!(f.on_message(A, Message { id, body }, ms(30)).is_empty());
    }
    let dump = f.take_dump();
    assert_eq!(dump.len(), 3);
    assert!(matches!(&dump[0], DumpRecord::Proof { k: 18, quality, .. } if *quality == fx.quality));
    assert_eq!(dump[1].json()["kind"], "signature");
    assert_eq!(dump[0].json()["quality"], hex::encode(fx.quality));

    let s = f.finish(ms(40));
    assert_eq!((s.invalid.count, s.lost.count), (0, 0), "{:?} {:?}", s.invalid, s.lost);
    assert_eq!((s.proofs.requested, s.proofs.valid), (1, 1));
    assert_eq!((s.partials.requested, s.partials.valid, s.partials.memo), (1, 1, 1));
    assert_eq!((s.headers.requested, s.headers.valid, s.headers.memo), (1, 1, 1));
    assert_eq!((s.responses, s.qualities), (1, 1));
    let l = &s.latency;
    assert_close(l.challenge_first_response.summary().p50_ms, 5.0);
    assert_close(l.proof.summary().max_ms, 5.0);
    assert_eq!(l.signature.count(), 2);
}

#[test]
fn tampered_proof_and_signature_are_invalid() {
    let fx = fixture_proof();
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    f.on_challenge(fx.challenge, ms(0));
    let (id, _) = one_request(f.on_message(A, response(fx.challenge, fx.quality, 18), ms(1)), A);
    let mut bad = fx.proof.clone();
    bad.proof[0] ^= 0x40;
    let msg = Message {
        id: Some(id),
        body: Body::RespondProofOfSpace { quality: fx.quality, proof: bad },
    };
    assert!(f.on_message(A, msg, ms(2)).is_empty(), "no signature requests after a bad proof");
    let s = f.finish(ms(3));
    assert_eq!((s.invalid.count, s.proofs.valid, s.lost.count), (1, 0, 0));
    assert!(s.invalid.kept[0].contains("proof does not verify"), "{:?}", s.invalid.kept);

    // A second quality, whose proof is fine but whose signature is not.
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    f.on_challenge(fx.challenge, ms(0));
    let (id, _) = one_request(f.on_message(A, response(fx.challenge, fx.quality, 18), ms(1)), A);
    let msg = Message {
        id: Some(id),
        body: Body::RespondProofOfSpace { quality: fx.quality, proof: fx.proof.clone() },
    };
    for (_, req) in f.on_message(A, msg, ms(2)) {
        let body = match req.body {
            Body::RequestPartialProof { quality, mut farmer_target_hash } => {
                // Signed another message.
                farmer_target_hash[0] ^= 1;
                let sig = fx.keys.sign_local_share(&farmer_target_hash);
                Body::RespondPartialProof { quality, farmer_target_signature: sig }
            }
            Body::RequestHeaderSignature { quality: _, header_hash } => {
                Body::RespondHeaderSignature {
                    // Names another quality.
                    quality: quality(9),
                    header_hash_signature: fx.keys.sign_local_share(&header_hash),
                }
            }
            other => panic!("{other:?}"),
        };
        f.on_message(A, Message { id: req.id, body }, ms(3));
    }
    let s = f.finish(ms(4));
    assert_eq!(s.invalid.count, 2, "{:?}", s.invalid);
    assert!(
        s.invalid.kept[0].contains("does not verify")
            || s.invalid.kept[1].contains("does not verify")
    );
    assert!(s.invalid.kept.iter().any(|r| r.contains("request was for")), "{:?}", s.invalid);
    assert_eq!((s.partials.valid, s.headers.valid, s.lost.count), (0, 0, 0));
}

#[test]
fn duplicate_qualities_are_counted_and_ignored() {
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    f.on_connect(B, ms(0));
    let c = challenge_hash(0, 0);
    f.on_challenge(c, ms(0));
    assert_eq!(f.on_message(A, response(c, quality(1), 18), ms(1)).len(), 1);
    assert!(f.on_message(A, response(c, quality(1), 18), ms(2)).is_empty());
    // The same plot behind another harvester.
    assert!(f.on_message(B, response(c, quality(1), 18), ms(3)).is_empty());
    assert_eq!(f.on_message(B, response(c, quality(2), 18), ms(4)).len(), 1);
    let s = f.stats();
    assert_eq!((s.responses, s.qualities, s.duplicates, s.invalid.count), (4, 2, 2, 0));
    let s = f.finish(ms(5));
    // Both proof requests were left unanswered; the last response set the "last" latency.
    assert_eq!(s.lost.count, 2);
    assert_close(s.latency.challenge_last_response.summary().max_ms, 4.0);
}

#[test]
fn unknown_ids_repeated_answers_and_strangers_are_invalid() {
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    f.on_connect(B, ms(0));
    let c = challenge_hash(0, 0);
    f.on_challenge(c, ms(0));
    let (id, _) = one_request(f.on_message(A, response(c, quality(1), 18), ms(1)), A);
    let err = |id| Message::error(id, ErrorCode::LookupFailed, "disk gone");

    // An id never sent.
    f.on_message(A, err(Some(id.wrapping_add(1))), ms(2));
    // The right id on the wrong connection.
    f.on_message(B, err(Some(id)), ms(2));
    // The answer, then the same answer again.
    f.on_message(A, err(Some(id)), ms(3));
    f.on_message(A, err(Some(id)), ms(4));
    // Responses without an id, or to a challenge never sent, or carrying an id.
    let sig = Body::RespondHeaderSignature { quality: quality(1), header_hash_signature: [0; 96] };
    f.on_message(A, Message { id: None, body: sig }, ms(5));
    f.on_message(A, response(challenge_hash(0, 1), quality(3), 18), ms(5));
    f.on_message(A, Message { id: Some(4), ..response(c, quality(4), 18) }, ms(5));
    // A farmer's message.
    f.on_message(A, Message { id: None, body: Body::NewChallenge { challenge_hash: c } }, ms(5));
    f.on_protocol_violation(B, "frame too large");

    let s = f.finish(ms(6));
    assert_eq!(s.invalid.count, 8, "{:#?}", s.invalid.kept);
    assert!(s.invalid.kept[0].contains("never sent, or already answered"), "{:?}", s.invalid.kept);
    assert!(s.invalid.kept[1].contains("harvester #2"));
    assert!(s.invalid.kept[2].contains(&format!("id {id}")));
    assert!(s.invalid.kept[3].contains("without an id"));
    assert!(s.invalid.kept[4].contains("never sent"));
    assert!(s.invalid.kept[5].contains("with id 4"));
    assert!(s.invalid.kept[6].contains("NewChallenge"));
    assert!(s.invalid.kept[7].contains("frame too large"));
    // The one real answer was an Error: counted, not invalid, not lost.
    assert_eq!((s.lost.count, s.proofs.errors, s.errors.total), (0, 1, 1));
    assert_eq!(s.errors.by_code[&4], ("LookupFailed", 1));
}

#[test]
fn wrong_kind_of_answer_is_invalid() {
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    let c = challenge_hash(0, 0);
    f.on_challenge(c, ms(0));
    let (id, _) = one_request(f.on_message(A, response(c, quality(1), 18), ms(1)), A);
    let body = Body::RespondPartialProof { quality: quality(1), farmer_target_signature: [0; 96] };
    f.on_message(A, Message { id: Some(id), body }, ms(2));
    let s = f.finish(ms(3));
    assert_eq!((s.invalid.count, s.lost.count), (1, 0));
    assert!(
        s.invalid.kept[0].contains("proof answer")
            && s.invalid.kept[0].contains("RespondPartialProof")
    );
}

#[test]
fn errors_are_answers_counted_by_code_and_message() {
    let mut f = farmer(RequestMode::All);
    f.on_connect(A, ms(0));
    let c = challenge_hash(0, 0);
    f.on_challenge(c, ms(0));
    for n in 1..=3 {
        let (id, _) = one_request(f.on_message(A, response(c, quality(n), 18), ms(1)), A);
        let msg = if n == 3 { "other" } else { "expired" };
        f.on_message(A, Message::error(Some(id), ErrorCode::UnknownQuality, msg), ms(2));
    }
    // Not an answer to a request: e.g. Overloaded for a challenge.
    let overloaded = Message {
        id: None,
        body: Body::Error {
            code: ErrorCode::Overloaded,
            message: "busy".into(),
            data: Some(c.to_vec()),
        },
    };
    f.on_message(A, overloaded, ms(3));
    let s = f.finish(ms(4));
    assert_eq!((s.invalid.count, s.lost.count), (0, 0));
    assert_eq!((s.errors.total, s.errors.unsolicited, s.proofs.errors), (4, 1, 3));
    assert_eq!(s.errors.by_message[&(2, "expired".to_string())], 2);
    assert_eq!(s.errors.by_message[&(2, "other".to_string())], 1);
    assert_eq!(s.errors.by_code[&3], ("Overloaded", 1));
}

#[test]
fn lost_requests_at_the_end_and_on_disconnect() {
    let c = challenge_hash(0, 0);
    for allow in [false, true] {
        let mut f = Farmer::new(
            FarmerConfig {
                request: RequestMode::All,
                allow_disconnects: allow,
                ..FarmerConfig::default()
            },
            farmer_keys(),
        );
        f.on_connect(A, ms(0));
        f.on_connect(B, ms(0));
        f.on_challenge(c, ms(0));
        f.on_message(A, response(c, quality(1), 18), ms(1));
        f.on_message(A, response(c, quality(2), 18), ms(1));
        f.on_message(B, response(c, quality(3), 18), ms(1));
        assert_eq!(f.outstanding(), 3);
        f.on_disconnect(A, ms(2));
        assert_eq!(f.outstanding(), 1);
        // A message after the disconnect is ignored.
        assert!(f.on_message(A, response(c, quality(4), 18), ms(3)).is_empty());
        let s = f.finish(ms(4));
        if allow {
            assert_eq!((s.lost.count, s.disconnected_requests), (1, 2));
        } else {
            assert_eq!((s.lost.count, s.disconnected_requests), (3, 0));
            assert!(s.lost.kept[0].contains("disconnected"), "{:?}", s.lost.kept);
        }
        assert!(s.lost.kept.last().expect("one").contains("harvester #2: proof request"));
        assert!(s.lost.kept.last().expect("one").contains("never answered"));
        assert_eq!(s.disconnects, 1);
    }
}

#[test]
fn outstanding_requests_are_capped() {
    let mut f = Farmer::new(
        FarmerConfig {
            request: RequestMode::All,
            requests_outstanding_max: 4,
            qualities_tracked_max: 5,
            ..FarmerConfig::default()
        },
        farmer_keys(),
    );
    f.on_connect(A, ms(0));
    let c = challenge_hash(0, 0);
    f.on_challenge(c, ms(0));
    let mut ids = Vec::new();
    for n in 1..=6 {
        let out = f.on_message(A, response(c, quality(n), 18), ms(1));
        assert_eq!(f.can_send_challenge(), f.outstanding() < 3);
        ids.extend(out.into_iter().map(|(_, m)| m.id.expect("id")));
    }
    assert_eq!(ids, vec![0, 1, 2, 3]);
    let s = f.stats();
    assert_eq!((s.qualities, s.untracked, s.requests_skipped), (5, 1, 1));
    // Answer one: its id is free again, but the next id is handed out first.
    f.on_message(A, Message::error(Some(1), ErrorCode::TimedOut, ""), ms(2));
    f.on_challenge(challenge_hash(0, 1), ms(2));
    assert!(f.on_message(A, response(challenge_hash(0, 1), quality(7), 18), ms(3)).is_empty());
    assert_eq!(f.stats().untracked, 2);
}

#[test]
fn formula_mode_asks_only_for_good_enough_qualities() {
    let fx = fixture_proof();
    // Difficulty so high that no estimate is below the thresholds.
    let strict = FormulaParams { difficulty: u64::MAX >> 8, ..FormulaParams::default() };
    let mut f = Farmer::new(
        FarmerConfig { request: RequestMode::Formula, formula: strict, ..FarmerConfig::default() },
        farmer_keys(),
    );
    f.on_connect(A, ms(0));
    f.on_challenge(fx.challenge, ms(0));
    assert!(f.on_message(A, response(fx.challenge, fx.quality, 18), ms(1)).is_empty());
    assert_eq!(f.stats().qualities, 1);

    // Defaults: a k18 quality needs ~1,000 iterations, 0.4 s at 3000 ips: everything is asked.
    // A partial threshold between the two makes the farmer ask for the partial only.
    let d = decide(&FormulaParams::default(), &fx.quality, 18);
    let params = FormulaParams {
        pool_share_threshold_secs: d.estimate_secs * 2.0,
        propagate_threshold_secs: d.estimate_secs / 2.0,
        ..FormulaParams::default()
    };
    let mut f = Farmer::new(
        FarmerConfig { request: RequestMode::Formula, formula: params, ..FarmerConfig::default() },
        farmer_keys(),
    );
    f.on_connect(A, ms(0));
    f.on_challenge(fx.challenge, ms(0));
    let (id, _) = one_request(f.on_message(A, response(fx.challenge, fx.quality, 18), ms(1)), A);
    let answer = Message {
        id: Some(id),
        body: Body::RespondProofOfSpace { quality: fx.quality, proof: fx.proof.clone() },
    };
    let (_, body) = one_request(f.on_message(A, answer, ms(2)), A);
    assert!(matches!(body, Body::RequestPartialProof { .. }), "{body:?}");
}
