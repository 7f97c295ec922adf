//! Our lookups, proofs and verifier against the reference (chiapos 2.0.12) on real plots.
//! Every expected value comes from the oracle at test time.

mod support;

use std::collections::HashMap;

use plot_format::verify::validate_proof;
use plot_format::{Goal, Mode};
use support::*;

/// Random challenges plus challenges aimed at C1 checkpoint values and their neighbours,
/// where chiapos' lossy scan differs from the complete one (§11.2).
fn challenge_set(mem: &MemPlot, name: &str, random: u32) -> Vec<[u8; 32]> {
    let k = mem.plot.k();
    let mut out = challenges(name, random);
    for (i, v) in c1_values(mem).into_iter().enumerate() {
        for f7 in [v.saturating_sub(1), v, v + 1] {
            out.push(challenge_for_f7(k, f7, i as u32));
        }
    }
    out
}

#[test]
fn chiapos_mode_is_byte_identical_and_complete_mode_is_a_verified_superset() {
    let mut total_challenges = 0;
    let mut total_qualities = 0;
    let mut extras = Vec::new();
    for fixture in fixtures() {
        let mem = MemPlot::load(&fixture.path);
        let set = challenge_set(&mem, &fixture.name, 200);
        let expected = oracle_prove(&fixture.path, &set, true);
        for (challenge, want) in set.iter().zip(&expected) {
            total_challenges += 1;
            let ours = mem.lookup(challenge, Goal::QualitiesAndProofs, Mode::Chiapos);
            let ch = hex::encode(challenge);
            if let Some(error) = &want.error {
                assert!(
                    ours.is_err(),
                    "{}: chiapos fails ({error}) on {ch}, we answered {ours:?}",
                    fixture.name
                );
                continue;
            }
            let ours = ours.unwrap_or_else(|e| panic!("{}: {ch}: {e}", fixture.name));
            let qualities: Vec<String> = ours.iter().map(|f| hex::encode(f.quality)).collect();
            assert_eq!(qualities, want.qualities, "{}: qualities of {ch}", fixture.name);
            let proofs: Vec<String> =
                ours.iter().map(|f| hex::encode(f.proof.as_ref().expect("proof asked"))).collect();
            assert_eq!(proofs, want.proofs, "{}: proofs of {ch}", fixture.name);
            total_qualities += qualities.len();
            // The quality-only walk and the single-proof lookup agree with the full one.
            let quick = mem.lookup(challenge, Goal::Qualities, Mode::Chiapos).expect("qualities");
            let sliced = mem.lookup_slices(challenge, Goal::Qualities, Mode::Chiapos);
            assert_eq!(sliced.as_ref(), Ok(&quick), "the benches' driver answers the same");
            // Parks decoded two at a time (the drivers) or one at a time: the same proofs.
            let alone = mem.lookup_one_by_one(challenge, Goal::QualitiesAndProofs, Mode::Chiapos);
            assert_eq!(alone.as_ref(), Ok(&ours), "reads supplied one by one");
            assert_eq!(
                quick.iter().map(|f| hex::encode(f.quality)).collect::<Vec<_>>(),
                want.qualities
            );
            for (i, p) in want.proofs.iter().enumerate() {
                let one = mem
                    .lookup(challenge, Goal::Proof { index: i as u32 }, Mode::Chiapos)
                    .expect("proof");
                assert_eq!(hex::encode(one[0].proof.as_ref().expect("proof")), *p);
            }
            // Complete mode: a superset (as a multiset), extras checked by chiapos below.
            let complete =
                mem.lookup(challenge, Goal::QualitiesAndProofs, Mode::Complete).expect("complete");
            let mut pending: HashMap<&str, usize> = HashMap::new();
            for q in &want.qualities {
                *pending.entry(q.as_str()).or_default() += 1;
            }
            for f in &complete {
                let q = hex::encode(f.quality);
                match pending.get_mut(q.as_str()) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => extras.push(VerifyItem {
                        id: *mem.plot.id(),
                        k: mem.plot.k(),
                        challenge: *challenge,
                        proof: f.proof.clone().expect("proof asked"),
                    }),
                }
            }
            assert!(
                pending.values().all(|&n| n == 0),
                "{}: complete mode lost a chiapos quality of {ch}",
                fixture.name
            );
        }
    }
    assert!(total_challenges >= 1000, "coverage: {total_challenges} challenges");
    assert!(total_qualities >= 800, "coverage: {total_qualities} qualities");
    // The checkpoint-aimed challenges always include entries chiapos cannot return.
    assert!(
        !extras.is_empty(),
        "complete mode found nothing beyond chiapos on boundary challenges"
    );
    let verdicts = oracle_verify(&extras);
    for (item, verdict) in extras.iter().zip(verdicts) {
        let ours = validate_proof(&item.id, item.k, &item.challenge, &item.proof)
            .expect("our verifier accepts");
        assert_eq!(verdict, Some(hex::encode(ours)), "chiapos must accept every extra proof");
    }
    eprintln!("{total_challenges} challenges, {total_qualities} chiapos qualities, {} extra proofs verified by chiapos", extras.len());
}

