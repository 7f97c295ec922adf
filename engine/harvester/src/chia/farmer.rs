//! One connection to a chia farmer: the handshake, plot sync, signage points through the
//! shards, proofs (verified before they leave), signatures, and the farmer's plot listing.
//!
//! Nothing here waits on a disk: lookups are jobs for the shards, whose events come back on
//! this connection's own queue; signatures run on the blocking pool. Everything this side
//! sends stays inside chia's per-minute limits ([`RateBudget`]); what does not fit waits in a
//! bounded backlog.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use plot_format::verify::validate_proof;
use protocol::chia::consensus::{
    calculate_iterations_quality, calculate_pos_challenge, calculate_prefix_bits,
    calculate_sp_interval_iters, is_v1_phased_out, passes_plot_filter, ConsensusConstants,
};
use protocol::chia::messages::{
    msg, split_plot_identifier, FarmingInfo, Frame, Handshake, HarvesterHandshake, NewProofOfSpace,
    NewSignagePointHarvester, NewSignagePointHarvester2, Plot2, PlotSyncResponse, PoolDifficulty,
    ProofOfSpace, RequestSignatures, RespondPlots, RespondPlots2, RespondSignatures, B32, G1,
    NODE_TYPE_FARMER,
};
use protocol::chia::plot_sync::{Inventory, PlotSyncSender, Progress};
use protocol::chia::rate::{RateBudget, Refusal};
use protocol::chia::streamable::ParseError;
use shard::{JobStatus, PlotKey};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::chia::root::ChiaRoot;
use crate::config::seconds;
use crate::connection::Shared;
use crate::engine::{EngineEvent, Registry};
use crate::plots::{PlotInfo, PlotState, PoolKey, Signer};

/// Frames waiting for the writer.
const FRAMES_QUEUED_MAX: usize = 4096;
/// Messages waiting for room under chia's rate limits.
const BACKLOG_MAX: usize = 1024;
/// Signage points being answered at once; more are dropped with a warning (chia sends 64 per
/// 10-minute sub-slot, so this is only reached if disks hang).
const SIGNAGE_POINTS_IN_FLIGHT_MAX: usize = 256;
/// A message that waited this long for chia's rate limits is dropped: a proof is useless once
/// its block's infusion point has passed (3 signage-point intervals of 9.375 s).
const BACKLOG_AGE_MAX: Duration = Duration::from_secs(28);
/// How often plot sync, the backlog and deadlines are looked at.
const TICK: Duration = Duration::from_millis(100);
/// The farmer must answer our handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A signage point not finished this long after both deadlines is answered as it stands.
const SIGNAGE_POINT_GRACE: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ChiaEnd {
    #[error("the farmer closed the connection")]
    Closed,
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error("protocol violation: {0}")]
    Violation(String),
    #[error("write failed or timed out: {0}")]
    Write(String),
    #[error("shutting down")]
    Shutdown,
}

/// The farmer's keys from `harvester_handshake`.
#[derive(Debug, Default)]
struct FarmerKeys {
    farmer: HashSet<G1>,
    pool: HashSet<G1>,
}

/// Whether and how a served plot can be farmed for this farmer.
enum Farmable {
    Yes,
    /// Keys the farmer does not have.
    KeysMissing,
    /// Not farmable by a chia farmer, whatever its keys (the reason).
    Invalid(String),
}

fn farmable(info: &PlotInfo, keys: &FarmerKeys, root: &ChiaRoot) -> Farmable {
    let c = &root.constants;
    if info.k < c.min_plot_size_v1 || info.k > c.max_plot_size_v1 {
        return Farmable::Invalid(format!(
            "k={} is outside the network's plot sizes {}..={}",
            info.k, c.min_plot_size_v1, c.max_plot_size_v1
        ));
    }
    let Signer::Memo(plot_keys) = &info.signer else {
        return Farmable::Invalid("a keys-file plot (no farmer key in its memo)".into());
    };
    if !keys.farmer.contains(plot_keys.farmer_public_key()) {
        return Farmable::KeysMissing;
    }
    match &info.pool {
        PoolKey::PublicKey(pk) if !keys.pool.contains(pk) => Farmable::KeysMissing,
        _ => Farmable::Yes,
    }
}

/// One signage point being answered.
struct SignagePoint {
    challenge_hash: B32,
    sp_hash: B32,
    index: u8,
    difficulty: u64,
    sub_slot_iters: u64,
    pool_difficulties: Vec<PoolDifficulty>,
    last_tx_height: u32,
    started: Instant,
    deadline: Instant,
    /// Lookup jobs not done.
    jobs_left: usize,
    /// Proof jobs not answered.
    proofs_left: usize,
    passed: u32,
    total: u32,
    proofs_sent: u32,
    /// The pos challenge of each plot looked up.
    challenges: HashMap<PlotKey, B32>,
}

/// A proof being fetched for a signage point.
struct ProofJob {
    sp: u64,
    plot: PlotKey,
    quality: B32,
    index: u32,
    challenge: B32,
    answered: bool,
}

