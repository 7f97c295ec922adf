//! The checks on a harvester's answers: proofs of space and signatures. Pure: the caller
//! passes what it expects (the announced challenge and plot size, our keys).
//!
//! A failed check is an [`Invalid`] verdict, data for the report, not an error of farmer-sim.

use plot_format::keys::{aggregate_signatures, sign_aug, verify_aug, SecretKey};
use plot_format::verify::validate_proof;
use protocol::{Bytes32, ProofOfSpace, G1, G2};
use sha2::{Digest, Sha256};

/// Why an answer is invalid. `Display` is the reason printed in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// The response names another quality than its request.
    #[error("answers quality {} but the request was for {}", short(got), short(want))]
    WrongQuality {
        /// The response's quality.
        got: Bytes32,
        /// The request's quality.
        want: Bytes32,
    },
    /// The proof is for another challenge than the quality was announced for.
    #[error("proof for challenge {} but the quality answers {}", short(got), short(want))]
    WrongChallenge {
        /// `proof.challenge_hash`.
        got: Bytes32,
        /// The challenge of the `ChallengeResponse`.
        want: Bytes32,
    },
    /// The proof's pool public key is not one of ours.
    #[error("proof's pool public key {} is not one of ours", short(pool_pubkey))]
    ForeignPoolKey {
        /// `proof.pool_pubkey`.
        pool_pubkey: G1,
    },
    /// The proof's size differs from the plot size announced with the quality.
    #[error("proof of a k{got} plot but the quality was announced for k{want}")]
    WrongSize {
        /// `proof.size`.
        got: u8,
        /// `plot_size` of the `ChallengeResponse`.
        want: u8,
    },
    /// `validate_proof` rejected the proof.
    #[error("proof does not verify (plot id {}): {reason}", short(plot_id))]
    BadProof {
        /// sha256(pool_pubkey || plot_pubkey).
        plot_id: Bytes32,
        /// The verifier's reason.
        reason: plot_format::verify::VerifyError,
    },
    /// The proof verifies but gives another quality.
    #[error("proof verifies but its quality is {}, not {}", short(got), short(want))]
    QualityMismatch {
        /// The quality of the proof.
        got: Bytes32,
        /// The quality announced.
        want: Bytes32,
    },
    /// The signature is neither the plot key's own nor a memo share.
    #[error(
        "{what} signature does not verify under plot key {} (alone or with the farmer share)",
        short(plot_pubkey)
    )]
    BadSignature {
        /// "header" or "partial".
        what: &'static str,
        /// The plot public key from the proof.
        plot_pubkey: G1,
    },
}

/// Which key signed: the harvester holds the whole plot key, or its local share of a memo
/// plot's key (the farmer adds its share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignatureKind {
    /// `verify_aug(plot_pk, msg, sig)`: a keys-file plot.
    KeysFile,
    /// `verify_aug(plot_pk, msg, sig + sign_aug(farmer_sk, msg, plot_pk))`: a memo plot.
    Memo,
}

impl SignatureKind {
    /// The name used in the report (`keys_file`, `memo`).
    pub fn name(self) -> &'static str {
        match self {
            SignatureKind::KeysFile => "keys_file",
            SignatureKind::Memo => "memo",
        }
    }
}

/// What the farmer knows about a quality when its proof arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofExpectation {
    /// The quality requested.
    pub quality: Bytes32,
    /// The challenge the quality was announced for.
    pub challenge: Bytes32,
    /// The plot size announced with the quality.
    pub plot_size: u8,
}

/// `sha256(pool_pubkey || plot_pubkey)`.
pub fn plot_id(pool_pubkey: &G1, plot_pubkey: &G1) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(pool_pubkey);
    h.update(plot_pubkey);
    h.finalize().into()
}

