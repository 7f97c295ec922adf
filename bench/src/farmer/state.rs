//! The farmer's bookkeeping, sans-IO: connections, challenges sent, qualities announced,
//! requests outstanding, and the verdict on every answer.
//!
//! The driver ([`super::net`], or a test) owns the sockets and the clock. It tells the
//! [`Farmer`] what happened (`on_connect`, `on_challenge`, `on_message`, `on_disconnect`,
//! each with `now`, the time since the run started) and sends the messages it gets back.
//! `finish` turns what is still outstanding into lost answers and returns the [`Stats`].
//!
//! Every table is bounded: connections by the driver, challenges by
//! [`FarmerConfig::challenges_max`], qualities by [`FarmerConfig::qualities_tracked_max`],
//! requests by [`FarmerConfig::requests_outstanding_max`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use protocol::{Body, Bytes32, Message, ProofOfSpace, RequestIds, G1, G2};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::checks::{check_proof, check_signature, Invalid, ProofExpectation};
use super::formula::{decide, FormulaParams};
use super::keys::FarmerKeys;
use super::report::Stats;

/// A harvester connection, numbered by the driver (never reused within a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "harvester #{}", self.0)
    }
}

/// Which answers to ask for (`--request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMode {
    /// The proof of every quality, then a partial and a header signature for every valid proof.
    All,
    /// As the original farmer decided: [`super::formula::decide`].
    Formula,
}

/// The farmer's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FarmerConfig {
    /// `--request`.
    pub request: RequestMode,
    /// The formula's parameters (used with [`RequestMode::Formula`]).
    pub formula: FormulaParams,
    /// Most requests waiting for an answer, over all connections (at most 65536: ids are u16
    /// per connection). A request beyond it is not sent, and counted as skipped.
    pub requests_outstanding_max: usize,
    /// Most distinct qualities remembered; later ones are counted as untracked.
    pub qualities_tracked_max: usize,
    /// Most challenges remembered; `on_challenge` beyond it panics (the driver's limit).
    pub challenges_max: usize,
    /// Requests outstanding on a connection that drops are counted apart, not as lost.
    pub allow_disconnects: bool,
    /// Seed of the 32-byte messages to sign (farmer target and header hashes).
    pub message_seed: u64,
    /// Keep a [`DumpRecord`] of every accepted proof and signature (`--dump`).
    pub dump: bool,
}

impl Default for FarmerConfig {
    fn default() -> Self {
        FarmerConfig {
            request: RequestMode::Formula,
            formula: FormulaParams::default(),
            requests_outstanding_max: 16384,
            qualities_tracked_max: 1 << 22,
            challenges_max: 1 << 24,
            allow_disconnects: false,
            message_seed: 0,
            dump: false,
        }
    }
}

/// An accepted answer, for an independent re-check (`scripts/oracle.py check-answers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpRecord {
    /// A proof that verified.
    Proof {
        /// sha256(pool_pubkey || plot_pubkey).
        plot_id: Bytes32,
        /// The plot's k.
        k: u8,
        /// The challenge.
        challenge: Bytes32,
        /// The proof bytes.
        proof: Vec<u8>,
        /// Its quality.
        quality: Bytes32,
    },
    /// A signature that verified (aggregated with the farmer's share for memo plots).
    Signature {
        /// The plot public key.
        public_key: G1,
        /// The signed message.
        message: Bytes32,
        /// The signature that verifies under `public_key`.
        signature: G2,
    },
}

impl DumpRecord {
    /// One JSON line of the dump file.
    pub fn json(&self) -> Value {
        match self {
            DumpRecord::Proof { plot_id, k, challenge, proof, quality } => json!({
                "kind": "proof", "plot_id": hex::encode(plot_id), "k": k,
                "challenge": hex::encode(challenge), "proof": hex::encode(proof),
                "quality": hex::encode(quality),
            }),
            DumpRecord::Signature { public_key, message, signature } => json!({
                "kind": "signature", "public_key": hex::encode(public_key),
                "message": hex::encode(message), "signature": hex::encode(signature),
            }),
        }
    }
}

#[derive(Debug, Clone)]
struct ChallengeInfo {
    sent_at: Duration,
    first_response_at: Option<Duration>,
    last_response_at: Option<Duration>,
    /// `ChallengeResponse`s from each connection, and whether its `ChallengeDone` came.
    by_conn: HashMap<ConnId, (u32, bool)>,
}