enum Tag {
    Lookup,
    Proof(ProofJob),
}

/// A signature computed on the blocking pool.
type Signed = (Option<u16>, Result<RespondSignatures, String>, Instant);

struct Connection {
    shared: Arc<Shared>,
    root: Arc<ChiaRoot>,
    peer: String,
    out: mpsc::Sender<Vec<u8>>,
    sink: mpsc::Sender<EngineEvent>,
    /// The farmer's protocol version.
    version: (u32, u32, u32),
    keys: Option<FarmerKeys>,
    sync: PlotSyncSender,
    /// (registry generation, plot states generation) the last sync started from.
    synced: Option<(u64, u64)>,
    budget: RateBudget,
    backlog: VecDeque<(Instant, Frame)>,
    epoch: Instant,
    sps: HashMap<u64, SignagePoint>,
    tags: HashMap<u64, (u64, Tag)>,
    next_tag: u64,
    signing: JoinSet<Signed>,
}

/// chia's `v1_cut_off_height`: from this last transaction block height on, v1 plots are not
/// farmed (`HARD_FORK2_HEIGHT` plus the phase-out epochs).
fn v1_cut_off_height(c: &ConsensusConstants) -> u64 {
    let mask = (1u64 << c.plot_v1_phase_out_epoch_bits.min(8)) - 1;
    u64::from(c.hard_fork2_height) + mask * u64::from(c.epoch_blocks)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Serves one farmer over an established WebSocket until the connection ends; returns why.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    root: Arc<ChiaRoot>,
    peer: String,
    mut shutdown: watch::Receiver<bool>,
) -> ChiaEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(FRAMES_QUEUED_MAX);
    let write_timeout = seconds(shared.config.farmer.write_timeout_seconds);
    let mut writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            let send = ws_tx.send(WsMessage::Binary(bytes.into()));
            match tokio::time::timeout(write_timeout, send).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("no progress for {write_timeout:?}")),
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws_tx.close()).await;
        Ok(())
    });
    let (sink, mut events) = mpsc::channel(shared.config.engine.events_queued_max);
    let mut conn = Connection {
        shared: shared.clone(),
        root: root.clone(),
        peer,
        out: out_tx,
        sink,
        version: (0, 0, 0),
        keys: None,
        sync: PlotSyncSender::new(root.batch_size, true),
        synced: None,
        budget: RateBudget::new(),
        backlog: VecDeque::new(),
        epoch: Instant::now(),
        sps: HashMap::new(),
        tags: HashMap::new(),
        next_tag: 1,
        signing: JoinSet::new(),
    };
    shared.metrics.connections_total.inc();
    shared.metrics.connections_active.inc();

    let software = format!("harvester {}", env!("CARGO_PKG_VERSION"));
    let hello = Frame::new(msg::HANDSHAKE, None, &Handshake::harvester(&root.network, &software));
    let end = async {
        conn.send_now(hello).await?;
        // The farmer's handshake comes first; anything else before it is a violation.
        let theirs = tokio::select! {
            m = tokio::time::timeout(HANDSHAKE_TIMEOUT, ws_rx.next()) => match m {
                Err(_) => return Err(ChiaEnd::Violation("no handshake from the farmer within 30 s".into())),
                Ok(m) => m,
            },
            _ = shutdown.changed() => return Err(ChiaEnd::Shutdown),
        };
        let frame = match next_frame(theirs)? {
            Some(f) => f,
            None => return Err(ChiaEnd::Violation("the first message was not binary".into())),
        };
        conn.on_handshake(&frame)?;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                m = ws_rx.next() => {
                    if let Some(frame) = next_frame(m)? {
                        conn.on_frame(frame).await?;
                    }
                }
                Some(event) = events.recv() => conn.on_engine(event).await?,
                Some(done) = conn.signing.join_next(), if !conn.signing.is_empty() => {
                    match done {
                        Ok((id, result, started)) => conn.on_signed(id, result, started).await?,
                        Err(e) => {
                            // The signing task panicked: chia has no error reply for this
                            // request; the farmer's request times out. Counted and logged.
                            conn.shared.metrics.signature_errors_total.inc();
                            tracing::error!(peer = %conn.peer, "signing failed: {e}");
                        }
                    }
                }
                _ = tick.tick() => conn.on_tick().await?,
                _ = shutdown.changed() => return Err(ChiaEnd::Shutdown),
                w = &mut writer => {
                    return Err(ChiaEnd::Write(match w {
                        Ok(Err(e)) => e,
                        _ => "writer ended".into(),
                    }));
                }
            }
        }
    }
    .await;
    let end = match end {
        Ok(()) => ChiaEnd::Closed,
        Err(e) => e,
    };
    shared.metrics.connections_active.dec();
    shared.metrics.challenges_in_flight.dec_by(conn.sps.len() as i64);
    drop(conn);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        writer.abort();
    }
    end
}

