//! One connection to a farmer: bytes in, frames decoded, the protocol session decides, the
//! engine looks up, answers go out. The session (`protocol::HarvesterSession`) holds every
//! protocol rule; this module only moves bytes and engine events.
//!
//! Nothing here waits on a disk: lookups are jobs for the shards, whose events come back on
//! this connection's own queue; signatures run on the blocking pool. Proofs are verified
//! before they leave.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plot_format::verify::validate_proof;
use protocol::{
    Body, Bytes32, ErrorCode, FrameDecoder, HarvesterSession, Input, Limits, Message, ProofOfSpace,
    SessionLimits, SignKind, G1,
};
use shard::{JobStatus, PlotKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{seconds, Config};
use crate::engine::{Engine, EngineEvent, Registry};
use crate::plots::{PlotInfo, PoolKey};
use crate::telemetry::DaemonMetrics;

/// Frames waiting for the writer task.
const FRAMES_QUEUED_MAX: usize = 4096;
/// Bytes read from the socket at once.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How often expired qualities are dropped and a stalled frame is looked for.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(1);

/// What every connection shares with the daemon.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub metrics: Arc<DaemonMetrics>,
    pub config: Arc<Config>,
    /// Runtime quarantines (a plot whose proof failed verification).
    pub quarantine: crossbeam_channel::Sender<(PlotKey, String)>,
    /// Plots selected / not selected by the last handshake, for the metrics.
    pub selection_counts: std::sync::Mutex<Vec<(&'static str, u64)>>,
    /// Every plot file's state after the last refresh (for chia's plot sync).
    pub plot_states: std::sync::Mutex<Arc<PlotStates>>,
    /// chia-style activity lines (`[log] chia_activity_file`), if configured.
    pub activity: Option<crate::activity::ActivityLog>,
}

/// Every known plot file's state, replaced as a whole after each refresh.
#[derive(Debug, Default)]
pub struct PlotStates {
    /// Bumped on every change.
    pub generation: u64,
    pub states: Vec<(std::path::PathBuf, crate::plots::PlotState)>,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    #[error("the farmer closed the connection")]
    Eof,
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("write failed or timed out: {0}")]
    Write(String),
    #[error("protocol violation: {0}")]
    Violation(String),
    #[error("shutting down")]
    Shutdown,
}

enum JobKind {
    Challenge {
        challenge: Bytes32,
        started: Instant,
        jobs_left: usize,
        responses: u64,
        /// Disks the challenge went to, and those that did not finish (timed out, refused).
        disks: usize,
        incomplete: usize,
    },
    Proof {
        id: Option<u16>,
        quality: Bytes32,
        challenge: Bytes32,
        plot: PlotKey,
        index: u32,
        started: Instant,
        answered: bool,
    },
}

/// A signature computed on the blocking pool: request id, quality, kind, start, result.
type Signed = (Option<u16>, Bytes32, SignKind, Instant, protocol::G2);

struct Selection {
    generation: u64,
    pool_keys: HashSet<G1>,
    by_disk: Vec<(String, Vec<PlotKey>)>,
}

impl Selection {
    fn compute(registry: &Registry, pool_keys: HashSet<G1>) -> (Selection, [u64; 3]) {
        let mut by_disk = Vec::new();
        let mut counts = [0u64; 3]; // selected, pool contract, other pool key
        for (disk, keys) in &registry.by_disk {
            let mut chosen = Vec::new();
            for key in keys {
                let Some(info) = registry.plots.get(key) else { continue };
                match &info.pool {
                    PoolKey::PublicKey(pk) if pool_keys.contains(pk) => {
                        chosen.push(*key);
                        counts[0] += 1;
                    }
                    PoolKey::PublicKey(_) => counts[2] += 1,
                    PoolKey::ContractPuzzleHash(_) => counts[1] += 1,
                }
            }
            if !chosen.is_empty() {
                by_disk.push((disk.clone(), chosen));
            }
        }
        (Selection { generation: registry.generation, pool_keys, by_disk }, counts)
    }
}

