//! The messages: plain data types and their encoding (Chia streamable, see `docs/protocol.md`).
//!
//! Encoding never fails and never checks the limits of [`crate::Limits`]; a message built from
//! values within the limits (see [`Message::check`]) always decodes back to itself.

use crate::codec::{CodecError, Limits};

/// A raw 32-byte value: a hash, a challenge, a quality.
pub type Bytes32 = [u8; 32];
/// A BLS12-381 G1 element (public key), 48 bytes compressed. The codec does not check that
/// the bytes are a point.
pub type G1 = [u8; 48];
/// A BLS12-381 G2 element (signature), 96 bytes compressed. The codec does not check that
/// the bytes are a point.
pub type G2 = [u8; 96];

/// Bytes of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Most bytes a [`ProofOfSpace::proof`] may hold on the wire: 8 * k for k <= 50.
pub const PROOF_BYTES_MAX: u32 = 8 * 50;
/// Most bytes of UTF-8 in [`Body::Error`]'s `message`.
pub const ERROR_MESSAGE_BYTES_MAX: u32 = 1024;
/// Most bytes in [`Body::Error`]'s `data`.
pub const ERROR_DATA_BYTES_MAX: u32 = 4096;

/// The `type` byte of each message.
pub mod message_type {
    /// [`crate::Body::HarvesterHandshake`], farmer -> harvester.
    pub const HARVESTER_HANDSHAKE: u8 = 3;
    /// [`crate::Body::NewChallenge`], farmer -> harvester.
    pub const NEW_CHALLENGE: u8 = 200;
    /// [`crate::Body::ChallengeResponse`], harvester -> farmer.
    pub const CHALLENGE_RESPONSE: u8 = 201;
    /// [`crate::Body::RequestProofOfSpace`], farmer -> harvester.
    pub const REQUEST_PROOF_OF_SPACE: u8 = 202;
    /// [`crate::Body::RespondProofOfSpace`], harvester -> farmer.
    pub const RESPOND_PROOF_OF_SPACE: u8 = 203;
    /// [`crate::Body::RequestHeaderSignature`], farmer -> harvester.
    pub const REQUEST_HEADER_SIGNATURE: u8 = 204;
    /// [`crate::Body::RespondHeaderSignature`], harvester -> farmer.
    pub const RESPOND_HEADER_SIGNATURE: u8 = 205;
    /// [`crate::Body::RequestPartialProof`], farmer -> harvester.
    pub const REQUEST_PARTIAL_PROOF: u8 = 206;
    /// [`crate::Body::RespondPartialProof`], harvester -> farmer.
    pub const RESPOND_PARTIAL_PROOF: u8 = 207;
    /// [`crate::Body::ChallengeDone`], harvester -> farmer, only on connections that
    /// negotiated `harvester/2` (ALPN).
    pub const CHALLENGE_DONE: u8 = 208;
    /// [`crate::Body::Error`], either direction.
    pub const ERROR: u8 = 255;

    /// Every known type byte, in ascending order.
    pub const ALL: [u8; 11] = [
        HARVESTER_HANDSHAKE,
        NEW_CHALLENGE,
        CHALLENGE_RESPONSE,
        REQUEST_PROOF_OF_SPACE,
        RESPOND_PROOF_OF_SPACE,
        REQUEST_HEADER_SIGNATURE,
        RESPOND_HEADER_SIGNATURE,
        REQUEST_PARTIAL_PROOF,
        RESPOND_PARTIAL_PROOF,
        CHALLENGE_DONE,
        ERROR,
    ];
}

/// A proof of space in the original layout (no Optional flags, a pool public key only):
/// `challenge_hash 32 | pool_pubkey 48 | plot_pubkey 48 | size 1 | proof (u32 len + bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOfSpace {
    /// The challenge the proof answers.
    pub challenge_hash: Bytes32,
    /// The plot's pool public key (plot id = sha256(pool_pubkey || plot_pubkey)).
    pub pool_pubkey: G1,
    /// The plot public key; signatures for this quality verify against it.
    pub plot_pubkey: G1,
    /// The plot's k.
    pub size: u8,
    /// The 64 x values, k bits each, packed big-endian: 8 * k bytes. At most
    /// [`PROOF_BYTES_MAX`] bytes; the codec does not check `8 * size`.
    pub proof: Vec<u8>,
}