type WsItem = Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>;

/// The frame in a WebSocket message; `None` for control messages.
fn next_frame(m: WsItem) -> Result<Option<Frame>, ChiaEnd> {
    match m {
        None => Err(ChiaEnd::Closed),
        Some(Err(e)) => Err(ChiaEnd::WebSocket(e.to_string())),
        Some(Ok(WsMessage::Binary(b))) => Frame::decode(&b)
            .map(Some)
            .map_err(|e| ChiaEnd::Violation(format!("undecodable message: {e}"))),
        Some(Ok(WsMessage::Close(_))) => Err(ChiaEnd::Closed),
        Some(Ok(WsMessage::Text(_))) => Err(ChiaEnd::Violation("a text message".into())),
        Some(Ok(_)) => Ok(None),
    }
}

fn body<T: protocol::chia::streamable::Streamable>(
    frame: &Frame,
    what: &str,
) -> Result<T, ChiaEnd> {
    frame.body().map_err(|e: ParseError| ChiaEnd::Violation(format!("{what}: {e}")))
}

impl Connection {
    fn now_seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Sends a frame without consulting the budget (the handshake and plot-sync messages,
    /// whose budget is checked by their callers).
    async fn send_now(&self, frame: Frame) -> Result<(), ChiaEnd> {
        self.out.send(frame.encode()).await.map_err(|_| ChiaEnd::Write("writer ended".into()))
    }

    /// Sends a frame if chia's limits allow it now; otherwise it waits in the backlog.
    async fn send_limited(&mut self, frame: Frame) -> Result<(), ChiaEnd> {
        if !self.backlog.is_empty() {
            return self.queue(frame);
        }
        let bytes = frame.encode();
        match self.budget.try_take(frame.msg_type, frame.data.len(), self.now_seconds()) {
            Ok(()) => self.out.send(bytes).await.map_err(|_| ChiaEnd::Write("writer ended".into())),
            Err(Refusal::Wait(_)) => self.queue(frame),
            Err(r) => {
                tracing::error!(peer = %self.peer, msg_type = frame.msg_type,
                    "message not sent: chia's farmer would refuse it ({r:?})");
                Ok(())
            }
        }
    }

    fn queue(&mut self, frame: Frame) -> Result<(), ChiaEnd> {
        if self.backlog.len() >= BACKLOG_MAX {
            tracing::warn!(peer = %self.peer, msg_type = frame.msg_type,
                "message dropped: {BACKLOG_MAX} messages already wait for chia's rate limits");
            return Ok(());
        }
        if self.backlog.is_empty() {
            tracing::warn!(peer = %self.peer,
                "chia's per-minute message limit reached; messages wait for room");
        }
        self.backlog.push_back((Instant::now(), frame));
        Ok(())
    }

    fn on_handshake(&mut self, frame: &Frame) -> Result<(), ChiaEnd> {
        if frame.msg_type != msg::HANDSHAKE {
            return Err(ChiaEnd::Violation(format!(
                "expected the farmer's handshake, got message type {}",
                frame.msg_type
            )));
        }
        let h: Handshake = body(frame, "handshake")?;
        if h.network_id != self.root.network {
            return Err(ChiaEnd::Violation(format!(
                "the farmer is on network {:?}, we are on {:?} (selected_network)",
                h.network_id, self.root.network
            )));
        }
        if h.node_type != NODE_TYPE_FARMER {
            return Err(ChiaEnd::Violation(format!(
                "the peer is node type {}, not a farmer",
                h.node_type
            )));
        }
        self.version = h.version().ok_or_else(|| {
            ChiaEnd::Violation(format!("bad protocol version {:?}", h.protocol_version))
        })?;
        self.sync = PlotSyncSender::new(self.root.batch_size, self.version >= (0, 0, 38));
        tracing::info!(peer = %self.peer, protocol_version = %h.protocol_version,
            software_version = %h.software_version, "farmer handshake done");
        Ok(())
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<(), ChiaEnd> {
        match frame.msg_type {
            msg::HARVESTER_HANDSHAKE => {
                let h: HarvesterHandshake = body(&frame, "harvester_handshake")?;
                let keys = FarmerKeys {
                    farmer: h.farmer_public_keys.into_iter().collect(),
                    pool: h.pool_public_keys.into_iter().collect(),
                };
                tracing::info!(peer = %self.peer, farmer_keys = keys.farmer.len(),
                    pool_keys = keys.pool.len(), "farmer keys received");
                self.keys = Some(keys);
                // A new selection: the farmer gets a full sync.
                self.sync.reset();
                self.synced = None;
                self.start_sync_if_due().await?;
            }
            msg::NEW_SIGNAGE_POINT_HARVESTER => {
                if self.version >= (0, 0, 38) {
                    let sp: NewSignagePointHarvester2 =
                        body(&frame, "new_signage_point_harvester")?;
                    self.on_signage_point(SignagePointIn::V2(sp)).await?;
                } else {
                    let sp: NewSignagePointHarvester = body(&frame, "new_signage_point_harvester")?;
                    self.on_signage_point(SignagePointIn::V1(sp)).await?;
                }
            }
            msg::REQUEST_SIGNATURES => {
                let r: RequestSignatures = body(&frame, "request_signatures")?;
                self.on_request_signatures(frame.id, r);
            }
            msg::REQUEST_PLOTS => {
                let reply = self.respond_plots(frame.id);
                self.send_limited(reply).await?;
            }
            msg::PLOT_SYNC_RESPONSE => {
                let r: PlotSyncResponse = body(&frame, "plot_sync_response")?;
                match self.sync.on_response(&r) {
                    Progress::Done => {
                        let n = self.sync.farmer_view().map_or(0, |v| v.len());
                        tracing::info!(peer = %self.peer, plots = n, "plot sync done");
                    }
                    Progress::Reset(reason) => {
                        tracing::warn!(peer = %self.peer, "{reason}; starting a full sync");
                        self.synced = None;
                    }
                    Progress::Next => {}
                    Progress::Ignored => {
                        tracing::debug!(peer = %self.peer, "stale plot sync response ignored")
                    }
                }
                self.pump_sync().await?;
            }
            msg::ERROR => {
                let text = frame
                    .body::<protocol::chia::messages::ErrorBody>()
                    .map(|e| format!("code {}: {}", e.code, e.message))
                    .unwrap_or_else(|_| "undecodable".into());
                tracing::warn!(peer = %self.peer, "the farmer reports an error: {text}");
            }
            other => {
                tracing::debug!(peer = %self.peer, msg_type = other, "message ignored");
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Plot sync
    // ---------------------------------------------------------------------------------------

    fn generations(&self) -> (u64, u64) {
        let registry = self.shared.engine.registry().generation;
        let states = self.shared.plot_states.lock().map(|s| s.generation).unwrap_or(0);
        (registry, states)
    }

    fn inventory(&self) -> Inventory {
        let mut inv = Inventory::default();
        let Some(keys) = &self.keys else { return inv };
        let registry = self.shared.engine.registry();
        for info in registry.plots.values() {
            let path = info.path.display().to_string();
            match farmable(info, keys, &self.root) {
                Farmable::Yes => {
                    inv.plots.insert(path.clone(), plot2(info, path));
                }
                Farmable::KeysMissing => inv.keys_missing.push(path),
                Farmable::Invalid(reason) => {
                    tracing::debug!(plot = %path, "reported to the farmer as invalid: {reason}");
                    inv.invalid.push(path)
                }
            }
        }
        let states = self.shared.plot_states.lock().map(|s| s.states.clone()).unwrap_or_default();
        for (path, state) in states.iter() {
            let path = path.display().to_string();
            match state {
                PlotState::Served => {}
                PlotState::Duplicate { .. } => inv.duplicates.push(path),
                PlotState::Quarantined { .. } | PlotState::NoKeys { .. } => {
                    if !inv.plots.contains_key(&path) {
                        inv.invalid.push(path)
                    }
                }
            }
        }
        inv.invalid.sort();
        inv.invalid.dedup();
        inv.keys_missing.sort();
        inv.duplicates.sort();
        inv
    }

    async fn start_sync_if_due(&mut self) -> Result<(), ChiaEnd> {
        if self.keys.is_none() || self.sync.active() {
            return Ok(());
        }
        let generations = self.generations();
        if !self.sync.wants_sync() && self.synced == Some(generations) {
            return Ok(());
        }
        let inventory = self.inventory();
        if self.sync.start(&inventory, 0, unix_now()) {
            self.synced = Some(generations);
            tracing::debug!(peer = %self.peer, plots = inventory.plots.len(),
                invalid = inventory.invalid.len(), keys_missing = inventory.keys_missing.len(),
                duplicates = inventory.duplicates.len(), "plot sync started");
        }
        self.pump_sync().await
    }

    /// Sends the next plot-sync message if one may go.
    async fn pump_sync(&mut self) -> Result<(), ChiaEnd> {
        if !self.sync.active() {
            return Ok(());
        }
        // Every plot-sync type has the same limit; reserve a place before taking the message.
        let now = self.now_seconds();
        if self.budget.try_take(msg::PLOT_SYNC_LOADED2, 0, now).is_err() {
            return Ok(());
        }
        if let Some(frame) = self.sync.poll(unix_now()) {
            self.send_now(frame).await?;
        }
        Ok(())
    }

    fn respond_plots(&self, id: Option<u16>) -> Frame {
        let inv = self.inventory();
        let plots: Vec<Plot2> = inv.plots.into_values().collect();
        let mut no_keys = inv.keys_missing;
        no_keys.extend(inv.duplicates);
        if self.version >= (0, 0, 38) {
            let r = RespondPlots2 {
                plots,
                failed_to_open_filenames: inv.invalid,
                no_key_filenames: no_keys,
            };
            Frame::new(msg::RESPOND_PLOTS2, id, &r)
        } else {
            let r = RespondPlots {
                plots: plots.iter().map(Plot2::to_v1).collect(),
                failed_to_open_filenames: inv.invalid,
                no_key_filenames: no_keys,
            };
            Frame::new(msg::RESPOND_PLOTS, id, &r)
        }
    }

    async fn on_tick(&mut self) -> Result<(), ChiaEnd> {
        // Backlog first, in order.
        // A proof or farming_info that waited past the farmer's window is worth nothing.
        while self.backlog.front().is_some_and(|(at, _)| at.elapsed() >= BACKLOG_AGE_MAX) {
            if let Some((_, frame)) = self.backlog.pop_front() {
                tracing::warn!(peer = %self.peer, msg_type = frame.msg_type,
                    "message dropped: it waited {BACKLOG_AGE_MAX:?} for chia's rate limits");
            }
        }
        while let Some((_, frame)) = self.backlog.front() {
            let now = self.now_seconds();
            if self.budget.try_take(frame.msg_type, frame.data.len(), now).is_err() {
                break;
            }
            let Some((_, frame)) = self.backlog.pop_front() else { break };
            self.send_now(frame).await?;
        }
        self.start_sync_if_due().await?;
        self.pump_sync().await?;
        // Signage points past their deadline are answered as they stand.
        let now = Instant::now();
        let late: Vec<u64> =
            self.sps.iter().filter(|(_, sp)| now >= sp.deadline).map(|(t, _)| *t).collect();
        for tag in late {
            if let Some(sp) = self.sps.get(&tag) {
                tracing::warn!(peer = %self.peer, signage_point = sp.index,
                    lookups_left = sp.jobs_left, proofs_left = sp.proofs_left,
                    "signage point deadline passed; answering with what arrived");
            }
            self.finish_sp(tag, true).await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Signage points
    // ---------------------------------------------------------------------------------------

    fn tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    async fn on_signage_point(&mut self, sp: SignagePointIn) -> Result<(), ChiaEnd> {
        let Some(keys) = &self.keys else {
            tracing::debug!(peer = %self.peer, "signage point before harvester_handshake ignored");
            return Ok(());
        };
        let started = Instant::now();
        let (challenge_hash, sp_hash, index, difficulty, sub_slot_iters, pools) = sp.common();
        if self.sps.len() >= SIGNAGE_POINTS_IN_FLIGHT_MAX {
            tracing::warn!(peer = %self.peer, signage_point = index,
                "signage point dropped: {SIGNAGE_POINTS_IN_FLIGHT_MAX} still being answered");
            return Ok(());
        }
        self.shared.metrics.challenges_total.inc();
        let c = &self.root.constants;
        let last_tx_height = sp.last_tx_height();
        let registry = self.shared.engine.registry();
        let mut by_disk: BTreeMap<String, Vec<(PlotKey, B32)>> = BTreeMap::new();
        let mut challenges = HashMap::new();
        let (mut passed, mut total) = (0u32, 0u32);
        let v1_over = last_tx_height.is_some_and(|h| u64::from(h) >= v1_cut_off_height(c));
        for (disk, plot_keys) in &registry.by_disk {
            for key in plot_keys {
                let Some(info) = registry.plots.get(key) else { continue };
                if !matches!(farmable(info, keys, &self.root), Farmable::Yes) {
                    continue;
                }
                total += 1;
                if v1_over {
                    continue;
                }
                let bits = match &sp {
                    SignagePointIn::V2(s) => calculate_prefix_bits(c, s.peak_height, info.k),
                    SignagePointIn::V1(s) => s.filter_prefix_bits,
                };
                if !passes_plot_filter(bits, &info.id, &challenge_hash, &sp_hash) {
                    continue;
                }
                passed += 1;
                let challenge = calculate_pos_challenge(&info.id, &challenge_hash, &sp_hash);
                challenges.insert(*key, challenge);
                by_disk.entry(disk.clone()).or_default().push((*key, challenge));
            }
        }
        let tag = self.tag();
        let items: Vec<(String, Vec<(PlotKey, B32)>)> = by_disk.into_iter().collect();
        let (jobs, refused) = self.shared.engine.qualities_each(&items, &registry, &self.sink, tag);
        for (disk, reason) in refused {
            tracing::warn!(peer = %self.peer, disk, signage_point = index, "lookup refused: {reason}");
        }
        let e = &self.shared.config.engine;
        let deadline = started
            + seconds(e.lookup_deadline_seconds)
            + seconds(e.proof_deadline_seconds)
            + SIGNAGE_POINT_GRACE;
        self.shared.metrics.challenges_in_flight.inc();
        self.sps.insert(
            tag,
            SignagePoint {
                challenge_hash,
                sp_hash,
                index,
                difficulty,
                sub_slot_iters,
                pool_difficulties: pools,
                last_tx_height: last_tx_height.unwrap_or(0),
                started,
                deadline,
                jobs_left: jobs,
                proofs_left: 0,
                passed,
                total,
                proofs_sent: 0,
                challenges,
            },
        );
        self.tags.insert(tag, (tag, Tag::Lookup));
        self.finish_if_done(tag).await
    }

    async fn finish_if_done(&mut self, sp: u64) -> Result<(), ChiaEnd> {
        if self.sps.get(&sp).is_some_and(|s| s.jobs_left == 0 && s.proofs_left == 0) {
            self.finish_sp(sp, false).await?;
        }
        Ok(())
    }

    /// Sends `farming_info` and forgets the signage point (late answers are then dropped).
    async fn finish_sp(&mut self, tag: u64, late: bool) -> Result<(), ChiaEnd> {
        let Some(sp) = self.sps.remove(&tag) else { return Ok(()) };
        self.tags.retain(|_, (owner, _)| *owner != tag);
        self.shared.metrics.challenges_in_flight.dec();
        let elapsed = sp.started.elapsed();
        self.shared.metrics.record_challenge(elapsed);
        if late {
            self.shared.metrics.lookups_timed_out_total.inc();
        }
        tracing::info!(
            "{} plots were eligible for farming {}... Found {} proofs. Time: {:.5} s. Total {} plots",
            sp.passed,
            &hex::encode(sp.challenge_hash)[..10],
            sp.proofs_sent,
            elapsed.as_secs_f64(),
            sp.total
        );
        if let Some(log) = &self.shared.activity {
            let (passed, proofs, total) =
                (sp.passed.into(), sp.proofs_sent.into(), sp.total.into());
            log.record(passed, &sp.challenge_hash, proofs, elapsed, total);
        }
        let info = FarmingInfo {
            challenge_hash: sp.challenge_hash,
            sp_hash: sp.sp_hash,
            timestamp: unix_now(),
            passed: sp.passed,
            proofs: sp.proofs_sent,
            total_plots: sp.total,
            lookup_time: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        };
        self.send_limited(Frame::new(msg::FARMING_INFO, None, &info)).await
    }

    async fn on_engine(&mut self, event: EngineEvent) -> Result<(), ChiaEnd> {
        match event {
            EngineEvent::Found { tag, info, found } => self.on_found(tag, info, found).await,
            EngineEvent::Failed { tag, info, error } => {
                let path = info.path.display();
                match self.tags.get_mut(&tag) {
                    Some((_, Tag::Lookup)) => {
                        tracing::warn!(plot = %path, "lookup failed: {error}");
                    }
                    Some((sp, Tag::Proof(p))) if !p.answered => {
                        p.answered = true;
                        let sp = *sp;
                        tracing::warn!(plot = %path, "proof failed: {error}");
                        self.shared.metrics.proof_errors_total.inc();
                        self.proof_answered(sp).await?;
                    }
                    _ => {}
                }
                Ok(())
            }
            EngineEvent::Done { tag, disk, status } => self.on_done(tag, &disk, status).await,
        }
    }

    fn path_of(&self, plot: PlotKey) -> String {
        self.shared
            .engine
            .registry()
            .plots
            .get(&plot)
            .map(|i| i.path.display().to_string())
            .unwrap_or_else(|| format!("#{}", plot.0))
    }

    async fn on_found(
        &mut self,
        tag: u64,
        info: Arc<PlotInfo>,
        found: Vec<plot_format::Found>,
    ) -> Result<(), ChiaEnd> {
        match self.tags.get(&tag) {
            Some((sp, Tag::Lookup)) => {
                let sp = *sp;
                self.on_qualities(sp, &info, found);
                Ok(())
            }
            Some((sp, Tag::Proof(_))) => {
                let sp = *sp;
                let Some((_, Tag::Proof(job))) = self.tags.get_mut(&tag) else { return Ok(()) };
                if job.answered {
                    return Ok(());
                }
                job.answered = true;
                let (quality, index, challenge) = (job.quality, job.index, job.challenge);
                let proof = found.into_iter().find(|f| f.index == index).and_then(|f| f.proof);
                match proof {
                    Some(proof) => self.send_proof(sp, &info, quality, challenge, proof).await?,
                    None => {
                        self.shared.metrics.proof_errors_total.inc();
                        tracing::warn!(plot = %info.path.display(), index, "entry has no proof");
                    }
                }
                self.proof_answered(sp).await
            }
            None => Ok(()),
        }
    }

    /// Qualities of one plot for a signage point: the eligible ones get their proof fetched.
    fn on_qualities(&mut self, sp_tag: u64, info: &Arc<PlotInfo>, found: Vec<plot_format::Found>) {
        let Some(sp) = self.sps.get(&sp_tag) else { return };
        let Some(&challenge) = sp.challenges.get(&info.key) else { return };
        let c = &self.root.constants;
        // Pool-contract plots answer to their pool's difficulty (pool partials).
        let (mut difficulty, mut sub_slot_iters) = (sp.difficulty, sp.sub_slot_iters);
        if let PoolKey::ContractPuzzleHash(ph) = &info.pool {
            if let Some(p) =
                sp.pool_difficulties.iter().find(|p| &p.pool_contract_puzzle_hash == ph)
            {
                difficulty = p.difficulty;
                sub_slot_iters = p.sub_slot_iters;
            }
        }
        let interval = match calculate_sp_interval_iters(c, sub_slot_iters) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(peer = %self.peer, sub_slot_iters, "signage point skipped: {e}");
                return;
            }
        };
        let sp_hash = sp.sp_hash;
        let mut proofs = Vec::new();
        for f in found {
            let required = match calculate_iterations_quality(
                c.difficulty_constant_factor,
                &f.quality,
                info.k,
                difficulty,
                &sp_hash,
            ) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(plot = %info.path.display(), "quality skipped: {e}");
                    continue;
                }
            };
            if required < interval {
                proofs.push((f.quality, f.index));
            }
        }
        self.shared.metrics.challenge_responses_total.inc_by(proofs.len() as u64);
        for (quality, index) in proofs {
            let tag = self.tag();
            self.tags.insert(
                tag,
                (
                    sp_tag,
                    Tag::Proof(ProofJob {
                        sp: sp_tag,
                        plot: info.key,
                        quality,
                        index,
                        challenge,
                        answered: false,
                    }),
                ),
            );
            if let Err(reason) = self.shared.engine.proof(info, challenge, index, &self.sink, tag) {
                self.tags.remove(&tag);
                self.shared.metrics.proof_errors_total.inc();
                tracing::warn!(plot = %info.path.display(), disk = %info.disk,
                    "proof not fetched: {reason}");
                continue;
            }
            if let Some(sp) = self.sps.get_mut(&sp_tag) {
                sp.proofs_left += 1;
            }
        }
    }

    async fn proof_answered(&mut self, sp: u64) -> Result<(), ChiaEnd> {
        if let Some(s) = self.sps.get_mut(&sp) {
            s.proofs_left = s.proofs_left.saturating_sub(1);
        }
        self.finish_if_done(sp).await
    }

    /// Verifies the proof against its quality and sends it; a plot whose proof does not
    /// verify is quarantined, never trusted.
    async fn send_proof(
        &mut self,
        sp_tag: u64,
        info: &Arc<PlotInfo>,
        quality: B32,
        challenge: B32,
        proof: Vec<u8>,
    ) -> Result<(), ChiaEnd> {
        let Some(sp) = self.sps.get(&sp_tag) else { return Ok(()) };
        match validate_proof(&info.id, info.k, &challenge, &proof) {
            Ok(q) if q == quality => {}
            verdict => {
                let reason = match verdict {
                    Ok(_) => "its proof verifies with another quality".to_string(),
                    Err(e) => format!("its proof does not verify: {e}"),
                };
                tracing::error!(plot = %info.path.display(), disk = %info.disk,
                    "plot quarantined: {reason} (corrupt file?)");
                self.shared.metrics.proof_errors_total.inc();
                let _ = self.shared.quarantine.try_send((info.key, reason));
                return Ok(());
            }
        }
        if is_v1_phased_out(&self.root.constants, &proof, sp.last_tx_height).unwrap_or(false) {
            tracing::info!(plot = %info.path.display(), "proof dropped: v1 plots are phased out");
            return Ok(());
        }
        let (pool_public_key, pool_contract_puzzle_hash) = match info.pool {
            PoolKey::PublicKey(pk) => (Some(pk), None),
            PoolKey::ContractPuzzleHash(ph) => (None, Some(ph)),
        };
        let message = NewProofOfSpace {
            challenge_hash: sp.challenge_hash,
            sp_hash: sp.sp_hash,
            plot_identifier: protocol::chia::messages::plot_identifier(
                &quality,
                &info.path.display().to_string(),
            ),
            proof: ProofOfSpace {
                challenge,
                pool_public_key,
                pool_contract_puzzle_hash,
                plot_public_key: info.plot_public_key,
                size: info.k,
                proof,
            },
            signage_point_index: sp.index,
            include_source_signature_data: false,
            farmer_reward_address_override: None,
            fee_info: None,
        };
        if let Some(sp) = self.sps.get_mut(&sp_tag) {
            sp.proofs_sent += 1;
        }
        self.shared.metrics.proofs_total.inc();
        self.send_limited(Frame::new(msg::NEW_PROOF_OF_SPACE, None, &message)).await
    }

    async fn on_done(&mut self, tag: u64, disk: &str, status: JobStatus) -> Result<(), ChiaEnd> {
        match self.tags.get_mut(&tag) {
            Some((sp, Tag::Lookup)) => {
                let sp = *sp;
                match &status {
                    JobStatus::TimedOut { unanswered } => {
                        self.shared.metrics.lookups_timed_out_total.inc();
                        tracing::warn!(peer = %self.peer, disk, unanswered,
                            "lookup deadline passed on this disk; answered with what arrived");
                    }
                    JobStatus::Rejected { reason } => {
                        tracing::warn!(peer = %self.peer, disk, "lookup rejected: {reason}")
                    }
                    JobStatus::Complete => {}
                }
                if let Some(s) = self.sps.get_mut(&sp) {
                    s.jobs_left = s.jobs_left.saturating_sub(1);
                }
                self.finish_if_done(sp).await
            }
            Some((sp, Tag::Proof(job))) => {
                let sp = *sp;
                let answered = job.answered;
                let (plot, index) = (job.plot, job.index);
                debug_assert_eq!(job.sp, sp);
                self.tags.remove(&tag);
                if answered {
                    return Ok(());
                }
                self.shared.metrics.proof_errors_total.inc();
                tracing::warn!(peer = %self.peer, disk, plot = %self.path_of(plot), index,
                    "proof not fetched: {status:?}");
                self.proof_answered(sp).await
            }
            None => Ok(()),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Signatures
    // ---------------------------------------------------------------------------------------

    fn on_request_signatures(&mut self, id: Option<u16>, r: RequestSignatures) {
        let started = Instant::now();
        let Some((_, path)) = split_plot_identifier(&r.plot_identifier) else {
            tracing::warn!(peer = %self.peer, "request_signatures with a malformed plot identifier");
            return;
        };
        let registry = self.shared.engine.registry();
        let info = find_by_path(&registry, Path::new(path));
        let Some(info) = info else {
            // As chia's harvester: no reply (the farmer's request times out).
            self.shared.metrics.signature_errors_total.inc();
            tracing::warn!(peer = %self.peer, plot = path, "signature requested for a plot not served");
            return;
        };
        self.signing.spawn_blocking(move || {
            let Signer::Memo(keys) = &info.signer else {
                return (id, Err("a keys-file plot cannot sign for a chia farmer".into()), started);
            };
            let message_signatures =
                r.messages.iter().map(|m| (*m, keys.sign_local_share(m))).collect();
            let reply = RespondSignatures {
                plot_identifier: r.plot_identifier,
                challenge_hash: r.challenge_hash,
                sp_hash: r.sp_hash,
                local_pk: *keys.local_public_key(),
                farmer_pk: *keys.farmer_public_key(),
                message_signatures,
                include_source_signature_data: false,
                farmer_reward_address_override: None,
            };
            (id, Ok(reply), started)
        });
    }

    async fn on_signed(
        &mut self,
        id: Option<u16>,
        result: Result<RespondSignatures, String>,
        started: Instant,
    ) -> Result<(), ChiaEnd> {
        match result {
            Ok(reply) => {
                self.shared.metrics.signatures_total.inc();
                self.shared.metrics.record_signature(started.elapsed());
                self.send_limited(Frame::new(msg::RESPOND_SIGNATURES, id, &reply)).await
            }
            Err(e) => {
                self.shared.metrics.signature_errors_total.inc();
                tracing::warn!(peer = %self.peer, "signature not made: {e}");
                Ok(())
            }
        }
    }
}

fn find_by_path(registry: &Registry, path: &Path) -> Option<Arc<PlotInfo>> {
    // Linear in the plots; signature requests come a few times per minute at most.
    registry.plots.values().find(|i| i.path == path).cloned()
}

fn plot2(info: &PlotInfo, filename: String) -> Plot2 {
    let (pool_public_key, pool_contract_puzzle_hash) = match info.pool {
        PoolKey::PublicKey(pk) => (Some(pk), None),
        PoolKey::ContractPuzzleHash(ph) => (None, Some(ph)),
    };
    Plot2 {
        filename,
        size: info.k,
        plot_id: info.id,
        pool_public_key,
        pool_contract_puzzle_hash,
        plot_public_key: info.plot_public_key,
        file_size: info.file_bytes,
        time_modified: info.modified_seconds,
        compression_level: Some(0),
        plot_index: 0,
        meta_group: 0,
    }
}

/// A signage point in either of the farmer's forms.
enum SignagePointIn {
    V1(NewSignagePointHarvester),
    V2(NewSignagePointHarvester2),
}

impl SignagePointIn {
    #[allow(clippy::type_complexity)]
    fn common(&self) -> (B32, B32, u8, u64, u64, Vec<PoolDifficulty>) {
        match self {
            SignagePointIn::V1(s) => (
                s.challenge_hash,
                s.sp_hash,
                s.signage_point_index,
                s.difficulty,
                s.sub_slot_iters,
                s.pool_difficulties.clone(),
            ),
            SignagePointIn::V2(s) => (
                s.challenge_hash,
                s.sp_hash,
                s.signage_point_index,
                s.difficulty,
                s.sub_slot_iters,
                s.pool_difficulties.clone(),
            ),
        }
    }

    fn last_tx_height(&self) -> Option<u32> {
        match self {
            SignagePointIn::V1(_) => None,
            SignagePointIn::V2(s) => Some(s.last_tx_height),
        }
    }
}