struct Connection {
    shared: Arc<Shared>,
    peer: String,
    session: HarvesterSession<PlotKey>,
    epoch: Instant,
    out: mpsc::Sender<Vec<u8>>,
    sink: mpsc::Sender<EngineEvent>,
    jobs: HashMap<u64, JobKind>,
    next_tag: u64,
    selection: Option<Selection>,
    signing: JoinSet<Signed>,
    /// The request id of each signing task, to answer it even if the task panics.
    signing_requests: HashMap<tokio::task::Id, Option<u16>>,
    /// The farmer negotiated `harvester/2`: it gets a `ChallengeDone` after each challenge.
    challenge_done: bool,
}

/// What the farmer negotiated on this connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// `ChallengeDone` after each challenge (ALPN `harvester/2`).
    pub challenge_done: bool,
}

/// Serves one farmer connection until it ends; returns why.
pub async fn serve<S>(
    stream: S,
    shared: Arc<Shared>,
    peer: String,
    features: Features,
    mut shutdown: watch::Receiver<bool>,
) -> ConnectionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let p = &shared.config.protocol;
    let limits = Limits { frame_bytes_max: p.frame_bytes_max, pool_keys_max: p.pool_keys_max };
    let session_limits = SessionLimits {
        challenges_in_flight_max: p.challenges_in_flight_max,
        challenges_remembered_max: p.challenges_remembered_max,
        qualities_max: p.qualities_max,
        quality_ttl: seconds(p.quality_ttl_seconds),
    };
    let (out_tx, out_rx) = mpsc::channel(FRAMES_QUEUED_MAX);
    let (sink, mut events) = mpsc::channel(shared.config.engine.events_queued_max);
    let write_timeout = seconds(shared.config.farmer.write_timeout_seconds);
    let mut writer = tokio::spawn(write_frames(wr, out_rx, write_timeout));
    shared.metrics.connections_total.inc();
    shared.metrics.connections_active.inc();
    let mut conn = Connection {
        shared: shared.clone(),
        peer,
        session: HarvesterSession::new(session_limits),
        epoch: Instant::now(),
        out: out_tx,
        sink,
        jobs: HashMap::new(),
        next_tag: 1,
        selection: None,
        signing: JoinSet::new(),
        signing_requests: HashMap::new(),
        challenge_done: features.challenge_done,
    };
    let mut decoder = FrameDecoder::new(limits);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut expire = tokio::time::interval(EXPIRE_INTERVAL);
    let frame_timeout = seconds(shared.config.protocol.frame_read_timeout_seconds);
    // When the frame now in the decoder started arriving (None: no partial frame).
    let mut partial_since: Option<Instant> = None;
    let signatures_max = shared.config.protocol.signatures_in_flight_max;
    let end = loop {
        tokio::select! {
            read = rd.read(&mut buf), if conn.signing.len() < signatures_max => {
                let n = match read {
                    Ok(0) => break ConnectionEnd::Eof,
                    Ok(n) => n,
                    Err(e) => break ConnectionEnd::Read(e),
                };
                if let Err(end) = conn.on_bytes(&mut decoder, &buf[..n]).await {
                    break end;
                }
                partial_since = match (decoder.buffered_bytes(), partial_since) {
                    (0, _) => None,
                    (_, Some(t)) => Some(t),
                    (_, None) => Some(Instant::now()),
                };
            }
            Some(event) = events.recv() => {
                if let Err(end) = conn.on_engine(event).await {
                    break end;
                }
            }
            Some(done) = conn.signing.join_next_with_id(), if !conn.signing.is_empty() => {
                let reply = match done {
                    Ok((task, (id, quality, kind, started, signature))) => {
                        conn.signing_requests.remove(&task);
                        conn.on_signed(id, quality, kind, started, signature).await
                    }
                    Err(e) => conn.on_signing_failed(e).await,
                };
                if let Err(end) = reply {
                    break end;
                }
            }
            _ = expire.tick() => {
                let now = conn.now();
                conn.session.expire(now);
                if partial_since.is_some_and(|t| t.elapsed() > frame_timeout) {
                    // A peer trickling a frame byte by byte holds a buffer and a connection.
                    let reason = format!(
                        "a frame stayed incomplete for more than {frame_timeout:?} ({} bytes)",
                        decoder.buffered_bytes()
                    );
                    shared.metrics.frames_rejected_total.inc();
                    tracing::warn!(peer = %conn.peer, "closing the connection: {reason}");
                    let reply = Message::error(None, ErrorCode::ProtocolViolation, reason.clone());
                    let _ = conn.send(reply).await;
                    break ConnectionEnd::Violation(reason);
                }
            }
            _ = shutdown.changed() => break ConnectionEnd::Shutdown,
            _ = &mut writer => break ConnectionEnd::Write("writer ended".into()),
        }
    };
    let in_flight = conn.jobs.values().filter(|j| matches!(j, JobKind::Challenge { .. })).count();
    shared.metrics.challenges_in_flight.dec_by(in_flight as i64);
    shared.metrics.connections_active.dec();
    // Let the writer flush what was queued (e.g. the ProtocolViolation error), briefly.
    drop(conn);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        writer.abort();
    }
    end
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut frames: mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
) -> Result<(), String> {
    while let Some(frame) = frames.recv().await {
        match tokio::time::timeout(timeout, wr.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no progress for {timeout:?}")),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    Ok(())
}

impl Connection {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn send(&self, message: Message) -> Result<(), ConnectionEnd> {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        self.out.send(frame).await.map_err(|_| ConnectionEnd::Write("writer ended".into()))
    }

    async fn send_error(
        &self,
        id: Option<u16>,
        code: ErrorCode,
        text: String,
    ) -> Result<(), ConnectionEnd> {
        self.send(Message::error(id, code, text)).await
    }

    async fn on_bytes(
        &mut self,
        decoder: &mut FrameDecoder,
        mut rest: &[u8],
    ) -> Result<(), ConnectionEnd> {
        while !rest.is_empty() {
            let used = decoder.feed(rest);
            rest = &rest[used..];
            loop {
                match decoder.next_message() {
                    Ok(Some(message)) => self.on_message(message).await?,
                    Ok(None) => break,
                    Err(e) => {
                        self.shared.metrics.frames_rejected_total.inc();
                        let reply = self.session.on_codec_error(&e);
                        tracing::warn!(peer = %self.peer, "closing the connection: {e}");
                        let _ = self.send(reply).await;
                        return Err(ConnectionEnd::Violation(e.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    fn registry(&self) -> Arc<Registry> {
        self.shared.engine.registry()
    }

    /// The selected plots of `registry` by disk, recomputed when the registry or the pool
    /// keys changed.
    fn selection(&mut self, registry: &Registry) -> &[(String, Vec<PlotKey>)] {
        let stale = self.selection.as_ref().is_none_or(|s| s.generation != registry.generation);
        if stale {
            let keys: HashSet<G1> = self.session.pool_pubkeys().iter().copied().collect();
            self.select(registry, keys);
        }
        self.selection.as_ref().map(|s| s.by_disk.as_slice()).unwrap_or(&[])
    }

    /// Plots the farmer's keys selected, as last computed.
    fn selected_plots(&self) -> u64 {
        self.selection
            .as_ref()
            .map_or(0, |s| s.by_disk.iter().map(|(_, keys)| keys.len() as u64).sum())
    }

    fn select(&mut self, registry: &Registry, keys: HashSet<G1>) {
        let (selection, [selected, contract, other]) = Selection::compute(registry, keys);
        let counts = vec![
            ("selected", selected),
            ("not_selected_pool_contract", contract),
            ("not_selected_other_pool_key", other),
        ];
        if let Ok(mut c) = self.shared.selection_counts.lock() {
            *c = counts;
        }
        if self.selection.as_ref().is_none_or(|s| s.pool_keys != selection.pool_keys) {
            tracing::info!(peer = %self.peer, pool_keys = selection.pool_keys.len(), selected,
                not_selected_pool_contract = contract, not_selected_other_pool_key = other,
                "plots selected by the farmer's pool keys");
        }
        self.selection = Some(selection);
    }

    async fn on_message(&mut self, message: Message) -> Result<(), ConnectionEnd> {
        let now = self.now();
        match self.session.on_message(message, now) {
            Input::Select { pool_pubkeys } => {
                let registry = self.registry();
                self.select(&registry, pool_pubkeys.into_iter().collect());
            }
            Input::Challenge { challenge_hash } => self.start_challenge(challenge_hash).await?,
            Input::Proof { id, quality, challenge_hash, plot, index } => {
                self.start_proof(id, quality, challenge_hash, plot, index).await?;
            }
            Input::Sign { id, quality, plot, message, kind } => {
                self.start_sign(id, quality, plot, message, kind).await?;
            }
            Input::Reply(reply) => self.send(reply).await?,
            Input::FarmerError { code, message } => {
                tracing::warn!(peer = %self.peer, code = code.code(), "the farmer reports an error: {message}");
            }
            Input::Close { reply, reason } => {
                self.shared.metrics.protocol_errors_total.inc();
                tracing::warn!(peer = %self.peer, "closing the connection: {reason}");
                let _ = self.send(reply).await;
                return Err(ConnectionEnd::Violation(reason));
            }
        }
        Ok(())
    }

    fn tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    async fn start_challenge(&mut self, challenge: Bytes32) -> Result<(), ConnectionEnd> {
        self.shared.metrics.challenges_total.inc();
        let started = Instant::now();
        let tag = self.tag();
        let registry = self.registry();
        let plots = self.selection(&registry).to_vec();
        let (jobs, refused) =
            self.shared.engine.qualities(challenge, &plots, &registry, &self.sink, tag);
        let incomplete = refused.len();
        for (disk, reason) in refused {
            tracing::warn!(peer = %self.peer, disk, challenge = %hex::encode(challenge),
                "lookup refused: {reason}");
        }
        if jobs == 0 {
            self.session.on_challenge_done(challenge);
            return self.send_challenge_done(challenge, 0, incomplete, incomplete, started).await;
        }
        self.shared.metrics.challenges_in_flight.inc();
        self.jobs.insert(
            tag,
            JobKind::Challenge {
                challenge,
                started,
                jobs_left: jobs,
                responses: 0,
                disks: jobs + incomplete,
                incomplete,
            },
        );
        Ok(())
    }

    /// `ChallengeDone`, if the farmer negotiated it.
    async fn send_challenge_done(
        &self,
        challenge_hash: Bytes32,
        responses: u64,
        disks: usize,
        incomplete: usize,
        started: Instant,
    ) -> Result<(), ConnectionEnd> {
        if !self.challenge_done {
            return Ok(());
        }
        let body = Body::ChallengeDone {
            challenge_hash,
            responses: u32::try_from(responses).unwrap_or(u32::MAX),
            disks: u16::try_from(disks).unwrap_or(u16::MAX),
            disks_incomplete: u16::try_from(incomplete).unwrap_or(u16::MAX),
            elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        };
        self.send(Message { id: None, body }).await
    }

    async fn start_proof(
        &mut self,
        id: Option<u16>,
        quality: Bytes32,
        challenge: Bytes32,
        plot: PlotKey,
        index: u32,
    ) -> Result<(), ConnectionEnd> {
        let registry = self.registry();
        let Some(info) = registry.plots.get(&plot) else {
            self.shared.metrics.proof_errors_total.inc();
            let text = "the plot of this quality is no longer served (removed or quarantined)";
            return self.send_error(id, ErrorCode::PlotUnavailable, text.into()).await;
        };
        let tag = self.tag();
        if let Err(reason) = self.shared.engine.proof(info, challenge, index, &self.sink, tag) {
            self.shared.metrics.proof_errors_total.inc();
            // A full queue is load (ask again later); a missing or stopped shard is a fault.
            let code = match reason {
                crate::engine::Refused::QueueFull => ErrorCode::Busy,
                crate::engine::Refused::NoShard | crate::engine::Refused::Stopped => {
                    ErrorCode::LookupFailed
                }
            };
            let text = format!(
                "plot {}: disk {} refused the job: {reason}",
                info.path.display(),
                info.disk
            );
            return self.send_error(id, code, text).await;
        }
        self.jobs.insert(
            tag,
            JobKind::Proof {
                id,
                quality,
                challenge,
                plot,
                index,
                started: Instant::now(),
                answered: false,
            },
        );
        Ok(())
    }

    async fn start_sign(
        &mut self,
        id: Option<u16>,
        quality: Bytes32,
        plot: PlotKey,
        message: Bytes32,
        kind: SignKind,
    ) -> Result<(), ConnectionEnd> {
        let registry = self.registry();
        let Some(info) = registry.plots.get(&plot).cloned() else {
            self.shared.metrics.signature_errors_total.inc();
            let text = "the plot of this quality is no longer served (removed or quarantined)";
            return self.send_error(id, ErrorCode::PlotUnavailable, text.into()).await;
        };
        let started = Instant::now();
        let task =
            self.signing.spawn_blocking(move || (id, quality, kind, started, info.sign(&message)));
        self.signing_requests.insert(task.id(), id);
        Ok(())
    }

    /// A signing task that panicked (or was cancelled): its request still gets an answer.
    async fn on_signing_failed(&mut self, e: tokio::task::JoinError) -> Result<(), ConnectionEnd> {
        self.shared.metrics.signature_errors_total.inc();
        tracing::error!(peer = %self.peer, "signing failed: {e}");
        let reply = signing_failed(&e, &mut self.signing_requests);
        self.send(reply).await
    }

    async fn on_signed(
        &mut self,
        id: Option<u16>,
        quality: Bytes32,
        kind: SignKind,
        started: Instant,
        signature: protocol::G2,
    ) -> Result<(), ConnectionEnd> {
        self.shared.metrics.signatures_total.inc();
        self.shared.metrics.record_signature(started.elapsed());
        let body = match kind {
            SignKind::Header => {
                Body::RespondHeaderSignature { quality, header_hash_signature: signature }
            }
            SignKind::Partial => {
                Body::RespondPartialProof { quality, farmer_target_signature: signature }
            }
        };
        self.send(Message { id, body }).await
    }

    async fn on_engine(&mut self, event: EngineEvent) -> Result<(), ConnectionEnd> {
        match event {
            EngineEvent::Found { tag, info, found } => self.on_found(tag, info, found).await,
            EngineEvent::Failed { tag, info, error } => self.on_failed(tag, info, error).await,
            EngineEvent::Done { tag, disk, status } => self.on_done(tag, &disk, status).await,
        }
    }

    async fn on_found(
        &mut self,
        tag: u64,
        info: Arc<PlotInfo>,
        found: Vec<plot_format::Found>,
    ) -> Result<(), ConnectionEnd> {
        let plot = info.key;
        // A plot removed since the job was made is no longer served: its answers go nowhere.
        let info = self.registry().plots.contains_key(&plot).then_some(info);
        match self.jobs.get_mut(&tag) {
            Some(JobKind::Challenge { challenge, .. }) => {
                let challenge = *challenge;
                let Some(info) = info else { return Ok(()) };
                let now = self.now();
                let mut sent = 0;
                for f in found {
                    if let Some(m) =
                        self.session.on_quality(challenge, f.quality, info.k, plot, f.index, now)
                    {
                        self.send(m).await?;
                        sent += 1;
                    }
                }
                if let Some(JobKind::Challenge { responses, .. }) = self.jobs.get_mut(&tag) {
                    *responses += sent;
                }
                self.shared.metrics.challenge_responses_total.inc_by(sent);
            }
            Some(JobKind::Proof { .. }) => {
                let Some(JobKind::Proof {
                    id, quality, challenge, index, started, answered, ..
                }) = self.jobs.get_mut(&tag)
                else {
                    return Ok(());
                };
                if *answered {
                    return Ok(());
                }
                *answered = true;
                let (id, quality, challenge, index, started) =
                    (*id, *quality, *challenge, *index, *started);
                let proof = found.into_iter().find(|f| f.index == index).and_then(|f| f.proof);
                let reply = match (info, proof) {
                    (Some(info), Some(proof)) => {
                        self.respond_proof(&info, id, quality, challenge, proof)
                    }
                    (None, _) => {
                        Message::error(id, ErrorCode::PlotUnavailable, "the plot was removed")
                    }
                    (Some(info), None) => Message::error(
                        id,
                        ErrorCode::LookupFailed,
                        format!("plot {}: entry {index} has no proof", info.path.display()),
                    ),
                };
                if matches!(reply.body, Body::RespondProofOfSpace { .. }) {
                    self.shared.metrics.proofs_total.inc();
                } else {
                    self.shared.metrics.proof_errors_total.inc();
                }
                self.shared.metrics.record_proof_request(started.elapsed());
                self.send(reply).await?;
            }
            None => {}
        }
        Ok(())
    }

    /// The answer to a proof request: the proof, after our verifier accepted it with the
    /// announced quality; a plot that yields a wrong proof is quarantined, never trusted.
    fn respond_proof(
        &self,
        info: &PlotInfo,
        id: Option<u16>,
        quality: Bytes32,
        challenge: Bytes32,
        proof: Vec<u8>,
    ) -> Message {
        let PoolKey::PublicKey(pool_pubkey) = info.pool else {
            return Message::error(id, ErrorCode::Internal, "pool contract plots are not served");
        };
        match validate_proof(&info.id, info.k, &challenge, &proof) {
            Ok(q) if q == quality => {}
            verdict => {
                let reason = match verdict {
                    Ok(_) => "its proof verifies with another quality".to_string(),
                    Err(e) => format!("its proof does not verify: {e}"),
                };
                tracing::error!(plot = %info.path.display(), disk = %info.disk,
                    "plot quarantined: {reason} (corrupt file?)");
                let _ = self.shared.quarantine.try_send((info.key, reason.clone()));
                return Message::error(
                    id,
                    ErrorCode::LookupFailed,
                    format!("plot {}: {reason}; plot quarantined", info.path.display()),
                );
            }
        }
        let proof = ProofOfSpace {
            challenge_hash: challenge,
            pool_pubkey,
            plot_pubkey: info.plot_public_key,
            size: info.k,
            proof,
        };
        Message { id, body: Body::RespondProofOfSpace { quality, proof } }
    }

    async fn on_failed(
        &mut self,
        tag: u64,
        info: Arc<PlotInfo>,
        error: shard::ShardError,
    ) -> Result<(), ConnectionEnd> {
        let served = self.registry().plots.contains_key(&info.key);
        let (path, disk) = (info.path.display().to_string(), info.disk.clone());
        match self.jobs.get_mut(&tag) {
            // A plot removed or quarantined after the challenge was queued: expected, and
            // already reported (with its path) when it left; one line per challenge would flood.
            Some(JobKind::Challenge { .. }) if !served => {
                tracing::debug!(plot = %path, "lookup of a plot no longer served: {error}");
            }
            Some(JobKind::Challenge { .. }) => {
                tracing::warn!(plot = %path, disk = %disk, "lookup failed: {error}");
            }
            Some(JobKind::Proof { id, answered, started, .. }) if !*answered => {
                *answered = true;
                let (id, started) = (*id, *started);
                tracing::warn!(plot = %path, disk = %disk, "proof failed: {error}");
                self.shared.metrics.proof_errors_total.inc();
                self.shared.metrics.record_proof_request(started.elapsed());
                self.send_error(id, ErrorCode::LookupFailed, format!("plot {path}: {error}"))
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_done(
        &mut self,
        tag: u64,
        disk: &str,
        status: JobStatus,
    ) -> Result<(), ConnectionEnd> {
        let Some(job) = self.jobs.get_mut(&tag) else { return Ok(()) };
        match job {
            JobKind::Challenge { challenge, started, jobs_left, incomplete, .. } => {
                if !matches!(status, JobStatus::Complete) {
                    *incomplete += 1;
                }
                if let JobStatus::TimedOut { unanswered } = &status {
                    self.shared.metrics.lookups_timed_out_total.inc();
                    tracing::warn!(peer = %self.peer, disk, challenge = %hex::encode(*challenge), unanswered,
                        "lookup deadline passed on this disk; answered with what arrived");
                }
                if let JobStatus::Rejected { reason } = &status {
                    tracing::warn!(peer = %self.peer, disk, challenge = %hex::encode(*challenge), "lookup rejected: {reason}");
                }
                *jobs_left -= 1;
                if *jobs_left == 0 {
                    let (challenge, started) = (*challenge, *started);
                    let Some(JobKind::Challenge { responses, disks, incomplete, .. }) =
                        self.jobs.remove(&tag)
                    else {
                        return Ok(());
                    };
                    self.session.on_challenge_done(challenge);
                    self.shared.metrics.challenges_in_flight.dec();
                    self.shared.metrics.record_challenge(started.elapsed());
                    if let Some(log) = &self.shared.activity {
                        let plots = self.selected_plots();
                        log.record(plots, &challenge, responses, started.elapsed(), plots);
                    }
                    self.send_challenge_done(challenge, responses, disks, incomplete, started)
                        .await?;
                }
            }
            JobKind::Proof { id, answered, started, plot, .. } => {
                let (id, answered, started, plot) = (*id, *answered, *started, *plot);
                self.jobs.remove(&tag);
                if answered {
                    return Ok(());
                }
                let path = self
                    .registry()
                    .plots
                    .get(&plot)
                    .map(|i| i.path.display().to_string())
                    .unwrap_or_else(|| format!("#{}", plot.0));
                let (code, text) = match status {
                    JobStatus::TimedOut { .. } => {
                        self.shared.metrics.lookups_timed_out_total.inc();
                        (
                            ErrorCode::TimedOut,
                            format!("plot {path}: disk {disk} did not answer before the deadline"),
                        )
                    }
                    // Load is Busy (ask again later); a degraded disk is the disk's fault.
                    JobStatus::Rejected { reason } => (
                        if reason.is_load() { ErrorCode::Busy } else { ErrorCode::LookupFailed },
                        format!("plot {path}: disk {disk} refused the job: {reason}"),
                    ),
                    JobStatus::Complete => {
                        (ErrorCode::LookupFailed, format!("plot {path}: the entry was not found"))
                    }
                };
                self.shared.metrics.proof_errors_total.inc();
                self.shared.metrics.record_proof_request(started.elapsed());
                tracing::warn!(peer = %self.peer, disk, plot = %path, "proof request failed: {text}");
                self.send_error(id, code, text).await?;
            }
        }
        Ok(())
    }
}

/// The answer to a signing request whose task failed (panicked): an `Internal` error with the
/// request's id, so that every request is answered once.
fn signing_failed(
    e: &tokio::task::JoinError,
    requests: &mut HashMap<tokio::task::Id, Option<u16>>,
) -> Message {
    let id = requests.remove(&e.id()).flatten();
    Message::error(id, ErrorCode::Internal, "signing failed inside the harvester")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signing task that panics is answered with an Internal error carrying its own request
    /// id; the other requests keep theirs.
    #[tokio::test]
    async fn a_panicking_signer_still_answers_its_request() {
        let mut set: JoinSet<u16> = JoinSet::new();
        let mut requests = HashMap::new();
        for id in [7u16, 8] {
            let task = set.spawn_blocking(move || {
                assert_ne!(id, 8, "a signer that panics");
                id
            });
            requests.insert(task.id(), Some(id));
        }
        let mut answered = Vec::new();
        while let Some(done) = set.join_next_with_id().await {
            match done {
                Ok((task, id)) => {
                    assert_eq!(requests.remove(&task), Some(Some(id)));
                    answered.push((id, None));
                }
                Err(e) => {
                    let m = signing_failed(&e, &mut requests);
                    let Body::Error { code, .. } = m.body else { panic!("{m:?}") };
                    answered.push((m.id.expect("the request's id"), Some(code)));
                }
            }
        }
        answered.sort_by_key(|(id, _)| *id);
        assert_eq!(answered, [(7, None), (8, Some(ErrorCode::Internal))]);
        assert!(requests.is_empty());
    }
}