/// An error code carried by [`Body::Error`]. `i16` on the wire; codes this version does not
/// know are kept as [`ErrorCode::Other`] so they re-encode unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: a request or challenge arrived before the first `HarvesterHandshake`.
    NotReady,
    /// 2: the quality was never announced on this connection, or has expired.
    UnknownQuality,
    /// 3: too many challenges in flight; the challenge was not looked up and is not
    /// remembered: send it again later.
    Overloaded,
    /// 4: reading the proof from the plot failed; the message names the plot and the reason.
    LookupFailed,
    /// 5: the answer missed its deadline.
    TimedOut,
    /// 6: the plot was removed or quarantined after the quality was announced.
    PlotUnavailable,
    /// 7: the harvester holds no secret key for this plot.
    NoSigningKey,
    /// 8: the peer broke the protocol; the sender closes the connection after this message.
    ProtocolViolation,
    /// 9: a bug or unexpected failure inside the harvester.
    Internal,
    /// 10: a `NewChallenge` already received on this connection: not looked up again; the
    /// first one's qualities stay answerable.
    DuplicateChallenge,
    /// 11: the request was refused for load (the disk's proof queue is full), not for a fault
    /// of the disk or the plot: ask again after a pause (documented retry rule).
    Busy,
    /// Any other code, kept as received. Never one of the codes above.
    Other(i16),
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::NotReady => 1,
            ErrorCode::UnknownQuality => 2,
            ErrorCode::Overloaded => 3,
            ErrorCode::LookupFailed => 4,
            ErrorCode::TimedOut => 5,
            ErrorCode::PlotUnavailable => 6,
            ErrorCode::NoSigningKey => 7,
            ErrorCode::ProtocolViolation => 8,
            ErrorCode::Internal => 9,
            ErrorCode::DuplicateChallenge => 10,
            ErrorCode::Busy => 11,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a wire value; unknown values become [`ErrorCode::Other`].
    pub fn from_code(code: i16) -> ErrorCode {
        match code {
            1 => ErrorCode::NotReady,
            2 => ErrorCode::UnknownQuality,
            3 => ErrorCode::Overloaded,
            4 => ErrorCode::LookupFailed,
            5 => ErrorCode::TimedOut,
            6 => ErrorCode::PlotUnavailable,
            7 => ErrorCode::NoSigningKey,
            8 => ErrorCode::ProtocolViolation,
            9 => ErrorCode::Internal,
            10 => ErrorCode::DuplicateChallenge,
            11 => ErrorCode::Busy,
            other => ErrorCode::Other(other),
        }
    }

    /// A name for logs (`"Other"` for unknown codes).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NotReady => "NotReady",
            ErrorCode::UnknownQuality => "UnknownQuality",
            ErrorCode::Overloaded => "Overloaded",
            ErrorCode::LookupFailed => "LookupFailed",
            ErrorCode::TimedOut => "TimedOut",
            ErrorCode::PlotUnavailable => "PlotUnavailable",
            ErrorCode::NoSigningKey => "NoSigningKey",
            ErrorCode::ProtocolViolation => "ProtocolViolation",
            ErrorCode::Internal => "Internal",
            ErrorCode::DuplicateChallenge => "DuplicateChallenge",
            ErrorCode::Busy => "Busy",
            ErrorCode::Other(_) => "Other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// The body of a message; the variant fixes the `type` byte. The set is complete for this
