//! `verify::validate_proof` on arbitrary inputs and on real proofs with chosen mutations.
//!
//! Input: `mode | ...`. Even mode: `plot id 32 | k | challenge 32 | proof...` as given.
//! Odd mode: `which | k delta (i8) | length delta (i8) | (target, at, xor)*`: real proof
//! `which % n` of the fixture (id, k, challenge, proof), k moved by the delta, the proof cut
//! or zero-extended by the length delta, then each record xors one byte of the proof
//! (`target % 3 == 0`), the challenge (1) or the plot id (2).
//!
//! Checks: never panics; the answer is deterministic (a second call agrees); an accepted
//! proof's quality is `quality_from_proof` of its x values; the unmutated real proof is
//! accepted with the quality the plot gave.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plot_format::verify::{quality_from_proof, unpack_proof, validate_proof};
use plot_format_fuzz::{fixture, real_proofs, write_seeds_if_asked, Input};

fn seeds() -> Vec<Vec<u8>> {
    let id = *fixture().plot.id();
    let k = fixture().plot.k();
    let mut seeds = Vec::new();
    for (i, real) in real_proofs().iter().enumerate() {
        seeds.push([&[0u8][..], &id, &[k], &real.challenge, &real.proof].concat());
        let i = i as u8;
        seeds.push(vec![1, i, 0, 0]);
        // Flip a bit in the last x value, in the challenge's last byte, in the id.
        seeds.push(vec![1, i, 0, 0, 0, 143, 1]);
        seeds.push(vec![1, i, 0, 0, 1, 31, 1]);
        seeds.push(vec![1, i, 0, 0, 2, 0, 0x80]);
        // Swap in the wrong k, the wrong length.
        seeds.push(vec![1, i, 1, 8]);
        seeds.push(vec![1, i, 0, 0xff]);
    }
    seeds
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    if mode % 2 == 0 {
        let id: [u8; 32] = input.array();
        let k = input.u8();
        let challenge: [u8; 32] = input.array();
        check(&id, k, &challenge, input.rest(), None);
        return;
    }
    let reals = real_proofs();
    let real = &reals[usize::from(input.u8()) % reals.len()];
    let (mut id, mut k, mut challenge) = (*fixture().plot.id(), fixture().plot.k(), real.challenge);
    k = k.wrapping_add_signed(input.u8() as i8);
    let mut proof = real.proof.clone();
    let length_delta = input.u8() as i8;
    let new_len = proof.len().saturating_add_signed(isize::from(length_delta));
    proof.resize(new_len, 0);
    while !input.is_empty() {
        let (target, at, xor) = (input.u8(), usize::from(input.u8()), input.u8());
        match target % 3 {
            0 if !proof.is_empty() => {
                let n = proof.len();
                proof[at % n] ^= xor;
            }
            0 => {}
            1 => challenge[at % 32] ^= xor,
            _ => id[at % 32] ^= xor,
        }
    }
    let intact = id == *fixture().plot.id()
        && k == fixture().plot.k()
        && challenge == real.challenge
        && proof == real.proof;
    check(&id, k, &challenge, &proof, intact.then_some(real.quality));
});

fn check(id: &[u8; 32], k: u8, challenge: &[u8; 32], proof: &[u8], expected: Option<[u8; 32]>) {
    let first = validate_proof(id, k, challenge, proof);
    let second = validate_proof(id, k, challenge, proof);
    assert_eq!(first, second, "validate_proof is not deterministic");
    if let Some(quality) = expected {
        assert_eq!(first, Ok(quality), "a real proof is rejected");
    }
    match first {
        Ok(quality) => {
            let xs = unpack_proof(k, proof).expect("an accepted proof unpacks");
            assert_eq!(quality, quality_from_proof(k, challenge, &xs));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
