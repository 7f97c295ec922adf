//! The messages of chia's farmer <-> harvester protocol (chia-blockchain 2.7.5,
//! `chia/protocols/harvester_protocol.py`, `farmer_protocol.py`, `shared_protocol.py`), as
//! plain data with their streamable encoding.
//!
//! Every WebSocket binary frame holds one [`Frame`]: a message type, an optional request id and
//! the message's own bytes. A request that carries an id is answered with the same id.

use crate::chia::streamable::{from_bytes, to_bytes, ParseError, Streamable};
use crate::streamable_struct;

/// A BLS12-381 G1 point (public key), compressed.
pub type G1 = [u8; 48];
/// A BLS12-381 G2 point (signature), compressed.
pub type G2 = [u8; 96];
/// 32 bytes: hashes, puzzle hashes, plot ids.
pub type B32 = [u8; 32];

/// The protocol version a 2.7.5 harvester announces: farmers send `NewSignagePointHarvester2`
/// to peers at 0.0.38 or later.
pub const PROTOCOL_VERSION: &str = "0.0.38";
/// Node types of the handshake.
pub const NODE_TYPE_HARVESTER: u8 = 2;
/// The farmer's node type.
pub const NODE_TYPE_FARMER: u8 = 3;
/// The capabilities chia's harvester announces: base, block headers, rate limits v2. (Rate
/// limits v3, capability 7, would require a window-size exchange after the handshake.)
pub const HARVESTER_CAPABILITIES: [(u16, &str); 3] = [(1, "1"), (2, "1"), (3, "1")];
/// chia's `software_version` field is at most 128 bytes.
pub const SOFTWARE_VERSION_BYTES_MAX: usize = 128;

/// Message type numbers (`protocol_message_types.py`).
pub mod msg {
    /// Both sides, first message.
    pub const HANDSHAKE: u8 = 1;
    /// Farmer -> harvester: the farmer's and pools' public keys.
    pub const HARVESTER_HANDSHAKE: u8 = 3;
    /// Harvester -> farmer: an eligible proof.
    pub const NEW_PROOF_OF_SPACE: u8 = 5;
    /// Farmer -> harvester: sign these messages with a plot's local key.
    pub const REQUEST_SIGNATURES: u8 = 6;
    /// Harvester -> farmer.
    pub const RESPOND_SIGNATURES: u8 = 7;
    /// Harvester -> farmer: summary of one signage point.
    pub const FARMING_INFO: u8 = 12;
    /// Farmer -> harvester: a signage point (v1 or v2 body, by protocol version).
    pub const NEW_SIGNAGE_POINT_HARVESTER: u8 = 66;
    /// Farmer -> harvester.
    pub const REQUEST_PLOTS: u8 = 67;
    /// Harvester -> farmer, for peers before 0.0.38.
    pub const RESPOND_PLOTS: u8 = 68;
    /// Plot sync, harvester -> farmer, each answered by `PLOT_SYNC_RESPONSE`.
    pub const PLOT_SYNC_START: u8 = 78;
    /// Loaded plots as `Plot` (peers before 0.0.38).
    pub const PLOT_SYNC_LOADED: u8 = 79;
    /// Removed paths.
    pub const PLOT_SYNC_REMOVED: u8 = 80;
    /// Paths that failed to open.
    pub const PLOT_SYNC_INVALID: u8 = 81;
    /// Paths whose keys the farmer does not have.
    pub const PLOT_SYNC_KEYS_MISSING: u8 = 82;
    /// Paths of duplicate plots.
    pub const PLOT_SYNC_DUPLICATES: u8 = 83;
    /// End of one sync.
    pub const PLOT_SYNC_DONE: u8 = 84;
    /// Farmer -> harvester.
    pub const PLOT_SYNC_RESPONSE: u8 = 85;
    /// v2 partial proofs (inactive in 2.7.5; never sent by us).
    pub const PARTIAL_PROOFS: u8 = 110;
    /// Rate limits v3 window sizes (only with capability 7, which we do not announce).
    pub const CONFIGURE_WINDOW_SIZES: u8 = 111;
    /// Loaded plots as `Plot2` (peers at 0.0.38 or later).
    pub const PLOT_SYNC_LOADED2: u8 = 112;
    /// Harvester -> farmer, for peers at 0.0.38 or later.
    pub const RESPOND_PLOTS2: u8 = 113;
    /// Farmer -> harvester: v2 proof solutions (inactive in 2.7.5).
    pub const SOLUTION_RESPONSE: u8 = 108;
    /// Either side: an error report.
    pub const ERROR: u8 = 255;
}

