//! Decoding: [`decode_message`] for one frame payload and the incremental [`FrameDecoder`] for
//! a byte stream. Everything read from the peer is checked; nothing allocates more than the
//! frame already holds.

use crate::message::{
    message_type, Body, ErrorCode, Message, ProofOfSpace, ERROR_DATA_BYTES_MAX,
    ERROR_MESSAGE_BYTES_MAX, FRAME_PREFIX_BYTES, PROOF_BYTES_MAX,
};

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes after the length prefix of one frame (the prefix's largest accepted value).
    pub frame_bytes_max: u32,
    /// Most keys in a `HarvesterHandshake`.
    pub pool_keys_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { frame_bytes_max: 1 << 20, pool_keys_max: 1024 }
    }
}

/// Why bytes from the peer are not a valid message. Every variant is a protocol violation:
/// the connection is closed; the `Display` text is logged as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix announces more than `frame_bytes_max` bytes.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The length prefix.
        len: u32,
        /// [`Limits::frame_bytes_max`].
        max: u32,
    },
    /// The type byte names no message of this protocol.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// The id flag byte is neither 0 nor 1.
    #[error("message id flag is {0}, not 0 or 1")]
    BadIdFlag(u8),
    /// The message's data length disagrees with the frame's length prefix.
    #[error("message data length says {declared} bytes but the frame holds {actual}")]
    LengthMismatch {
        /// The data length field.
        declared: u32,
        /// Bytes of the frame after the message header.
        actual: u32,
    },
    /// The bytes end inside a field.
    #[error("truncated: the bytes end inside {what}")]
    Truncated {
        /// The field (`Message.field` or a header part).
        what: &'static str,
    },
    /// A body has bytes left after its last field.
    #[error("trailing bytes after {what}")]
    TrailingBytes {
        /// The message whose body is too long.
        what: &'static str,
    },
    /// An Optional flag byte is neither 0 nor 1.
    #[error("optional flag is {0}, not 0 or 1")]
    BadOptionFlag(u8),
    /// A `str` is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// A count or length is above its limit.
    #[error("{what}: {count} exceeds the limit of {max}")]
    TooMany {
        /// The list or byte field.
        what: &'static str,
        /// The count or length read.
        count: u32,
        /// The limit.
        max: u32,
    },
}

/// Decodes one frame payload: the bytes after the length prefix.
pub fn decode_message(frame_payload: &[u8], limits: &Limits) -> Result<Message, CodecError> {
    let mut r = Reader { bytes: frame_payload };
    let kind = r.u8("message type")?;
    if !message_type::ALL.contains(&kind) {
        return Err(CodecError::UnknownMessageType(kind));
    }
    let id = match r.u8("message id flag")? {
        0 => None,
        1 => Some(r.u16("message id")?),
        flag => return Err(CodecError::BadIdFlag(flag)),
    };
    let declared = r.u32("message data length")?;
    let actual = r.bytes.len();
    if declared as usize != actual {
        return Err(CodecError::LengthMismatch {
            declared,
            actual: u32::try_from(actual).unwrap_or(u32::MAX),
        });
    }
    let body = decode_body(kind, r.bytes, limits)?;
    Ok(Message { id, body })
}