/// protocol version: a new message is a new protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Type 3, farmer -> harvester, id None. The pool public keys to farm; the first one makes
    /// the session ready, later ones re-select plots.
    HarvesterHandshake {
        /// At most [`Limits::pool_keys_max`] keys.
        pool_pubkeys: Vec<G1>,
    },
    /// Type 200, farmer -> harvester, id None. Look this challenge up in every plot.
    NewChallenge {
        /// The challenge.
        challenge_hash: Bytes32,
    },
    /// Type 201, harvester -> farmer, id None. One quality found for a challenge.
    ChallengeResponse {
        /// The challenge from `NewChallenge`.
        challenge_hash: Bytes32,
        /// The chiapos quality string; the key of every later request.
        quality: Bytes32,
        /// The plot's k.
        plot_size: u8,
    },
    /// Type 202, farmer -> harvester, id Some. Fetch the full proof behind a quality.
    RequestProofOfSpace {
        /// A quality announced on this connection.
        quality: Bytes32,
    },
    /// Type 203, harvester -> farmer, echoes the request's id.
    RespondProofOfSpace {
        /// The quality of the request.
        quality: Bytes32,
        /// The proof.
        proof: ProofOfSpace,
    },
    /// Type 204, farmer -> harvester, id Some. Sign a block header hash with the plot key.
    RequestHeaderSignature {
        /// A quality announced on this connection.
        quality: Bytes32,
        /// The 32-byte message to sign.
        header_hash: Bytes32,
    },
    /// Type 205, harvester -> farmer, echoes the request's id.
    RespondHeaderSignature {
        /// The quality of the request.
        quality: Bytes32,
        /// AugSchemeMPL signature of `header_hash` (see "Signatures" in `docs/protocol.md`).
        header_hash_signature: G2,
    },
    /// Type 206, farmer -> harvester, id Some. Sign the farmer target hash (pool partial).
    RequestPartialProof {
        /// A quality announced on this connection.
        quality: Bytes32,
        /// The 32-byte message to sign.
        farmer_target_hash: Bytes32,
    },
    /// Type 207, harvester -> farmer, echoes the request's id.
    RespondPartialProof {
        /// The quality of the request.
        quality: Bytes32,
        /// AugSchemeMPL signature of `farmer_target_hash`.
        farmer_target_signature: G2,
    },
    /// Type 208, harvester -> farmer, no id, only with `harvester/2` negotiated: the challenge
    /// is finished on every disk; no `ChallengeResponse` for it follows, and it no longer counts
    /// against `challenges_in_flight_max`.
    ChallengeDone {
        /// The challenge.
        challenge_hash: Bytes32,
        /// `ChallengeResponse`s sent for it.
        responses: u32,
        /// Disks (shards) that looked it up.
        disks: u16,
        /// Of those, disks that did not finish: deadline passed or refused (their answers are
        /// missing or partial).
        disks_incomplete: u16,
        /// Microseconds from the `NewChallenge` to this message.
        elapsed_us: u64,
    },
    /// Type 255, either direction. Answers a request (echoing its id) or reports a problem.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes of UTF-8.
        message: String,
        /// Optional detail bytes, at most [`ERROR_DATA_BYTES_MAX`]. Errors answering a
        /// `NewChallenge` carry its 32-byte challenge hash here.
        data: Option<Vec<u8>>,
    },
}

impl Body {
    /// The `type` byte of this message (see [`message_type`]).
    pub fn message_type(&self) -> u8 {
        match self {
            Body::HarvesterHandshake { .. } => message_type::HARVESTER_HANDSHAKE,
            Body::NewChallenge { .. } => message_type::NEW_CHALLENGE,
            Body::ChallengeResponse { .. } => message_type::CHALLENGE_RESPONSE,
            Body::RequestProofOfSpace { .. } => message_type::REQUEST_PROOF_OF_SPACE,
            Body::RespondProofOfSpace { .. } => message_type::RESPOND_PROOF_OF_SPACE,
            Body::RequestHeaderSignature { .. } => message_type::REQUEST_HEADER_SIGNATURE,
            Body::RespondHeaderSignature { .. } => message_type::RESPOND_HEADER_SIGNATURE,
            Body::RequestPartialProof { .. } => message_type::REQUEST_PARTIAL_PROOF,
            Body::RespondPartialProof { .. } => message_type::RESPOND_PARTIAL_PROOF,
            Body::ChallengeDone { .. } => message_type::CHALLENGE_DONE,
            Body::Error { .. } => message_type::ERROR,
        }
    }

    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Body::HarvesterHandshake { .. } => "HarvesterHandshake",
            Body::NewChallenge { .. } => "NewChallenge",
            Body::ChallengeResponse { .. } => "ChallengeResponse",
            Body::RequestProofOfSpace { .. } => "RequestProofOfSpace",
            Body::RespondProofOfSpace { .. } => "RespondProofOfSpace",
            Body::RequestHeaderSignature { .. } => "RequestHeaderSignature",
            Body::RespondHeaderSignature { .. } => "RespondHeaderSignature",
            Body::RequestPartialProof { .. } => "RequestPartialProof",
            Body::RespondPartialProof { .. } => "RespondPartialProof",
            Body::ChallengeDone { .. } => "ChallengeDone",
            Body::Error { .. } => "Error",
        }
    }

    /// True for the messages only the harvester sends (201, 203, 205, 207, 208).
    pub fn is_harvester_only(&self) -> bool {
        matches!(
            self,
            Body::ChallengeResponse { .. }
                | Body::RespondProofOfSpace { .. }
                | Body::RespondHeaderSignature { .. }
                | Body::RespondPartialProof { .. }
                | Body::ChallengeDone { .. }
        )
    }

    /// Appends the streamable encoding of the body (the message's `data`, without its length).
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Body::HarvesterHandshake { pool_pubkeys } => {
                out.extend_from_slice(&len_u32(pool_pubkeys.len()).to_be_bytes());
                for key in pool_pubkeys {
                    out.extend_from_slice(key);
                }
            }
            Body::NewChallenge { challenge_hash } => out.extend_from_slice(challenge_hash),
            Body::ChallengeResponse { challenge_hash, quality, plot_size } => {
                out.extend_from_slice(challenge_hash);
                out.extend_from_slice(quality);
                out.push(*plot_size);
            }
            Body::RequestProofOfSpace { quality } => out.extend_from_slice(quality),
            Body::RespondProofOfSpace { quality, proof } => {
                out.extend_from_slice(quality);
                out.extend_from_slice(&proof.challenge_hash);
                out.extend_from_slice(&proof.pool_pubkey);
                out.extend_from_slice(&proof.plot_pubkey);
                out.push(proof.size);
                put_bytes(out, &proof.proof);
            }
            Body::RequestHeaderSignature { quality, header_hash } => {
                out.extend_from_slice(quality);
                out.extend_from_slice(header_hash);
            }
            Body::RespondHeaderSignature { quality, header_hash_signature } => {
                out.extend_from_slice(quality);
                out.extend_from_slice(header_hash_signature);
            }
            Body::RequestPartialProof { quality, farmer_target_hash } => {
                out.extend_from_slice(quality);
                out.extend_from_slice(farmer_target_hash);
            }
            Body::RespondPartialProof { quality, farmer_target_signature } => {
                out.extend_from_slice(quality);
                out.extend_from_slice(farmer_target_signature);
            }
            Body::ChallengeDone {
                challenge_hash,
                responses,
                disks,
                disks_incomplete,
                elapsed_us,
            } => {
                out.extend_from_slice(challenge_hash);
                out.extend_from_slice(&responses.to_be_bytes());
                out.extend_from_slice(&disks.to_be_bytes());
                out.extend_from_slice(&disks_incomplete.to_be_bytes());
                out.extend_from_slice(&elapsed_us.to_be_bytes());
            }
            Body::Error { code, message, data } => {
                out.extend_from_slice(&code.code().to_be_bytes());
                put_bytes(out, message.as_bytes());
                match data {
                    None => out.push(0),
                    Some(data) => {
                        out.push(1);
                        put_bytes(out, data);
                    }
                }
            }
        }
    }
}

