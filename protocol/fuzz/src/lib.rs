//! Helpers shared by the protocol fuzz targets: a cursor over the fuzzer's bytes, sample
//! messages and the seed-corpus writer.

use std::path::Path;

use protocol::{Body, ErrorCode, Message, ProofOfSpace};

/// Reads the fuzzer's input front to back; past the end every read gives 0.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
}

/// One message of every type, with and without an id, at small and limit sizes.
pub fn sample_messages() -> Vec<Message> {
    let proof = ProofOfSpace {
        challenge_hash: [0xc1; 32],
        pool_pubkey: [0xa1; 48],
        plot_pubkey: [0xb2; 48],
        size: 32,
        proof: vec![0xee; 256],
    };
    let bodies = vec![
        Body::HarvesterHandshake { pool_pubkeys: vec![] },
        Body::HarvesterHandshake { pool_pubkeys: vec![[1; 48], [2; 48], [3; 48]] },
        Body::NewChallenge { challenge_hash: [0x11; 32] },
        Body::ChallengeResponse { challenge_hash: [0x11; 32], quality: [0x22; 32], plot_size: 32 },
        Body::RequestProofOfSpace { quality: [0x22; 32] },
        Body::RespondProofOfSpace { quality: [0x22; 32], proof: proof.clone() },
        Body::RespondProofOfSpace {
            quality: [0x22; 32],
            proof: ProofOfSpace { proof: vec![7; 400], size: 50, ..proof },
        },
        Body::RequestHeaderSignature { quality: [0x22; 32], header_hash: [0x33; 32] },
        Body::RespondHeaderSignature { quality: [0x22; 32], header_hash_signature: [0x44; 96] },
        Body::RequestPartialProof { quality: [0x22; 32], farmer_target_hash: [0x55; 32] },
        Body::RespondPartialProof { quality: [0x22; 32], farmer_target_signature: [0x66; 96] },
        Body::Error { code: ErrorCode::UnknownQuality, message: String::new(), data: None },
        Body::Error {
            code: ErrorCode::Other(-300),
            message: "plot ünïcödé".into(),
            data: Some(vec![1, 2, 3]),
        },
        Body::Error { code: ErrorCode::LookupFailed, message: "m".repeat(1024), data: None },
    ];
    let mut out = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        out.push(Message { id: None, body: body.clone() });
        out.push(Message { id: Some(i as u16 * 4099), body });
    }
    out
}

/// When `FUZZ_WRITE_SEEDS=<dir>` is set, writes `seeds()` there as files `seed-NNN` and exits;
/// otherwise does nothing. Called from each target's `init`, so the seeds come from the same
/// code (and data) the target runs on; `scripts/fuzz.sh` calls it before fuzzing.
pub fn write_seeds_if_asked(seeds: impl FnOnce() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os("FUZZ_WRITE_SEEDS") else { return };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("seed directory");
    let seeds = seeds();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("write seed");
    }
    eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    std::process::exit(0);
}