streamable_struct! {
    /// One WebSocket frame's content (`outbound_message.Message`).
    pub struct Frame {
        pub msg_type: u8,
        pub id: Option<u16>,
        pub data: Vec<u8>,
    }
}

impl Frame {
    /// A frame carrying `body` as message `msg_type`.
    pub fn new<T: Streamable>(msg_type: u8, id: Option<u16>, body: &T) -> Frame {
        Frame { msg_type, id, data: to_bytes(body) }
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        to_bytes(self)
    }

    /// Decodes a frame (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<Frame, ParseError> {
        from_bytes(bytes)
    }

    /// Decodes the body as `T` (trailing bytes are an error).
    pub fn body<T: Streamable>(&self) -> Result<T, ParseError> {
        from_bytes(&self.data)
    }
}

streamable_struct! {
    /// `shared_protocol.Handshake`.
    pub struct Handshake {
        pub network_id: String,
        pub protocol_version: String,
        pub software_version: String,
        pub server_port: u16,
        pub node_type: u8,
        pub capabilities: Vec<(u16, String)>,
    }
}

impl Handshake {
    /// The handshake a harvester sends on `network_id`.
    pub fn harvester(network_id: &str, software_version: &str) -> Handshake {
        let mut software_version = software_version.to_string();
        while software_version.len() > SOFTWARE_VERSION_BYTES_MAX {
            software_version.pop();
        }
        Handshake {
            network_id: network_id.to_string(),
            protocol_version: PROTOCOL_VERSION.to_string(),
            software_version,
            server_port: 0,
            node_type: NODE_TYPE_HARVESTER,
            capabilities: HARVESTER_CAPABILITIES.iter().map(|(c, v)| (*c, v.to_string())).collect(),
        }
    }

    /// The peer's protocol version as (major, minor, patch); `None` if it is not three numbers.
    pub fn version(&self) -> Option<(u32, u32, u32)> {
        let mut parts = self.protocol_version.split('.').map(|p| p.parse::<u32>().ok());
        let v = (parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }
}

streamable_struct! {
    /// `error.Error` body of message 255.
    pub struct ErrorBody {
        pub code: i16,
        pub message: String,
        pub data: Option<Vec<u8>>,
    }
}

streamable_struct! {
    /// Farmer -> harvester: which plots to farm.
    pub struct HarvesterHandshake {
        pub farmer_public_keys: Vec<G1>,
        pub pool_public_keys: Vec<G1>,
    }
}

streamable_struct! {
    /// A pool's difficulty for its pool-contract plots (pool partials).
    pub struct PoolDifficulty {
        pub difficulty: u64,
        pub sub_slot_iters: u64,
        pub pool_contract_puzzle_hash: B32,
    }
}

streamable_struct! {
    /// The v1 signage point, sent to peers before 0.0.37: the farmer computed the filter bits.
    pub struct NewSignagePointHarvester {
        pub challenge_hash: B32,
        pub difficulty: u64,
        pub sub_slot_iters: u64,
        pub signage_point_index: u8,
        pub sp_hash: B32,
        pub pool_difficulties: Vec<PoolDifficulty>,
        pub filter_prefix_bits: u8,
    }
}

streamable_struct! {
    /// The signage point sent to peers at 0.0.38 or later: the harvester computes the filter
    /// bits from `peak_height`.
    pub struct NewSignagePointHarvester2 {
        pub challenge_hash: B32,
        pub difficulty: u64,
        pub sub_slot_iters: u64,
        pub signage_point_index: u8,
        pub sp_hash: B32,
        pub pool_difficulties: Vec<PoolDifficulty>,
        pub peak_height: u32,
        pub last_tx_height: u32,
        pub filter_challenge: Option<B32>,
    }
}

/// A v1 proof of space (`chia_rs.ProofOfSpace` with version 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOfSpace {
    /// The pos challenge (`calculate_pos_challenge`).
    pub challenge: B32,
    pub pool_public_key: Option<G1>,
    pub pool_contract_puzzle_hash: Option<B32>,
    pub plot_public_key: G1,
    /// k.
    pub size: u8,
    /// The 64 x-values, k bits each.
    pub proof: Vec<u8>,
}