/// Decodes a message's `data` for the type byte `kind` (one of [`message_type::ALL`]).
fn decode_body(kind: u8, data: &[u8], limits: &Limits) -> Result<Body, CodecError> {
    let mut r = Reader { bytes: data };
    let (body, what) = match kind {
        message_type::HARVESTER_HANDSHAKE => {
            let what = "HarvesterHandshake.pool_pubkeys";
            let count = r.u32(what)?;
            if count > limits.pool_keys_max {
                return Err(CodecError::TooMany { what, count, max: limits.pool_keys_max });
            }
            // Checked before allocating: the count may not promise more than the frame holds.
            if count as usize * 48 > r.bytes.len() {
                return Err(CodecError::Truncated { what });
            }
            let mut pool_pubkeys = Vec::with_capacity(count as usize);
            for _ in 0..count {
                pool_pubkeys.push(r.array::<48>(what)?);
            }
            (Body::HarvesterHandshake { pool_pubkeys }, "HarvesterHandshake body")
        }
        message_type::NEW_CHALLENGE => (
            Body::NewChallenge { challenge_hash: r.array("NewChallenge.challenge_hash")? },
            "NewChallenge body",
        ),
        message_type::CHALLENGE_RESPONSE => (
            Body::ChallengeResponse {
                challenge_hash: r.array("ChallengeResponse.challenge_hash")?,
                quality: r.array("ChallengeResponse.quality")?,
                plot_size: r.u8("ChallengeResponse.plot_size")?,
            },
            "ChallengeResponse body",
        ),
        message_type::REQUEST_PROOF_OF_SPACE => (
            Body::RequestProofOfSpace { quality: r.array("RequestProofOfSpace.quality")? },
            "RequestProofOfSpace body",
        ),
        message_type::RESPOND_PROOF_OF_SPACE => {
            let quality = r.array("RespondProofOfSpace.quality")?;
            let challenge_hash = r.array("ProofOfSpace.challenge_hash")?;
            let pool_pubkey = r.array("ProofOfSpace.pool_pubkey")?;
            let plot_pubkey = r.array("ProofOfSpace.plot_pubkey")?;
            let size = r.u8("ProofOfSpace.size")?;
            let proof = r.bytes("ProofOfSpace.proof", PROOF_BYTES_MAX)?.to_vec();
            let proof = ProofOfSpace { challenge_hash, pool_pubkey, plot_pubkey, size, proof };
            (Body::RespondProofOfSpace { quality, proof }, "RespondProofOfSpace body")
        }
        message_type::REQUEST_HEADER_SIGNATURE => (
            Body::RequestHeaderSignature {
                quality: r.array("RequestHeaderSignature.quality")?,
                header_hash: r.array("RequestHeaderSignature.header_hash")?,
            },
            "RequestHeaderSignature body",
        ),
        message_type::RESPOND_HEADER_SIGNATURE => (
            Body::RespondHeaderSignature {
                quality: r.array("RespondHeaderSignature.quality")?,
                header_hash_signature: r.array("RespondHeaderSignature.header_hash_signature")?,
            },
            "RespondHeaderSignature body",
        ),
        message_type::REQUEST_PARTIAL_PROOF => (
            Body::RequestPartialProof {
                quality: r.array("RequestPartialProof.quality")?,
                farmer_target_hash: r.array("RequestPartialProof.farmer_target_hash")?,
            },
            "RequestPartialProof body",
        ),
        message_type::RESPOND_PARTIAL_PROOF => (
            Body::RespondPartialProof {
                quality: r.array("RespondPartialProof.quality")?,
                farmer_target_signature: r.array("RespondPartialProof.farmer_target_signature")?,
            },
            "RespondPartialProof body",
        ),
        message_type::CHALLENGE_DONE => (
            Body::ChallengeDone {
                challenge_hash: r.array("ChallengeDone.challenge_hash")?,
                responses: u32::from_be_bytes(r.array("ChallengeDone.responses")?),
                disks: u16::from_be_bytes(r.array("ChallengeDone.disks")?),
                disks_incomplete: u16::from_be_bytes(r.array("ChallengeDone.disks_incomplete")?),
                elapsed_us: u64::from_be_bytes(r.array("ChallengeDone.elapsed_us")?),
            },
            "ChallengeDone body",
        ),
        message_type::ERROR => {
            let code = ErrorCode::from_code(r.i16("Error.code")?);
            let message = r.bytes("Error.message", ERROR_MESSAGE_BYTES_MAX)?;
            let message = std::str::from_utf8(message).map_err(|_| CodecError::BadUtf8)?.to_owned();
            let data = match r.u8("Error.data flag")? {
                0 => None,
                1 => Some(r.bytes("Error.data", ERROR_DATA_BYTES_MAX)?.to_vec()),
                flag => return Err(CodecError::BadOptionFlag(flag)),
            };
            (Body::Error { code, message, data }, "Error body")
        }
        other => return Err(CodecError::UnknownMessageType(other)),
    };
    if !r.bytes.is_empty() {
        return Err(CodecError::TrailingBytes { what });
    }
    Ok(body)
}