/// One protocol message: a body and the request id (`Some` on requests and their answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request nonce: set by the farmer on requests (202, 204, 206), echoed by the answer.
    pub id: Option<u16>,
    /// The message itself.
    pub body: Body,
}

impl Message {
    /// Appends one whole frame to `out`: the u32 BE length prefix, then
    /// `type | id flag | [id] | data length | data`.
    ///
    /// Does not check [`Limits`]; see [`Message::check`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_PREFIX_BYTES]);
        out.push(self.body.message_type());
        match self.id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        let data_len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let data_at = out.len();
        self.body.encode_data(out);
        let data_bytes = len_u32(out.len() - data_at);
        out[data_len_at..data_at].copy_from_slice(&data_bytes.to_be_bytes());
        let payload_bytes = len_u32(out.len() - start - FRAME_PREFIX_BYTES);
        out[start..start + FRAME_PREFIX_BYTES].copy_from_slice(&payload_bytes.to_be_bytes());
    }

    /// The encoded frame as a new vector (see [`Message::encode`]).
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// An [`Body::Error`] message without data. A `message` longer than
    /// [`ERROR_MESSAGE_BYTES_MAX`] is cut at a character boundary so the frame always decodes.
    pub fn error(id: Option<u16>, code: ErrorCode, message: impl Into<String>) -> Message {
        let mut message = message.into();
        truncate_utf8(&mut message, ERROR_MESSAGE_BYTES_MAX as usize);
        Message { id, body: Body::Error { code, message, data: None } }
    }

    /// Checks that the message would decode under `limits`: the frame and every field within
    /// its limit. A sender can call this before [`Message::encode`] on untrusted content.
    pub fn check(&self, limits: &Limits) -> Result<(), CodecError> {
        let too_many = |what, count: usize, max: u32| -> Result<(), CodecError> {
            match u32::try_from(count) {
                Ok(count) if count <= max => Ok(()),
                _ => Err(CodecError::TooMany { what, count: saturate_u32(count), max }),
            }
        };
        match &self.body {
            Body::HarvesterHandshake { pool_pubkeys } => too_many(
                "HarvesterHandshake.pool_pubkeys",
                pool_pubkeys.len(),
                limits.pool_keys_max,
            )?,
            Body::RespondProofOfSpace { proof, .. } => {
                too_many("ProofOfSpace.proof bytes", proof.proof.len(), PROOF_BYTES_MAX)?
            }
            Body::Error { message, data, .. } => {
                too_many("Error.message bytes", message.len(), ERROR_MESSAGE_BYTES_MAX)?;
                if let Some(data) = data {
                    too_many("Error.data bytes", data.len(), ERROR_DATA_BYTES_MAX)?;
                }
            }
            _ => {}
        }
        let payload_bytes = self.payload_bytes();
        if payload_bytes > limits.frame_bytes_max as usize {
            return Err(CodecError::FrameTooLarge {
                len: saturate_u32(payload_bytes),
                max: limits.frame_bytes_max,
            });
        }
        Ok(())
    }

    /// Bytes of the frame after the length prefix (the prefix's value).
    pub fn payload_bytes(&self) -> usize {
        let id_bytes = if self.id.is_some() { 2 } else { 0 };
        let data_bytes = match &self.body {
            Body::HarvesterHandshake { pool_pubkeys } => 4 + 48 * pool_pubkeys.len(),
            Body::NewChallenge { .. } | Body::RequestProofOfSpace { .. } => 32,
            Body::ChallengeResponse { .. } => 65,
            Body::RespondProofOfSpace { proof, .. } => 32 + 133 + proof.proof.len(),
            Body::RequestHeaderSignature { .. } | Body::RequestPartialProof { .. } => 64,
            Body::RespondHeaderSignature { .. } | Body::RespondPartialProof { .. } => 128,
            Body::ChallengeDone { .. } => 48,
            Body::Error { message, data, .. } => {
                2 + 4 + message.len() + 1 + data.as_ref().map_or(0, |d| 4 + d.len())
            }
        };
        1 + 1 + id_bytes + 4 + data_bytes
    }
}