/// Checks a `RespondProofOfSpace{quality, proof}` against its request; on success returns the
/// plot id.
pub fn check_proof(
    expected: &ProofExpectation,
    pool_pubkeys: &[G1],
    quality: &Bytes32,
    proof: &ProofOfSpace,
) -> Result<Bytes32, Invalid> {
    if *quality != expected.quality {
        return Err(Invalid::WrongQuality { got: *quality, want: expected.quality });
    }
    if proof.challenge_hash != expected.challenge {
        return Err(Invalid::WrongChallenge {
            got: proof.challenge_hash,
            want: expected.challenge,
        });
    }
    if !pool_pubkeys.contains(&proof.pool_pubkey) {
        return Err(Invalid::ForeignPoolKey { pool_pubkey: proof.pool_pubkey });
    }
    if proof.size != expected.plot_size {
        return Err(Invalid::WrongSize { got: proof.size, want: expected.plot_size });
    }
    let id = plot_id(&proof.pool_pubkey, &proof.plot_pubkey);
    let got = validate_proof(&id, proof.size, &expected.challenge, &proof.proof)
        .map_err(|reason| Invalid::BadProof { plot_id: id, reason })?;
    if got != expected.quality {
        return Err(Invalid::QualityMismatch { got, want: expected.quality });
    }
    Ok(id)
}

/// Checks a signature of `msg` for the plot key `plot_pubkey`: the plot key's own signature, or
/// the harvester's share of a memo plot completed with the farmer's share. Returns the kind and
/// the signature that verifies under `plot_pubkey` (the aggregate for memo plots).
pub fn check_signature(
    what: &'static str,
    farmer_sk: &SecretKey,
    plot_pubkey: &G1,
    msg: &[u8],
    sig: &G2,
) -> Result<(SignatureKind, G2), Invalid> {
    if verify_aug(plot_pubkey, msg, sig) {
        return Ok((SignatureKind::KeysFile, *sig));
    }
    let share = sign_aug(farmer_sk, msg, plot_pubkey);
    // A signature that is not a G2 point fails to aggregate: it is simply invalid.
    if let Ok(full) = aggregate_signatures(&[*sig, share]) {
        if verify_aug(plot_pubkey, msg, &full) {
            return Ok((SignatureKind::Memo, full));
        }
    }
    Err(Invalid::BadSignature { what, plot_pubkey: *plot_pubkey })
}

/// The first 8 hex digits of a value, for reasons that stay one line long.
fn short(bytes: &[u8]) -> String {
    let n = bytes.len().min(4);
    format!("{}…", hex::encode(&bytes[..n]))
}

#[cfg(test)]
mod tests {
    use plot_format::keys::add_public_keys;

    use super::*;
    use crate::farmer::testkit;