impl Streamable for ProofOfSpace {
    fn stream(&self, out: &mut Vec<u8>) {
        self.challenge.stream(out);
        self.pool_public_key.stream(out);
        // The flag byte of the puzzle hash also carries the version (bits 1..): 0 for v1.
        self.pool_contract_puzzle_hash.stream(out);
        self.plot_public_key.stream(out);
        self.size.stream(out);
        self.proof.stream(out);
    }

    fn parse(r: &mut crate::chia::streamable::Reader<'_>) -> Result<Self, ParseError> {
        let challenge = B32::parse(r)?;
        let pool_public_key = Option::<G1>::parse(r)?;
        let pool_contract_puzzle_hash = match r.take(1)?[0] {
            0 => None,
            1 => Some(B32::parse(r)?),
            _ => return Err(ParseError::Invalid("only v1 proofs of space are supported")),
        };
        let plot_public_key = G1::parse(r)?;
        let size = u8::parse(r)?;
        let proof = Vec::<u8>::parse(r)?;
        Ok(ProofOfSpace {
            challenge,
            pool_public_key,
            pool_contract_puzzle_hash,
            plot_public_key,
            size,
            proof,
        })
    }
}

streamable_struct! {
    /// Fee information of a third-party harvester (never sent by us).
    pub struct ProofOfSpaceFeeInfo {
        pub applied_fee_threshold: u32,
    }
}

streamable_struct! {
    /// Harvester -> farmer: a proof whose required iterations pass.
    pub struct NewProofOfSpace {
        pub challenge_hash: B32,
        pub sp_hash: B32,
        /// The quality in hex followed by the plot's absolute path.
        pub plot_identifier: String,
        pub proof: ProofOfSpace,
        pub signage_point_index: u8,
        pub include_source_signature_data: bool,
        pub farmer_reward_address_override: Option<B32>,
        pub fee_info: Option<ProofOfSpaceFeeInfo>,
    }
}

streamable_struct! {
    /// The data behind a message to sign, sent only to third-party harvesters (CHIP-22).
    pub struct SignatureRequestSourceData {
        pub kind: u8,
        pub data: Vec<u8>,
    }
}

streamable_struct! {
    /// Farmer -> harvester: sign `messages` for the plot of `plot_identifier`.
    ///
    /// `rc_block_unfinished` (a `RewardChainBlockUnfinished`, sent only to harvesters that ask
    /// for source data) is kept as the raw bytes of its `Optional`: we never ask for it, and
    /// we do not need to understand it.
    pub struct RequestSignatures {
        pub plot_identifier: String,
        pub challenge_hash: B32,
        pub sp_hash: B32,
        pub messages: Vec<B32>,
        pub message_data: Option<Vec<Option<SignatureRequestSourceData>>>,
        pub rc_block_unfinished: RawRest,
    }
}

/// Whatever bytes are left in a message: a field we pass over without decoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRest(pub Vec<u8>);