/// Mutations of a good proof: every kind the issue names, plus the good proof itself.
fn mutations(item: &VerifyItem, seed: u32) -> Vec<VerifyItem> {
    let mut out = Vec::new();
    let with = |id: [u8; 32], k: u8, challenge: [u8; 32], proof: Vec<u8>| VerifyItem {
        id,
        k,
        challenge,
        proof,
    };
    out.push(with(item.id, item.k, item.challenge, item.proof.clone()));
    let bits = item.proof.len() * 8;
    for j in 0..3u32 {
        let mut p = item.proof.clone();
        let bit = (sha256(&[seed.to_be_bytes(), j.to_be_bytes()].concat())[0] as usize * 131
            + j as usize * 977)
            % bits;
        p[bit / 8] ^= 0x80 >> (bit % 8);
        out.push(with(item.id, item.k, item.challenge, p));
    }
    let half = item.proof.len() / 2;
    out.push(with(
        item.id,
        item.k,
        item.challenge,
        [&item.proof[half..], &item.proof[..half]].concat(),
    ));
    out.push(with(item.id, item.k + 1, item.challenge, item.proof.clone()));
    let mut id = item.id;
    id[seed as usize % 32] ^= 1;
    out.push(with(id, item.k, item.challenge, item.proof.clone()));
    out.push(with(item.id, item.k, item.challenge, item.proof[..item.proof.len() - 1].to_vec()));
    let mut challenge = item.challenge;
    challenge[0] ^= 0x80;
    out.push(with(item.id, item.k, challenge, item.proof.clone()));
    // Only the last challenge byte's low bits change: same f7, other quality.
    let mut challenge = item.challenge;
    challenge[31] ^= 0x01;
    out.push(with(item.id, item.k, challenge, item.proof.clone()));
    out
}

#[test]
fn verifier_agrees_with_chiapos_on_good_and_mutated_proofs() {
    let mut items = Vec::new();
    for fixture in fixtures() {
        let mem = MemPlot::load(&fixture.path);
        for (n, challenge) in
            challenges(&format!("verify-{}", fixture.name), 40).into_iter().enumerate()
        {
            let found =
                mem.lookup(&challenge, Goal::QualitiesAndProofs, Mode::Chiapos).expect("lookup");
            for f in found {
                let good = VerifyItem {
                    id: *mem.plot.id(),
                    k: mem.plot.k(),
                    challenge,
                    proof: f.proof.expect("proof asked"),
                };
                items.extend(mutations(&good, n as u32));
            }
        }
    }
    let goods = items.len() / 10;
    assert!(items.len() - goods >= 200, "coverage: {} mutated proofs", items.len() - goods);
    let verdicts = oracle_verify(&items);
    let mut accepted = 0;
    for (item, want) in items.iter().zip(verdicts) {
        let ours =
            validate_proof(&item.id, item.k, &item.challenge, &item.proof).ok().map(hex::encode);
        assert_eq!(ours, want, "verdict differs for proof {}", hex::encode(&item.proof));
        accepted += usize::from(ours.is_some());
    }
    assert!(accepted >= goods, "every good proof is accepted");
    eprintln!("{} verdicts compared ({accepted} accepted)", items.len());
}
