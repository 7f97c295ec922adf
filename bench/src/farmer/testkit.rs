//! Test helpers: a real proof from the k18 fixture plot and the fixture farmer keys.

use std::sync::OnceLock;

use plot_format::keys::{parse_memo, PlotKeys, PoolKind};
use plot_format::{Goal, Mode};
use protocol::{Bytes32, ProofOfSpace, G1};
use sha2::{Digest, Sha256};

use super::checks::ProofExpectation;
use super::keys::FarmerKeys;

/// A quality of the first k18 fixture plot (a memo plot with a pool public key), its proof
/// and the plot's keys (so tests can sign as the harvester does).
pub(crate) struct FixtureProof {
    pub(crate) keys: PlotKeys,
    pub(crate) pool_pk: G1,
    pub(crate) challenge: Bytes32,
    pub(crate) quality: Bytes32,
    pub(crate) proof: ProofOfSpace,
}

impl FixtureProof {
    pub(crate) fn expectation(&self) -> ProofExpectation {
        ProofExpectation {
            quality: self.quality,
            challenge: self.challenge,
            plot_size: self.proof.size,
        }
    }
}

/// Found once per test binary (a few lookups in a 4 MB plot).
pub(crate) fn fixture_proof() -> &'static FixtureProof {
    static PROOF: OnceLock<FixtureProof> = OnceLock::new();
    PROOF.get_or_init(|| {
        let (path, _, plot) = test_support::plot::k18_fixture();
        let keys = parse_memo(plot.memo()).and_then(|m| m.derive()).expect("a memo plot");
        let PoolKind::PublicKey(pool_pk) = *keys.pool() else {
            panic!("{}: expected a pool public key memo", path.display());
        };
        assert_eq!(keys.plot_id(), *plot.id());
        let (file, _) = shard::open_plot(&path).expect("opens");
        for i in 0u32..10_000 {
            let challenge: Bytes32 = Sha256::digest(i.to_le_bytes()).into();
            let found = shard::lookup_file(
                &file,
                &plot,
                &challenge,
                Goal::QualitiesAndProofs,
                Mode::Chiapos,
            )
            .expect("lookup reads")
            .expect("the fixture decodes");
            if let Some(f) = found.into_iter().next() {
                let proof = ProofOfSpace {
                    challenge_hash: challenge,
                    pool_pubkey: pool_pk,
                    plot_pubkey: *keys.plot_public_key(),
                    size: plot.k(),
                    proof: f.proof.expect("asked for proofs"),
                };
                return FixtureProof { keys, pool_pk, challenge, quality: f.quality, proof };
            }
        }
        panic!("{}: no proof for 10,000 challenges", path.display());
    })
}

/// `fixtures/farmer-keys.json`: the farmer key of every fixture memo and the fixture pool key.
pub(crate) fn farmer_keys() -> FarmerKeys {
    FarmerKeys::load(&test_support::fixtures().join("farmer-keys.json")).expect("fixture keys")
}