impl Streamable for RawRest {
    fn stream(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn parse(r: &mut crate::chia::streamable::Reader<'_>) -> Result<Self, ParseError> {
        let n = r.remaining();
        Ok(RawRest(r.take(n)?.to_vec()))
    }
}

streamable_struct! {
    /// Harvester -> farmer: the local key's share of each signature.
    pub struct RespondSignatures {
        pub plot_identifier: String,
        pub challenge_hash: B32,
        pub sp_hash: B32,
        pub local_pk: G1,
        pub farmer_pk: G1,
        pub message_signatures: Vec<(B32, G2)>,
        pub include_source_signature_data: bool,
        pub farmer_reward_address_override: Option<B32>,
    }
}

streamable_struct! {
    /// Harvester -> farmer after each signage point (`farmer_protocol.FarmingInfo`).
    pub struct FarmingInfo {
        pub challenge_hash: B32,
        pub sp_hash: B32,
        /// Unix seconds.
        pub timestamp: u64,
        /// Plots that passed the plot filter.
        pub passed: u32,
        /// Proofs sent for this signage point.
        pub proofs: u32,
        /// Plots farmed.
        pub total_plots: u32,
        /// Microseconds from the signage point's arrival to the last answer.
        pub lookup_time: u64,
    }
}

streamable_struct! {
    /// One plot as the farmer lists it (peers before 0.0.38).
    pub struct Plot {
        pub filename: String,
        pub size: u8,
        pub plot_id: B32,
        pub pool_public_key: Option<G1>,
        pub pool_contract_puzzle_hash: Option<B32>,
        pub plot_public_key: G1,
        pub file_size: u64,
        pub time_modified: u64,
        pub compression_level: Option<u8>,
    }
}

streamable_struct! {
    /// One plot as the farmer lists it (0.0.38 or later). `size` is k for v1 plots.
    pub struct Plot2 {
        pub filename: String,
        pub size: u8,
        pub plot_id: B32,
        pub pool_public_key: Option<G1>,
        pub pool_contract_puzzle_hash: Option<B32>,
        pub plot_public_key: G1,
        pub file_size: u64,
        pub time_modified: u64,
        pub compression_level: Option<u8>,
        pub plot_index: u16,
        pub meta_group: u8,
    }
}

impl Plot2 {
    /// The same plot in the older `Plot` form.
    pub fn to_v1(&self) -> Plot {
        Plot {
            filename: self.filename.clone(),
            size: self.size,
            plot_id: self.plot_id,
            pool_public_key: self.pool_public_key,
            pool_contract_puzzle_hash: self.pool_contract_puzzle_hash,
            plot_public_key: self.plot_public_key,
            file_size: self.file_size,
            time_modified: self.time_modified,
            compression_level: self.compression_level,
        }
    }
}

streamable_struct! {
    /// `RequestPlots` has no fields.
    pub struct RequestPlots {}
}

streamable_struct! {
    /// Answer to `RequestPlots` for peers before 0.0.38.
    pub struct RespondPlots {
        pub plots: Vec<Plot>,
        pub failed_to_open_filenames: Vec<String>,
        pub no_key_filenames: Vec<String>,
    }
}

streamable_struct! {
    /// Answer to `RequestPlots` for peers at 0.0.38 or later.
    pub struct RespondPlots2 {
        pub plots: Vec<Plot2>,
        pub failed_to_open_filenames: Vec<String>,
        pub no_key_filenames: Vec<String>,
    }
}

streamable_struct! {
    /// Names one plot-sync message: the sync it belongs to and its place in it.
    pub struct PlotSyncIdentifier {
        /// Unix seconds when the message was made.
        pub timestamp: u64,
        pub sync_id: u64,
        pub message_id: u64,
    }
}

streamable_struct! {
    /// The first message of a sync.
    pub struct PlotSyncStart {
        pub identifier: PlotSyncIdentifier,
        /// A full sync (the farmer forgets what it had) rather than a delta.
        pub initial: bool,
        pub last_sync_id: u64,
        pub plot_file_count: u32,
        /// 1: CPU harvesting.
        pub harvesting_mode: u8,
    }
}

streamable_struct! {
    /// A batch of paths (removed, invalid, keys missing, duplicates).
    pub struct PlotSyncPathList {
        pub identifier: PlotSyncIdentifier,
        pub data: Vec<String>,
        pub final_: bool,
    }
}

streamable_struct! {
    /// A batch of loaded plots, `Plot` form.
    pub struct PlotSyncPlotList {
        pub identifier: PlotSyncIdentifier,
        pub data: Vec<Plot>,
        pub final_: bool,
    }
}

streamable_struct! {
    /// A batch of loaded plots, `Plot2` form.
    pub struct PlotSyncPlotList2 {
        pub identifier: PlotSyncIdentifier,
        pub data: Vec<Plot2>,
        pub final_: bool,
    }
}

streamable_struct! {
    /// The last message of a sync.
    pub struct PlotSyncDone {
        pub identifier: PlotSyncIdentifier,
        /// Seconds the refresh took.
        pub duration: u64,
    }
}

streamable_struct! {
    /// Why the farmer refused a plot-sync message.
    pub struct PlotSyncError {
        pub code: i16,
        pub message: String,
        /// Set when the farmer can resume from this message.
        pub expected_identifier: Option<PlotSyncIdentifier>,
    }
}

streamable_struct! {
    /// The farmer's answer to each plot-sync message.
    pub struct PlotSyncResponse {
        pub identifier: PlotSyncIdentifier,
        pub message_type: i16,
        pub error: Option<PlotSyncError>,
    }
}

/// `plot_identifier` as chia's harvester writes it: the quality in hex, then the path.
pub fn plot_identifier(quality: &B32, path: &str) -> String {
    let mut s = String::with_capacity(64 + path.len());
    for b in quality {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(path);
    s
}

/// Splits a `plot_identifier` into quality and path; `None` if it does not start with 64 hex
/// digits.
pub fn split_plot_identifier(identifier: &str) -> Option<(B32, &str)> {
    let hex = identifier.get(..64)?;
    let mut quality = [0u8; 32];
    for (i, q) in quality.iter_mut().enumerate() {
        *q = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((quality, &identifier[64..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let f = Frame { msg_type: 85, id: Some(0x8001), data: vec![9, 8] };
        assert_eq!(f.encode(), [85, 1, 0x80, 1, 0, 0, 0, 2, 9, 8]);
        assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        let g = Frame { msg_type: 5, id: None, data: vec![] };
        assert_eq!(g.encode(), [5, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn handshake_round_trips_and_versions() {
        let h = Handshake::harvester("mainnet", &"x".repeat(300));
        assert_eq!(h.software_version.len(), SOFTWARE_VERSION_BYTES_MAX);
        let back: Handshake = from_bytes(&to_bytes(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.version(), Some((0, 0, 38)));
        let odd = Handshake { protocol_version: "0.0".into(), ..h };
        assert_eq!(odd.version(), None);
    }

    #[test]
    fn proof_of_space_v1_round_trips_and_v2_is_refused() {
        let p = ProofOfSpace {
            challenge: [1; 32],
            pool_public_key: None,
            pool_contract_puzzle_hash: Some([2; 32]),
            plot_public_key: [3; 48],
            size: 18,
            proof: vec![7; 144],
        };
        let b = to_bytes(&p);
        assert_eq!(from_bytes::<ProofOfSpace>(&b).unwrap(), p);
        let mut v2 = b.clone();
        v2[33] = 0b11;
        assert!(matches!(from_bytes::<ProofOfSpace>(&v2), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn plot_identifiers() {
        let q = [0xab; 32];
        let id = plot_identifier(&q, "/plots/a.plot");
        assert_eq!(id.len(), 64 + 13);
        assert_eq!(split_plot_identifier(&id), Some((q, "/plots/a.plot")));
        assert_eq!(split_plot_identifier("zz"), None);
        assert_eq!(split_plot_identifier(&"g".repeat(70)), None);
    }

    #[test]
    fn request_signatures_keeps_the_unfinished_block_raw() {
        let r = RequestSignatures {
            plot_identifier: "p".into(),
            challenge_hash: [1; 32],
            sp_hash: [2; 32],
            messages: vec![[3; 32], [4; 32]],
            message_data: None,
            rc_block_unfinished: RawRest(vec![0]),
        };
        assert_eq!(from_bytes::<RequestSignatures>(&to_bytes(&r)).unwrap(), r);
    }
}