/// Appends a streamable `bytes` (u32 BE length, then the bytes).
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&len_u32(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A length as the wire's u32. Every limit is far below 4 GiB, so a longer field is a bug in
/// the caller (it built a message no peer could accept), not bad input: assert.
fn len_u32(len: usize) -> u32 {
    assert!(len <= u32::MAX as usize, "field of {len} bytes cannot be encoded (u32 length)");
    len as u32
}

fn saturate_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Cuts `s` to at most `bytes_max` bytes at a character boundary.
fn truncate_utf8(s: &mut String, bytes_max: usize) {
    if s.len() <= bytes_max {
        return;
    }
    let mut end = bytes_max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for code in i16::MIN..=i16::MAX {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        for (code, known) in (1..=11).map(|c| (c, ErrorCode::from_code(c))) {
            assert!(!matches!(known, ErrorCode::Other(_)), "code {code} is known");
        }
        assert_eq!(ErrorCode::from_code(0), ErrorCode::Other(0));
        assert_eq!(ErrorCode::from_code(-1), ErrorCode::Other(-1));
        assert_eq!(ErrorCode::UnknownQuality.to_string(), "UnknownQuality (2)");
    }

    #[test]
    fn message_types_are_distinct_and_listed() {
        let mut all = message_type::ALL.to_vec();
        all.dedup();
        assert_eq!(all.len(), message_type::ALL.len());
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn error_message_is_truncated_at_char_boundary() {
        let long = "é".repeat(1000); // 2000 bytes
        let m = Message::error(Some(5), ErrorCode::Internal, long);
        let Body::Error { message, .. } = &m.body else { panic!("an Error body") };
        assert_eq!(message.len(), 1024);
        assert!(m.check(&Limits::default()).is_ok());
        let odd = format!("x{}", "é".repeat(1000));
        let m = Message::error(None, ErrorCode::Internal, odd);
        let Body::Error { message, .. } = &m.body else { panic!("an Error body") };
        assert_eq!(message.len(), 1023);
    }

    #[test]
    fn payload_bytes_matches_encoding() {
        let m = Message {
            id: Some(9),
            body: Body::Error {
                code: ErrorCode::LookupFailed,
                message: "plot x: EIO".into(),
                data: Some(vec![1, 2, 3]),
            },
        };
        assert_eq!(m.to_frame().len(), FRAME_PREFIX_BYTES + m.payload_bytes());
    }

    #[test]
    fn check_reports_limits() {
        let limits = Limits { frame_bytes_max: 100, pool_keys_max: 1 };
        let two_keys =
            Message { id: None, body: Body::HarvesterHandshake { pool_pubkeys: vec![[0; 48]; 2] } };
        assert_eq!(
            two_keys.check(&limits),
            Err(CodecError::TooMany { what: "HarvesterHandshake.pool_pubkeys", count: 2, max: 1 })
        );
        let big = Message {
            id: None,
            body: Body::Error { code: ErrorCode::Internal, message: "x".repeat(200), data: None },
        };
        assert_eq!(big.check(&limits), Err(CodecError::FrameTooLarge { len: 213, max: 100 }));
    }
}
