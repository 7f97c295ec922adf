//! The farmer <-> harvester protocol: message types, framing and the session state machine.
//!
//! Sans-IO: nothing here touches a socket or a clock. The caller owns the connection:
//!
//! ```text
//!  bytes from the farmer ──► FrameDecoder::feed / next_message ──► Message
//!  Message, now ──► HarvesterSession::on_message ──► Input
//!  the daemon acts on the Input (lookups, signing)
//!      ──► HarvesterSession::on_quality / on_challenge_done / expire
//!  Message::encode ──► bytes to the farmer
//! ```
//!
//! - [`Message`], [`Body`], [`ErrorCode`]: the messages as plain data and their encoding.
//! - [`FrameDecoder`], [`decode_message`]: decoding, with every count and length limited
//!   ([`Limits`], [`PROOF_BYTES_MAX`], [`ERROR_MESSAGE_BYTES_MAX`], [`ERROR_DATA_BYTES_MAX`]).
//! - [`HarvesterSession`]: readiness, challenges in flight, the bounded quality map.
//! - [`RequestIds`]: request nonces for a farmer.
//!
//! The wire format, byte by byte: `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod chia;
mod codec;
mod message;
mod request_ids;
mod session;

pub use codec::{decode_message, CodecError, FrameDecoder, Limits};
pub use message::{
    message_type, Body, Bytes32, ErrorCode, Message, ProofOfSpace, ERROR_DATA_BYTES_MAX,
    ERROR_MESSAGE_BYTES_MAX, FRAME_PREFIX_BYTES, G1, G2, PROOF_BYTES_MAX,
};
pub use request_ids::RequestIds;
pub use session::{HarvesterSession, Input, SessionLimits, SignKind};