    fn sk(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; 32]).expect("below the group order")
    }

    #[test]
    fn keys_file_signature() {
        let (farmer, plot) = (sk(1), sk(2));
        let plot_pk = plot.public_key();
        let msg = [7u8; 32];
        let sig = sign_aug(&plot, &msg, &plot_pk);
        assert_eq!(
            check_signature("header", &farmer, &plot_pk, &msg, &sig),
            Ok((SignatureKind::KeysFile, sig))
        );
    }

    #[test]
    fn memo_signature_needs_the_farmer_share() {
        let (farmer, local) = (sk(1), sk(3));
        // plot_pk = local_pk + farmer_pk; the harvester signs with its local key.
        let plot_pk =
            add_public_keys(&[local.public_key(), farmer.public_key()]).expect("valid points");
        let msg = [9u8; 32];
        let share = sign_aug(&local, &msg, &plot_pk);
        let (kind, full) =
            check_signature("partial", &farmer, &plot_pk, &msg, &share).expect("valid");
        assert_eq!(kind, SignatureKind::Memo);
        assert!(verify_aug(&plot_pk, &msg, &full));
        // Another farmer key cannot complete it.
        assert!(check_signature("partial", &sk(4), &plot_pk, &msg, &share).is_err());
    }

    #[test]
    fn tampered_signatures_are_invalid() {
        let (farmer, plot) = (sk(1), sk(2));
        let plot_pk = plot.public_key();
        let msg = [7u8; 32];
        let sig = sign_aug(&plot, &msg, &plot_pk);
        // Signed another message.
        let e = check_signature("header", &farmer, &plot_pk, &[8u8; 32], &sig).expect_err("bad");
        assert!(matches!(e, Invalid::BadSignature { what: "header", .. }), "{e}");
        // Flipped bits: not a point, or another point.
        let mut bad = sig;
        bad[50] ^= 0x01;
        assert!(check_signature("header", &farmer, &plot_pk, &msg, &bad).is_err());
        assert!(check_signature("header", &farmer, &plot_pk, &msg, &[0u8; 96]).is_err());
        // Signed by the right key without the plot key prepended.
        let own = plot_format::keys::sign_aug_own(&sk(5), &msg);
        assert!(check_signature("header", &farmer, &plot_pk, &msg, &own).is_err());
    }

    #[test]
    fn fixture_memo_plot_signature_with_the_fixture_farmer_key() {
        let fx = testkit::fixture_proof();
        let farmer = testkit::farmer_keys();
        let msg = [0x5au8; 32];
        let share = fx.keys.sign_local_share(&msg);
        let plot_pk = fx.keys.plot_public_key();
        let (kind, full) =
            check_signature("header", &farmer.farmer_sk, plot_pk, &msg, &share).expect("valid");
        assert_eq!(kind, SignatureKind::Memo);
        assert!(verify_aug(plot_pk, &msg, &full));
        let mut bad = share;
        bad[95] ^= 0x80;
        assert!(check_signature("header", &farmer.farmer_sk, plot_pk, &msg, &bad).is_err());
    }

    #[test]
    fn plot_id_is_sha256_of_both_keys() {
        let (a, b) = ([1u8; 48], [2u8; 48]);
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_eq!(plot_id(&a, &b), <[u8; 32]>::from(Sha256::digest(&both)));
    }

    #[test]
    fn real_proof_checks_and_each_tampering_is_caught() {
        let fx = testkit::fixture_proof();
        let (expected, proof) = (fx.expectation(), fx.proof.clone());
        let pools = [fx.pool_pk];
        let id = check_proof(&expected, &pools, &expected.quality, &proof).expect("valid");
        assert_eq!(id, plot_id(&proof.pool_pubkey, &proof.plot_pubkey));

        let mut other = expected.quality;
        other[0] ^= 1;
        let e = check_proof(&expected, &pools, &other, &proof).expect_err("quality");
        assert!(matches!(e, Invalid::WrongQuality { .. }), "{e}");
        let e =
            check_proof(&ProofExpectation { quality: other, ..expected }, &pools, &other, &proof)
                .expect_err("other quality");
        assert!(matches!(e, Invalid::QualityMismatch { .. }), "{e}");
        let e = check_proof(&expected, &[[3u8; 48]], &expected.quality, &proof).expect_err("pool");
        assert!(matches!(e, Invalid::ForeignPoolKey { .. }), "{e}");
        let e = check_proof(
            &ProofExpectation { plot_size: 19, ..expected },
            &pools,
            &expected.quality,
            &proof,
        )
        .expect_err("size");
        assert!(matches!(e, Invalid::WrongSize { got: 18, want: 19 }), "{e}");
        let mut p = proof.clone();
        p.challenge_hash[5] ^= 1;
        let e = check_proof(&expected, &pools, &expected.quality, &p).expect_err("challenge");
        assert!(matches!(e, Invalid::WrongChallenge { .. }), "{e}");
        let mut p = proof.clone();
        p.proof[3] ^= 0x10;
        let e = check_proof(&expected, &pools, &expected.quality, &p).expect_err("proof bits");
        assert!(matches!(e, Invalid::BadProof { .. }), "{e}");
        let mut p = proof.clone();
        p.plot_pubkey[10] ^= 1;
        let e = check_proof(&expected, &pools, &expected.quality, &p).expect_err("plot key");
        assert!(matches!(e, Invalid::BadProof { .. }), "{e}");
        let mut p = proof;
        p.proof.pop();
        let e = check_proof(&expected, &pools, &expected.quality, &p).expect_err("short");
        assert!(matches!(e, Invalid::BadProof { .. }), "{e}");
    }
}
