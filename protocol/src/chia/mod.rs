//! chia-blockchain 2.x's farmer <-> harvester protocol, as a harvester speaks it (sans-IO).
//!
//! - [`streamable`]: chia's "streamable" binary encoding (big-endian integers, `Optional` as a
//!   flag byte, lists and byte strings with a u32 length), with every length checked against
//!   the bytes that hold it.
//! - [`messages`]: the envelope (`Message{type, id, data}`), the handshake and every message of
//!   the harvester's side, as plain data.
//! - [`consensus`]: the formulas of chia's consensus the harvester applies (plot filter, pos
//!   challenge, required iterations), with chia's constants and their per-network overrides.
//! - [`plot_sync`]: the plot-sync sender (start, loaded, removed, invalid, keys missing,
//!   duplicates, done; each message waits for the farmer's response).
//! - [`rate`]: chia's per-minute limits for the messages a harvester sends, as a budget the
//!   sender consults before sending.
//!
//! What the definitions match: chia-blockchain 2.7.5 (`docs/chia.md`).

pub mod consensus;
pub mod messages;
pub mod plot_sync;
pub mod rate;
pub mod streamable;