#[derive(Debug, Clone, Copy)]
struct QualityInfo {
    challenge: Bytes32,
    plot_size: u8,
    /// Set once the proof verified: signatures are checked against it.
    plot_pubkey: Option<G1>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Proof,
    Partial { message: Bytes32 },
    Header { message: Bytes32 },
}

impl RequestKind {
    fn name(self) -> &'static str {
        match self {
            RequestKind::Proof => "proof",
            RequestKind::Partial { .. } => "partial",
            RequestKind::Header { .. } => "header",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: RequestKind,
    quality: Bytes32,
    sent_at: Duration,
}

#[derive(Debug, Default)]
struct Conn {
    ids: RequestIds,
}

/// The farmer: see the module docs.
#[derive(Debug)]
pub struct Farmer {
    config: FarmerConfig,
    keys: FarmerKeys,
    conns: BTreeMap<ConnId, Conn>,
    challenges: HashMap<Bytes32, ChallengeInfo>,
    qualities: HashMap<Bytes32, QualityInfo>,
    pending: HashMap<(ConnId, u16), Pending>,
    messages_made: u64,
    stats: Stats,
    dump: Vec<DumpRecord>,
}

impl Farmer {
    /// A farmer with no connections.
    ///
    /// # Panics
    /// If `requests_outstanding_max` exceeds 65536 (ids are u16 per connection) or is 0, or
    /// the formula's `ips` is 0.
    pub fn new(config: FarmerConfig, keys: FarmerKeys) -> Farmer {
        assert!((1..=1 << 16).contains(&config.requests_outstanding_max));
        assert!(config.formula.ips > 0);
        Farmer {
            config,
            keys,
            conns: BTreeMap::new(),
            challenges: HashMap::new(),
            qualities: HashMap::new(),
            pending: HashMap::new(),
            messages_made: 0,
            stats: Stats::default(),
            dump: Vec::new(),
        }
    }