/// A cursor over bytes from the peer; every read names the field for the error.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(CodecError::Truncated { what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A streamable `bytes`/`str` payload: u32 BE length (at most `max`), then the bytes.
    fn bytes(&mut self, what: &'static str, max: u32) -> Result<&'a [u8], CodecError> {
        let len = self.u32(what)?;
        if len > max {
            return Err(CodecError::TooMany { what, count: len, max });
        }
        self.take(len as usize, what)
    }
}

/// Splits a byte stream into frames and decodes them, holding at most one frame.
///
/// Contract: [`FrameDecoder::feed`] copies bytes up to the end of the current frame and stops
/// there; [`FrameDecoder::next_message`] then returns that frame's message and empties the
/// buffer. So this loop sees every message and never buffers more than
/// `frame_bytes_max + 4` bytes:
///
/// ```
/// # use protocol::{FrameDecoder, Limits, Message, Body, CodecError};
/// # fn main() -> Result<(), CodecError> {
/// # let body = Body::NewChallenge { challenge_hash: [1; 32] };
/// # let buf = Message { id: None, body }.to_frame();
/// # let n = buf.len();
/// let mut dec = FrameDecoder::new(Limits::default());
/// let mut rest = &buf[..n];
/// while !rest.is_empty() {
///     let used = dec.feed(rest);
///     rest = &rest[used..];
///     while let Some(message) = dec.next_message()? {
///         // handle `message`
/// #       let _ = message;
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Errors are final: after one, `feed` takes nothing and `next_message` returns the same error
/// again, so a loop like the one above cannot spin. An oversized length prefix is reported as
/// soon as its 4 bytes arrive, before any of the frame's body is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    /// The current frame: its prefix and as much of its payload as has arrived.
    buf: Vec<u8>,
    /// The payload length once the prefix is complete.
    payload_bytes: Option<usize>,
    /// Set by the first error; the stream cannot be resynchronised after one.
    failed: Option<CodecError>,
}

impl FrameDecoder {
    /// A decoder with nothing buffered.
    pub fn new(limits: Limits) -> Self {
        FrameDecoder { limits, buf: Vec::new(), payload_bytes: None, failed: None }
    }

    /// Buffers bytes of the current frame and returns how many of `bytes` it took. It stops at
    /// the end of the frame (the caller feeds the rest after draining [`Self::next_message`]),
    /// and takes nothing while a complete frame waits or after an error.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        if self.failed.is_some() || self.frame_complete() {
            return 0;
        }
        let mut used = 0;
        if self.payload_bytes.is_none() {
            let want = FRAME_PREFIX_BYTES - self.buf.len();
            let n = want.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            used += n;
            if self.buf.len() < FRAME_PREFIX_BYTES {
                return used;
            }
            let mut prefix = [0; FRAME_PREFIX_BYTES];
            prefix.copy_from_slice(&self.buf[..FRAME_PREFIX_BYTES]);
            let len = u32::from_be_bytes(prefix);
            if len > self.limits.frame_bytes_max {
                self.failed =
                    Some(CodecError::FrameTooLarge { len, max: self.limits.frame_bytes_max });
                return used;
            }
            self.payload_bytes = Some(len as usize);
        }
        let frame_bytes = self.frame_bytes().unwrap_or(FRAME_PREFIX_BYTES);
        let n = (frame_bytes - self.buf.len()).min(bytes.len() - used);
        self.buf.extend_from_slice(&bytes[used..used + n]);
        used += n;
        debug_assert!(self.buf.len() <= FRAME_PREFIX_BYTES + self.limits.frame_bytes_max as usize);
        used
    }

    /// The message of the buffered frame once it is complete (`Ok(None)` until then).
    /// Returns each message once; an error is returned on every call from then on.
    pub fn next_message(&mut self) -> Result<Option<Message>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.frame_complete() {
            return Ok(None);
        }
        let result = decode_message(&self.buf[FRAME_PREFIX_BYTES..], &self.limits);
        self.buf.clear();
        self.payload_bytes = None;
        match result {
            Ok(message) => Ok(Some(message)),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Bytes held: at most `frame_bytes_max + 4`.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The error that stopped the decoder, if any.
    pub fn error(&self) -> Option<&CodecError> {
        self.failed.as_ref()
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn frame_bytes(&self) -> Option<usize> {
        self.payload_bytes.map(|p| FRAME_PREFIX_BYTES + p)
    }

    fn frame_complete(&self) -> bool {
        self.frame_bytes() == Some(self.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn frame(kind: u8, id: Option<u16>, data: &[u8]) -> Vec<u8> {
        let mut payload = vec![kind];
        match id {
            None => payload.push(0),
            Some(id) => {
                payload.push(1);
                payload.extend_from_slice(&id.to_be_bytes());
            }
        }
        payload.extend_from_slice(&(data.len() as u32).to_be_bytes());
        payload.extend_from_slice(data);
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&payload);
        out
    }

    fn decode_frame(bytes: &[u8]) -> Result<Message, CodecError> {
        decode_message(&bytes[4..], &limits())
    }

    fn proof() -> ProofOfSpace {
        ProofOfSpace {
            challenge_hash: [0xc1; 32],
            pool_pubkey: [0xa1; 48],
            plot_pubkey: [0xb2; 48],
            size: 32,
            proof: (0..=255).cycle().take(256).collect(),
        }
    }

    /// One message of every type, with and without ids and optional data.
    pub(crate) fn every_message() -> Vec<Message> {
        let bodies = vec![
            Body::HarvesterHandshake { pool_pubkeys: vec![] },
            Body::HarvesterHandshake { pool_pubkeys: vec![[0x01; 48], [0x02; 48], [0x03; 48]] },
            Body::NewChallenge { challenge_hash: [0x11; 32] },
            Body::ChallengeResponse {
                challenge_hash: [0x11; 32],
                quality: [0x22; 32],
                plot_size: 32,
            },
            Body::RequestProofOfSpace { quality: [0x22; 32] },
            Body::RespondProofOfSpace { quality: [0x22; 32], proof: proof() },
            Body::RespondProofOfSpace {
                quality: [0x22; 32],
                proof: ProofOfSpace { proof: vec![], ..proof() },
            },
            Body::RespondProofOfSpace {
                quality: [0x22; 32],
                proof: ProofOfSpace { proof: vec![7; 400], size: 50, ..proof() },
            },
            Body::RequestHeaderSignature { quality: [0x22; 32], header_hash: [0x33; 32] },
            Body::RespondHeaderSignature { quality: [0x22; 32], header_hash_signature: [0x44; 96] },
            Body::RequestPartialProof { quality: [0x22; 32], farmer_target_hash: [0x55; 32] },
            Body::RespondPartialProof { quality: [0x22; 32], farmer_target_signature: [0x66; 96] },
            Body::ChallengeDone {
                challenge_hash: [0x11; 32],
                responses: 70_000,
                disks: 300,
                disks_incomplete: 2,
                elapsed_us: u64::MAX - 1,
            },
            Body::Error { code: ErrorCode::UnknownQuality, message: String::new(), data: None },
            Body::Error {
                code: ErrorCode::Other(-300),
                message: "plot ünïcödé".into(),
                data: Some(vec![]),
            },
            Body::Error {
                code: ErrorCode::LookupFailed,
                message: "m".repeat(1024),
                data: Some(vec![9; 4096]),
            },
        ];
        let mut out = Vec::new();
        for (i, body) in bodies.into_iter().enumerate() {
            out.push(Message { id: None, body: body.clone() });
            out.push(Message { id: Some(i as u16 * 4099), body });
        }
        out
    }

    #[test]
    fn every_message_round_trips() {
        for m in every_message() {
            let bytes = m.to_frame();
            assert_eq!(bytes.len(), 4 + m.payload_bytes(), "{m:?}");
            assert_eq!(decode_frame(&bytes), Ok(m.clone()));
            assert_eq!(m.check(&limits()), Ok(()));
            // Every type appears in the list.
        }
        let mut kinds: Vec<u8> = every_message().iter().map(|m| m.body.message_type()).collect();
        kinds.dedup();
        assert_eq!(kinds, message_type::ALL.to_vec());
    }

    #[test]
    fn new_challenge_bytes_by_hand() {
        let m = Message { id: None, body: Body::NewChallenge { challenge_hash: [0x11; 32] } };
        // 6 header bytes (type, flag, data length) + 32 data bytes = 38 = 0x26.
        let mut expected = vec![0x00, 0x00, 0x00, 0x26, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x20];
        expected.extend_from_slice(&[0x11; 32]);
        assert_eq!(m.to_frame(), expected);
    }

    #[test]
    fn request_with_id_bytes_by_hand() {
        let m = Message {
            id: Some(0x0102),
            body: Body::RequestHeaderSignature { quality: [0xaa; 32], header_hash: [0xbb; 32] },
        };
        // 1 + 1 + 2 + 4 + 64 = 72 = 0x48.
        let mut expected = vec![0, 0, 0, 0x48, 204, 1, 0x01, 0x02, 0, 0, 0, 64];
        expected.extend_from_slice(&[0xaa; 32]);
        expected.extend_from_slice(&[0xbb; 32]);
        assert_eq!(m.to_frame(), expected);
    }

    #[test]
    fn error_and_handshake_bytes_by_hand() {
        let m = Message {
            id: Some(7),
            body: Body::Error {
                code: ErrorCode::UnknownQuality,
                message: "no".into(),
                data: Some(vec![0xff]),
            },
        };
        // data: code 2 + len 4 + "no" 2 + flag 1 + len 4 + 1 = 14; payload 8 + 14 = 22 = 0x16.
        let expected = [
            0, 0, 0, 0x16, 0xff, 1, 0, 7, 0, 0, 0, 14, 0x00, 0x02, 0, 0, 0, 2, b'n', b'o', 1, 0, 0,
            0, 1, 0xff,
        ];
        assert_eq!(m.to_frame(), expected);

        let m =
            Message { id: None, body: Body::HarvesterHandshake { pool_pubkeys: vec![[5; 48]] } };
        // data: count 4 + 48 = 52 = 0x34; payload 6 + 52 = 58 = 0x3a.
        let mut expected = vec![0, 0, 0, 0x3a, 3, 0, 0, 0, 0, 0x34, 0, 0, 0, 1];
        expected.extend_from_slice(&[5; 48]);
        assert_eq!(m.to_frame(), expected);
    }

    #[test]
    fn proof_of_space_bytes_by_hand() {
        let p = ProofOfSpace { proof: vec![0xee; 8], size: 1, ..proof() };
        let m = Message {
            id: Some(1),
            body: Body::RespondProofOfSpace { quality: [0x22; 32], proof: p },
        };
        let mut data = vec![0x22; 32];
        data.extend_from_slice(&[0xc1; 32]);
        data.extend_from_slice(&[0xa1; 48]);
        data.extend_from_slice(&[0xb2; 48]);
        data.push(1);
        data.extend_from_slice(&[0, 0, 0, 8]);
        data.extend_from_slice(&[0xee; 8]);
        assert_eq!(data.len(), 32 + 133 + 8);
        assert_eq!(m.to_frame(), frame(203, Some(1), &data));
    }

    #[test]
    fn unknown_message_type() {
        for kind in [0, 1, 2, 4, 5, 66, 199, 209, 254] {
            assert_eq!(
                decode_frame(&frame(kind, None, &[])),
                Err(CodecError::UnknownMessageType(kind))
            );
        }
    }

    #[test]
    fn bad_id_flag() {
        let mut bytes = frame(200, None, &[0x11; 32]);
        bytes[5] = 2;
        assert_eq!(decode_frame(&bytes), Err(CodecError::BadIdFlag(2)));
        bytes[5] = 0xff;
        assert_eq!(decode_frame(&bytes), Err(CodecError::BadIdFlag(0xff)));
    }

    #[test]
    fn truncated_header() {
        let l = limits();
        assert_eq!(decode_message(&[], &l), Err(CodecError::Truncated { what: "message type" }));
        assert_eq!(
            decode_message(&[200], &l),
            Err(CodecError::Truncated { what: "message id flag" })
        );
        assert_eq!(
            decode_message(&[202, 1, 0], &l),
            Err(CodecError::Truncated { what: "message id" })
        );
        assert_eq!(
            decode_message(&[200, 0, 0, 0], &l),
            Err(CodecError::Truncated { what: "message data length" })
        );
    }

    #[test]
    fn length_mismatch() {
        let mut bytes = frame(200, None, &[0x11; 32]);
        bytes[9] = 33; // data length says 33, 32 follow
        assert_eq!(
            decode_frame(&bytes),
            Err(CodecError::LengthMismatch { declared: 33, actual: 32 })
        );
        bytes[9] = 31;
        assert_eq!(
            decode_frame(&bytes),
            Err(CodecError::LengthMismatch { declared: 31, actual: 32 })
        );
    }

    #[test]
    fn body_too_short_or_too_long() {
        let cases: [(u8, usize, &str); 9] = [
            (200, 32, "NewChallenge.challenge_hash"),
            (201, 65, "ChallengeResponse.plot_size"),
            (202, 32, "RequestProofOfSpace.quality"),
            (204, 64, "RequestHeaderSignature.header_hash"),
            (205, 128, "RespondHeaderSignature.header_hash_signature"),
            (206, 64, "RequestPartialProof.farmer_target_hash"),
            (207, 128, "RespondPartialProof.farmer_target_signature"),
            (3, 4, "HarvesterHandshake.pool_pubkeys"),
            (255, 2, "Error.code"),
        ];
        for (kind, len, what) in cases {
            let mut data = vec![0; len];
            if kind == 255 {
                data = vec![0, 1, 0, 0, 0, 0, 0]; // code 1, empty message, no data
            }
            assert!(decode_frame(&frame(kind, Some(1), &data)).is_ok(), "type {kind}");
            assert_eq!(
                decode_frame(&frame(kind, Some(1), &data[..data.len() - 1])),
                Err(CodecError::Truncated {
                    what: if kind == 255 { "Error.data flag" } else { what }
                }),
                "type {kind}"
            );
            data.push(0);
            let Err(CodecError::TrailingBytes { what }) = decode_frame(&frame(kind, None, &data))
            else {
                panic!("type {kind}: trailing byte accepted");
            };
            assert!(what.ends_with(" body"), "{what}");
        }
        // Too short at the first field.
        assert_eq!(
            decode_frame(&frame(203, None, &[0; 31])),
            Err(CodecError::Truncated { what: "RespondProofOfSpace.quality" })
        );
        assert_eq!(
            decode_frame(&frame(203, None, &[0; 32 + 129])),
            Err(CodecError::Truncated { what: "ProofOfSpace.proof" })
        );
        let mut data = vec![0; 32 + 129];
        data.extend_from_slice(&[0, 0, 0, 9, 1, 2, 3]);
        assert_eq!(
            decode_frame(&frame(203, None, &data)),
            Err(CodecError::Truncated { what: "ProofOfSpace.proof" })
        );
        // A handshake count promising more keys than the frame holds: no allocation, an error.
        let data = [0, 0, 3, 0xff, 1, 2, 3];
        assert_eq!(
            decode_frame(&frame(3, None, &data)),
            Err(CodecError::Truncated { what: "HarvesterHandshake.pool_pubkeys" })
        );
    }

    #[test]
    fn too_many() {
        let mut data = 1025u32.to_be_bytes().to_vec();
        data.extend(std::iter::repeat_n(0u8, 48 * 1025));
        assert_eq!(
            decode_frame(&frame(3, None, &data)),
            Err(CodecError::TooMany {
                what: "HarvesterHandshake.pool_pubkeys",
                count: 1025,
                max: 1024
            })
        );
        let mut data = vec![0; 32 + 129];
        data.extend_from_slice(&401u32.to_be_bytes());
        data.extend_from_slice(&[0; 401]);
        assert_eq!(
            decode_frame(&frame(203, None, &data)),
            Err(CodecError::TooMany { what: "ProofOfSpace.proof", count: 401, max: 400 })
        );
        let mut data = vec![0, 1];
        data.extend_from_slice(&1025u32.to_be_bytes());
        data.extend_from_slice(&[b'x'; 1025]);
        data.push(0);
        assert_eq!(
            decode_frame(&frame(255, None, &data)),
            Err(CodecError::TooMany { what: "Error.message", count: 1025, max: 1024 })
        );
        let mut data = vec![0, 1, 0, 0, 0, 0, 1];
        data.extend_from_slice(&4097u32.to_be_bytes());
        data.extend_from_slice(&[0; 4097]);
        assert_eq!(
            decode_frame(&frame(255, None, &data)),
            Err(CodecError::TooMany { what: "Error.data", count: 4097, max: 4096 })
        );
        // A small pool_keys_max is enforced too.
        let small = Limits { pool_keys_max: 2, ..limits() };
        let m =
            Message { id: None, body: Body::HarvesterHandshake { pool_pubkeys: vec![[0; 48]; 3] } };
        assert_eq!(
            decode_message(&m.to_frame()[4..], &small),
            Err(CodecError::TooMany { what: "HarvesterHandshake.pool_pubkeys", count: 3, max: 2 })
        );
    }

    #[test]
    fn bad_option_flag_and_utf8() {
        let data = [0, 1, 0, 0, 0, 0, 2];
        assert_eq!(decode_frame(&frame(255, None, &data)), Err(CodecError::BadOptionFlag(2)));
        let data = [0, 1, 0, 0, 0, 2, 0xc3, 0x28, 0];
        assert_eq!(decode_frame(&frame(255, None, &data)), Err(CodecError::BadUtf8));
        let data = [0, 1, 0, 0, 0, 1, 0x80, 0];
        assert_eq!(decode_frame(&frame(255, None, &data)), Err(CodecError::BadUtf8));
    }

    #[test]
    fn error_texts_name_the_reason() {
        assert_eq!(
            CodecError::FrameTooLarge { len: 2_000_000, max: 1 << 20 }.to_string(),
            "frame of 2000000 bytes exceeds the limit of 1048576 bytes"
        );
        assert_eq!(
            CodecError::Truncated { what: "NewChallenge.challenge_hash" }.to_string(),
            "truncated: the bytes end inside NewChallenge.challenge_hash"
        );
        assert_eq!(
            CodecError::TooMany { what: "ProofOfSpace.proof", count: 500, max: 400 }.to_string(),
            "ProofOfSpace.proof: 500 exceeds the limit of 400"
        );
    }

    fn stream() -> (Vec<u8>, Vec<Message>) {
        let messages: Vec<Message> = (0..5).flat_map(|_| every_message()).collect();
        let mut bytes = Vec::new();
        for m in &messages {
            m.encode(&mut bytes);
        }
        (bytes, messages)
    }

    /// Runs the documented caller loop over `chunks`; checks the buffer bound on the way.
    fn run(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> Result<Vec<Message>, CodecError> {
        let bound = dec.limits().frame_bytes_max as usize + 4;
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let used = dec.feed(rest);
                rest = &rest[used..];
                assert!(dec.buffered_bytes() <= bound);
                while let Some(m) = dec.next_message()? {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn stream_one_byte_at_a_time() {
        let (bytes, messages) = stream();
        let mut dec = FrameDecoder::new(limits());
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&mut dec, &chunks), Ok(messages));
        assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn stream_in_random_chunks() {
        let (bytes, messages) = stream();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..50 {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = 1 + (seed % [7, 100, 5000, 100_000][round % 4]) as usize;
                let end = (at + len).min(bytes.len());
                chunks.push(&bytes[at..end]);
                at = end;
            }
            let mut dec = FrameDecoder::new(limits());
            assert_eq!(run(&mut dec, &chunks).as_ref(), Ok(&messages), "round {round}");
            assert_eq!(dec.buffered_bytes(), 0);
        }
    }

    #[test]
    fn feed_stops_at_the_frame_end() {
        let a = Message { id: None, body: Body::NewChallenge { challenge_hash: [1; 32] } };
        let b = Message { id: Some(3), body: Body::RequestProofOfSpace { quality: [2; 32] } };
        let mut bytes = a.to_frame();
        let a_len = bytes.len();
        b.encode(&mut bytes);
        let mut dec = FrameDecoder::new(limits());
        assert_eq!(dec.feed(&bytes), a_len);
        assert_eq!(dec.feed(&bytes[a_len..]), 0, "nothing taken while a frame waits");
        assert_eq!(dec.buffered_bytes(), a_len);
        assert_eq!(dec.next_message(), Ok(Some(a)));
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.feed(&bytes[a_len..]), bytes.len() - a_len);
        assert_eq!(dec.next_message(), Ok(Some(b)));
        assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn oversized_prefix_rejected_after_four_bytes() {
        let small = Limits { frame_bytes_max: 100, ..limits() };
        let mut dec = FrameDecoder::new(small);
        let mut bytes = 101u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 200]);
        assert_eq!(dec.feed(&bytes[..3]), 3);
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.feed(&bytes[3..]), 1, "only the prefix is taken");
        assert_eq!(dec.buffered_bytes(), 4);
        let e = CodecError::FrameTooLarge { len: 101, max: 100 };
        assert_eq!(dec.next_message(), Err(e.clone()));
        assert_eq!(dec.feed(&bytes[4..]), 0, "nothing after an error");
        assert_eq!(dec.next_message(), Err(e.clone()), "errors are final");
        assert_eq!(dec.error(), Some(&e));

        let mut dec = FrameDecoder::new(limits());
        assert_eq!(dec.feed(&[0xff, 0xff, 0xff, 0xff, 0]), 4);
        assert_eq!(
            dec.next_message(),
            Err(CodecError::FrameTooLarge { len: u32::MAX, max: 1 << 20 })
        );
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_accepted() {
        let m = Message {
            id: None,
            body: Body::Error { code: ErrorCode::Internal, message: "x".repeat(90), data: None },
        };
        let bytes = m.to_frame();
        let limit = (bytes.len() - 4) as u32;
        let mut dec = FrameDecoder::new(Limits { frame_bytes_max: limit, ..limits() });
        assert_eq!(run(&mut dec, &[&bytes]), Ok(vec![m.clone()]));
        let mut dec = FrameDecoder::new(Limits { frame_bytes_max: limit - 1, ..limits() });
        assert_eq!(
            run(&mut dec, &[&bytes]),
            Err(CodecError::FrameTooLarge { len: limit, max: limit - 1 })
        );
    }

    #[test]
    fn decode_error_is_final_in_the_stream() {
        let mut bytes = frame(99, None, &[]);
        Message { id: None, body: Body::NewChallenge { challenge_hash: [0; 32] } }
            .encode(&mut bytes);
        let mut dec = FrameDecoder::new(limits());
        assert_eq!(run(&mut dec, &[&bytes]), Err(CodecError::UnknownMessageType(99)));
        assert_eq!(dec.feed(&bytes[11..]), 0);
        assert_eq!(dec.next_message(), Err(CodecError::UnknownMessageType(99)));
        // An empty frame (prefix 0) is a truncated message, not a hang.
        let mut dec = FrameDecoder::new(limits());
        assert_eq!(
            run(&mut dec, &[&[0, 0, 0, 0]]),
            Err(CodecError::Truncated { what: "message type" })
        );
    }
}