    /// A harvester connected (TLS done): returns the `HarvesterHandshake` to send it first.
    /// From now on it gets every challenge.
    ///
    /// # Panics
    /// If `conn` is already connected.
    pub fn on_connect(&mut self, conn: ConnId, _now: Duration) -> Message {
        let old = self.conns.insert(conn, Conn::default());
        assert!(old.is_none(), "{conn} connected twice");
        self.stats.harvesters += 1;
        Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: self.keys.pool_pubkeys.clone() },
        }
    }

    /// A harvester's connection ended. Its outstanding requests are lost (or, with
    /// `allow_disconnects`, counted as disconnected).
    pub fn on_disconnect(&mut self, conn: ConnId, _now: Duration) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        self.stats.disconnects += 1;
        let mut dropped: Vec<((ConnId, u16), Pending)> = Vec::new();
        self.pending.retain(|key, p| {
            if key.0 == conn {
                dropped.push((*key, *p));
            }
            key.0 != conn
        });
        dropped.sort_by_key(|(key, _)| key.1);
        for ((_, id), p) in dropped {
            if self.config.allow_disconnects {
                self.stats.disconnected_requests += 1;
            } else {
                self.stats.lost.push(|| {
                    format!(
                        "{conn}: {} request (id {id}, quality {}) outstanding when it disconnected",
                        p.kind.name(),
                        short(&p.quality)
                    )
                });
            }
        }
    }

    /// Broadcasts a challenge to every connected harvester.
    ///
    /// # Panics
    /// Beyond `challenges_max` distinct challenges.
    pub fn on_challenge(&mut self, challenge: Bytes32, now: Duration) -> Vec<(ConnId, Message)> {
        if !self.challenges.contains_key(&challenge) {
            assert!(self.challenges.len() < self.config.challenges_max, "too many challenges");
            self.challenges.insert(
                challenge,
                ChallengeInfo {
                    sent_at: now,
                    first_response_at: None,
                    last_response_at: None,
                    by_conn: HashMap::new(),
                },
            );
        }
        self.stats.challenges += 1;
        let msg = Message { id: None, body: Body::NewChallenge { challenge_hash: challenge } };
        self.conns.keys().map(|&c| (c, msg.clone())).collect()
    }

    /// The connection sent something the codec rejected; the driver closes it.
    pub fn on_protocol_violation(&mut self, conn: ConnId, reason: &str) {
        self.stats.invalid.push(|| format!("{conn}: undecodable frame: {reason}"));
    }

    /// A message from a harvester: checks it, counts it, and returns the requests to send.
    pub fn on_message(
        &mut self,
        conn: ConnId,
        msg: Message,
        now: Duration,
    ) -> Vec<(ConnId, Message)> {
        let mut out = Vec::new();
        if !self.conns.contains_key(&conn) {
            // The driver reports messages only for connected harvesters; a late one is dropped.
            return out;
        }
        match msg.body {
            Body::ChallengeResponse { challenge_hash, quality, plot_size } => self
                .on_challenge_response(
                    conn,
                    msg.id,
                    challenge_hash,
                    quality,
                    plot_size,
                    now,
                    &mut out,
                ),
            Body::ChallengeDone { challenge_hash, responses, .. } => {
                self.on_challenge_done(conn, msg.id, challenge_hash, responses)
            }
            Body::Error { code, message, .. } if msg.id.is_none() => {
                self.stats.errors.count(code, &message);
                self.stats.errors.unsolicited += 1;
            }
            body @ (Body::RespondProofOfSpace { .. }
            | Body::RespondPartialProof { .. }
            | Body::RespondHeaderSignature { .. }
            | Body::Error { .. }) => self.on_answer(conn, msg.id, body, now, &mut out),
            body @ (Body::HarvesterHandshake { .. }
            | Body::NewChallenge { .. }
            | Body::RequestProofOfSpace { .. }
            | Body::RequestHeaderSignature { .. }
            | Body::RequestPartialProof { .. }) => {
                let name = body.name();
                self.stats.invalid.push(|| format!("{conn}: sent {name}, a farmer's message"));
            }
        }
        out
    }

    /// Connected harvesters (each got the handshake).
    pub fn harvesters_ready(&self) -> usize {
        self.conns.len()
    }

    /// Requests waiting for an answer.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// False while three quarters of `requests_outstanding_max` are in use: the driver holds
    /// the next challenge back so that the requests it causes are not skipped.
    pub fn can_send_challenge(&self) -> bool {
        self.pending.len() < self.config.requests_outstanding_max / 4 * 3
    }

    /// The counts so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The records of accepted answers since the last call (empty unless `dump`).
    pub fn take_dump(&mut self) -> Vec<DumpRecord> {
        std::mem::take(&mut self.dump)
    }

    /// Ends the run: what is still outstanding is lost; the challenge latencies are recorded.
    /// Returns the counts (the farmer is left empty).
    pub fn finish(&mut self, _now: Duration) -> Stats {
        let mut left: Vec<((ConnId, u16), Pending)> = self.pending.drain().collect();
        left.sort_by_key(|(key, _)| *key);
        for ((conn, id), p) in left {
            self.stats.lost.push(|| {
                format!(
                    "{conn}: {} request (id {id}, quality {}) never answered",
                    p.kind.name(),
                    short(&p.quality)
                )
            });
        }
        let mut sent: Vec<&ChallengeInfo> = self.challenges.values().collect();
        sent.sort_by_key(|c| c.sent_at);
        for c in sent {
            if let (Some(first), Some(last)) = (c.first_response_at, c.last_response_at) {
                let l = &mut self.stats.latency;
                l.challenge_first_response.record(first.saturating_sub(c.sent_at));
                l.challenge_last_response.record(last.saturating_sub(c.sent_at));
            }
        }
        std::mem::take(&mut self.stats)
    }

    /// A harvester (with `harvester/2`) finished a challenge: its count must equal the
    /// `ChallengeResponse`s it sent for it, and nothing may follow.
    fn on_challenge_done(
        &mut self,
        conn: ConnId,
        id: Option<u16>,
        challenge: Bytes32,
        responses: u32,
    ) {
        self.stats.challenges_done += 1;
        if let Some(id) = id {
            self.stats.invalid.push(|| format!("{conn}: ChallengeDone with id {id}"));
            return;
        }
        let Some(info) = self.challenges.get_mut(&challenge) else {
            self.stats.invalid.push(|| {
                format!("{conn}: ChallengeDone for challenge {}, never sent", short(&challenge))
            });
            return;
        };
        let (count, done) = info.by_conn.entry(conn).or_default();
        let (count, twice) = (*count, *done);
        *done = true;
        if twice || count != responses {
            self.stats.invalid.push(|| {
                format!(
                    "{conn}: ChallengeDone for {} says {responses} responses, {count} came{}",
                    short(&challenge),
                    if twice { ", and came twice" } else { "" }
                )
            });
        }
    }

    #[allow(clippy::too_many_arguments)] // the fields of one message, unpacked
    fn on_challenge_response(
        &mut self,
        conn: ConnId,
        id: Option<u16>,
        challenge: Bytes32,
        quality: Bytes32,
        plot_size: u8,
        now: Duration,
        out: &mut Vec<(ConnId, Message)>,
    ) {
        self.stats.responses += 1;
        if let Some(id) = id {
            self.stats.invalid.push(|| format!("{conn}: ChallengeResponse with id {id}"));
            return;
        }
        let Some(info) = self.challenges.get_mut(&challenge) else {
            self.stats.invalid.push(|| {
                format!("{conn}: ChallengeResponse for challenge {}, never sent", short(&challenge))
            });
            return;
        };
        info.first_response_at.get_or_insert(now);
        info.last_response_at = Some(now);
        let (count, done) = info.by_conn.entry(conn).or_default();
        *count += 1;
        if *done {
            self.stats.invalid.push(|| {
                format!(
                    "{conn}: ChallengeResponse for {} after its ChallengeDone",
                    short(&challenge)
                )
            });
        }
        if self.qualities.contains_key(&quality) {
            self.stats.duplicates += 1;
            return;
        }
        if self.qualities.len() >= self.config.qualities_tracked_max {
            self.stats.untracked += 1;
            return;
        }
        self.qualities.insert(quality, QualityInfo { challenge, plot_size, plot_pubkey: None });
        self.stats.qualities += 1;
        let wanted = match self.config.request {
            RequestMode::All => true,
            RequestMode::Formula => decide(&self.config.formula, &quality, plot_size).proof,
        };
        if wanted {
            self.request(conn, RequestKind::Proof, quality, now, out);
        }
    }

    fn on_answer(
        &mut self,
        conn: ConnId,
        id: Option<u16>,
        body: Body,
        now: Duration,
        out: &mut Vec<(ConnId, Message)>,
    ) {
        let name = body.name();
        let Some(id) = id else {
            self.stats.invalid.push(|| format!("{conn}: {name} without an id"));
            return;
        };
        let Some(p) = self.pending.remove(&(conn, id)) else {
            self.stats.invalid.push(|| {
                format!(
                    "{conn}: {name} with id {id}, not a request outstanding on this \
                     connection (never sent, or already answered)"
                )
            });
            return;
        };
        // The id is ours (pending), so the connection's id table has it.
        let released = self.conns.get_mut(&conn).is_some_and(|c| c.ids.release(id));
        debug_assert!(released, "pending id {id} not in use on {conn}");
        let latency = now.saturating_sub(p.sent_at);
        match p.kind {
            RequestKind::Proof => self.stats.latency.proof.record(latency),
            RequestKind::Partial { .. } | RequestKind::Header { .. } => {
                self.stats.latency.signature.record(latency)
            }
        }
        let what =
            || format!("{conn}: {} answer (id {id}, quality {})", p.kind.name(), short(&p.quality));
        match (p.kind, body) {
            (kind, Body::Error { code, message, .. }) => {
                self.stats.errors.count(code, &message);
                match kind {
                    RequestKind::Proof => self.stats.proofs.errors += 1,
                    RequestKind::Partial { .. } => self.stats.partials.errors += 1,
                    RequestKind::Header { .. } => self.stats.headers.errors += 1,
                }
            }
            (RequestKind::Proof, Body::RespondProofOfSpace { quality, proof }) => {
                match self.check_proof(&p, &quality, &proof) {
                    Ok(()) => self.after_proof(conn, p.quality, &proof, now, out),
                    Err(e) => self.stats.invalid.push(|| format!("{}: {e}", what())),
                }
            }
            (
                RequestKind::Partial { message },
                Body::RespondPartialProof { quality, farmer_target_signature: sig },
            )
            | (
                RequestKind::Header { message },
                Body::RespondHeaderSignature { quality, header_hash_signature: sig },
            ) => {
                if let Err(e) = self.check_signature(&p, message, &quality, &sig) {
                    self.stats.invalid.push(|| format!("{}: {e}", what()));
                }
            }
            (_, body) => {
                let got = body.name();
                self.stats.invalid.push(|| format!("{}: answered with {got}", what()));
            }
        }
    }

    fn check_proof(
        &mut self,
        p: &Pending,
        quality: &Bytes32,
        proof: &ProofOfSpace,
    ) -> Result<(), Invalid> {
        // Requested qualities are tracked until the run ends.
        let info = self.qualities.get(&p.quality).copied().expect("a requested quality is tracked");
        let expected = ProofExpectation {
            quality: p.quality,
            challenge: info.challenge,
            plot_size: info.plot_size,
        };
        let plot_id = check_proof(&expected, &self.keys.pool_pubkeys, quality, proof)?;
        self.stats.proofs.valid += 1;
        if let Some(q) = self.qualities.get_mut(&p.quality) {
            q.plot_pubkey = Some(proof.plot_pubkey);
        }
        if self.config.dump {
            self.dump.push(DumpRecord::Proof {
                plot_id,
                k: proof.size,
                challenge: info.challenge,
                proof: proof.proof.clone(),
                quality: p.quality,
            });
        }
        Ok(())
    }

    fn after_proof(
        &mut self,
        conn: ConnId,
        quality: Bytes32,
        proof: &ProofOfSpace,
        now: Duration,
        out: &mut Vec<(ConnId, Message)>,
    ) {
        let (partial, header) = match self.config.request {
            RequestMode::All => (true, true),
            RequestMode::Formula => {
                let d = decide(&self.config.formula, &quality, proof.size);
                (d.partial, d.header)
            }
        };
        if partial {
            let message = self.next_message();
            self.request(conn, RequestKind::Partial { message }, quality, now, out);
        }
        if header {
            let message = self.next_message();
            self.request(conn, RequestKind::Header { message }, quality, now, out);
        }
    }

    fn check_signature(
        &mut self,
        p: &Pending,
        message: Bytes32,
        quality: &Bytes32,
        sig: &G2,
    ) -> Result<(), Invalid> {
        if *quality != p.quality {
            return Err(Invalid::WrongQuality { got: *quality, want: p.quality });
        }
        // Signatures are requested only after the quality's proof verified, which set the key.
        let plot_pubkey = self
            .qualities
            .get(&p.quality)
            .and_then(|q| q.plot_pubkey)
            .expect("a signature is requested only after a valid proof");
        let what = p.kind.name();
        let (kind, full) =
            check_signature(what, &self.keys.farmer_sk, &plot_pubkey, &message, sig)?;
        match p.kind {
            RequestKind::Partial { .. } => self.stats.partials.count_kind(kind),
            RequestKind::Header { .. } => self.stats.headers.count_kind(kind),
            RequestKind::Proof => unreachable!("not a signature request"),
        }
        if self.config.dump {
            self.dump.push(DumpRecord::Signature {
                public_key: plot_pubkey,
                message,
                signature: full,
            });
        }
        Ok(())
    }

    /// Sends `kind` for `quality` to `conn`, unless too many requests are outstanding.
    fn request(
        &mut self,
        conn: ConnId,
        kind: RequestKind,
        quality: Bytes32,
        now: Duration,
        out: &mut Vec<(ConnId, Message)>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if self.pending.len() >= self.config.requests_outstanding_max {
            self.stats.requests_skipped += 1;
            return;
        }
        // Fewer than 65536 requests are outstanding in all, so one connection has a free id.
        let Some(id) = c.ids.allocate() else {
            self.stats.requests_skipped += 1;
            return;
        };
        self.pending.insert((conn, id), Pending { kind, quality, sent_at: now });
        let body = match kind {
            RequestKind::Proof => {
                self.stats.proofs.requested += 1;
                Body::RequestProofOfSpace { quality }
            }
            RequestKind::Partial { message } => {
                self.stats.partials.requested += 1;
                Body::RequestPartialProof { quality, farmer_target_hash: message }
            }
            RequestKind::Header { message } => {
                self.stats.headers.requested += 1;
                Body::RequestHeaderSignature { quality, header_hash: message }
            }
        };
        out.push((conn, Message { id: Some(id), body }));
    }

    /// The next 32-byte message to sign: sha256("farmer-sim message" || seed || n), LE.
    fn next_message(&mut self) -> Bytes32 {
        let mut h = Sha256::new();
        h.update(b"farmer-sim message");
        h.update(self.config.message_seed.to_le_bytes());
        h.update(self.messages_made.to_le_bytes());
        self.messages_made += 1;
        h.finalize().into()
    }
}

/// `challenge_i = sha256(seed_le || i_le)`, both u64 little-endian (`--seed`).
pub fn challenge_hash(seed: u64, index: u64) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(index.to_le_bytes());
    h.finalize().into()
}

fn short(bytes: &[u8]) -> String {
    format!("{}…", hex::encode(&bytes[..bytes.len().min(4)]))
}

#[cfg(test)]
mod tests;
