//! The harvester's side of one farmer connection: readiness, challenges in flight and the
//! bounded map from announced qualities to the plot that answers them.
//!
//! The session never does I/O and never reads a clock: the daemon passes each decoded message
//! with `now` and gets back an [`Input`] saying what to do. Every operation is O(1) amortized.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::codec::CodecError;
use crate::message::{Body, Bytes32, ErrorCode, Message, G1};

/// Limits of one session. See `docs/protocol.md` ("Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most challenges being looked up at once; more are answered with `Overloaded`.
    pub challenges_in_flight_max: usize,
    /// The qualities of the last this-many challenges stay answerable (at least 1 is kept).
    pub challenges_remembered_max: usize,
    /// Most entries in the quality map, over all remembered challenges.
    pub qualities_max: usize,
    /// A challenge's qualities expire this long after its `NewChallenge` arrived; a challenge
    /// still in flight by then is treated as done.
    pub quality_ttl: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            challenges_in_flight_max: 64,
            challenges_remembered_max: 256,
            qualities_max: 1 << 20,
            quality_ttl: Duration::from_secs(600),
        }
    }
}

/// Which message a [`Input::Sign`] signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignKind {
    /// `RequestHeaderSignature`: answer with `RespondHeaderSignature`.
    Header,
    /// `RequestPartialProof`: answer with `RespondPartialProof`.
    Partial,
}

/// What the daemon must do after a message from the farmer. The set is complete: a new
/// variant is a change every driver has to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P> {
    /// (Re)select the plots farmed for these pool keys. The first handshake makes the session
    /// ready; later ones re-select, and qualities already announced stay answerable.
    Select {
        /// The keys from the handshake.
        pool_pubkeys: Vec<G1>,
    },
    /// Look the challenge up in every selected plot; the session has recorded it as in flight.
    /// Announce each quality through [`HarvesterSession::on_quality`], then call
    /// [`HarvesterSession::on_challenge_done`].
    Challenge {
        /// The challenge.
        challenge_hash: Bytes32,
    },
    /// Fetch the full proof and answer `RespondProofOfSpace` with `id` (or an Error with `id`:
    /// `LookupFailed`, `PlotUnavailable`, `TimedOut`).
    Proof {
        /// The request's id, to echo.
        id: Option<u16>,
        /// The requested quality.
        quality: Bytes32,
        /// The challenge the quality answers.
        challenge_hash: Bytes32,
        /// The plot that announced the quality.
        plot: P,
        /// The quality's index in the plot's answers for the challenge.
        index: u32,
    },
    /// Sign `message` with the plot's key and answer by `kind` with `id` (or an Error with `id`:
    /// `NoSigningKey`, `PlotUnavailable`).
    Sign {
        /// The request's id, to echo.
        id: Option<u16>,
        /// The requested quality.
        quality: Bytes32,
        /// The plot that announced the quality.
        plot: P,
        /// The 32 bytes to sign (header hash or farmer target hash).
        message: Bytes32,
        /// Which request this is.
        kind: SignKind,
    },
    /// The session answered itself (an Error: `NotReady`, `UnknownQuality`, `Overloaded`,
    /// `DuplicateChallenge`):
    /// send it and keep the connection.
    Reply(Message),
    /// The farmer sent an Error; log it.
    FarmerError {
        /// The farmer's code.
        code: ErrorCode,
        /// The farmer's text.
        message: String,
    },
    /// The farmer broke the protocol: send `reply` (a `ProtocolViolation` Error), then close.
    Close {
        /// The Error to send before closing.
        reply: Message,
        /// Why, for the log.
        reason: String,
    },
}

/// The plot behind one announced quality.
#[derive(Debug)]
struct QualityEntry<P> {
    /// The sequence number of the challenge that owns this entry.
    seq: u64,
    challenge_hash: Bytes32,
    plot: P,
    index: u32,
}

/// A challenge whose qualities are still answerable.
#[derive(Debug)]
struct Remembered {
    seq: u64,
    challenge_hash: Bytes32,
    arrived_at: Duration,
    in_flight: bool,
    /// The qualities it owns in the quality map.
    qualities: Vec<Bytes32>,
}

/// The harvester's state for one farmer connection. `P` is the daemon's reference to a plot.
#[derive(Debug)]
pub struct HarvesterSession<P> {
    limits: SessionLimits,
    ready: bool,
    pool_pubkeys: Vec<G1>,
    /// Remembered challenges, oldest first; `challenges[i].seq == challenges[0].seq + i`.
    challenges: VecDeque<Remembered>,
    /// Sequence number of the next challenge.
    seq_next: u64,
    /// Challenge hash -> sequence number, for every remembered challenge.
    seqs: HashMap<Bytes32, u64>,
    qualities: HashMap<Bytes32, QualityEntry<P>>,
    /// Remembered challenges with `in_flight` set.
    in_flight: usize,
    /// The latest `now` seen; time never runs backwards inside the session.
    now: Duration,
}

impl<P: Clone> HarvesterSession<P> {
    /// A session that is not ready yet (it waits for the farmer's handshake).
    pub fn new(limits: SessionLimits) -> Self {
        HarvesterSession {
            limits,
            ready: false,
            pool_pubkeys: Vec::new(),
            challenges: VecDeque::new(),
            seq_next: 0,
            seqs: HashMap::new(),
            qualities: HashMap::new(),
            in_flight: 0,
            now: Duration::ZERO,
        }
    }

    /// Handles one message from the farmer. `now` is monotonic time since any fixed start.
    pub fn on_message(&mut self, msg: Message, now: Duration) -> Input<P> {
        self.expire(now);
        let Message { id, body } = msg;
        match body {
            Body::HarvesterHandshake { pool_pubkeys } => {
                self.ready = true;
                self.pool_pubkeys.clone_from(&pool_pubkeys);
                Input::Select { pool_pubkeys }
            }
            Body::NewChallenge { challenge_hash } => self.on_new_challenge(id, challenge_hash),
            Body::RequestProofOfSpace { quality } => match self.entry(&quality) {
                Ok(e) => Input::Proof {
                    id,
                    quality,
                    challenge_hash: e.challenge_hash,
                    plot: e.plot.clone(),
                    index: e.index,
                },
                Err(code) => Input::Reply(refusal(id, code, &quality)),
            },
            Body::RequestHeaderSignature { quality, header_hash } => {
                self.sign(id, quality, header_hash, SignKind::Header)
            }
            Body::RequestPartialProof { quality, farmer_target_hash } => {
                self.sign(id, quality, farmer_target_hash, SignKind::Partial)
            }
            Body::Error { code, message, data: _ } => Input::FarmerError { code, message },
            Body::ChallengeResponse { .. }
            | Body::RespondProofOfSpace { .. }
            | Body::RespondHeaderSignature { .. }
            | Body::RespondPartialProof { .. }
            | Body::ChallengeDone { .. } => {
                let reason =
                    format!("the farmer sent {}, which only the harvester sends", body.name());
                let reply = Message::error(id, ErrorCode::ProtocolViolation, reason.clone());
                Input::Close { reply, reason }
            }
        }
    }

    /// The `ProtocolViolation` Error to send before closing after a decode error.
    pub fn on_codec_error(&mut self, e: &CodecError) -> Message {
        Message::error(None, ErrorCode::ProtocolViolation, e.to_string())
    }

    /// Records `quality -> (challenge, plot, index)` and returns the `ChallengeResponse` to send.
    /// `None` (send nothing) if the quality was already announced, the challenge is not in
    /// flight, or the map is full and only this challenge could make room.
    pub fn on_quality(
        &mut self,
        challenge_hash: Bytes32,
        quality: Bytes32,
        plot_size: u8,
        plot: P,
        index: u32,
        now: Duration,
    ) -> Option<Message> {
        self.expire(now);
        if self.qualities.contains_key(&quality) {
            return None;
        }
        let seq = *self.seqs.get(&challenge_hash)?;
        if !self.remembered_mut(seq)?.in_flight {
            return None;
        }
        // Make room by dropping the oldest challenges, never the one being answered.
        while self.qualities.len() >= self.limits.qualities_max {
            match self.challenges.front() {
                Some(oldest) if oldest.seq != seq => self.evict_oldest(),
                _ => return None,
            }
        }
        // Still remembered: only older challenges were evicted above.
        self.remembered_mut(seq)?.qualities.push(quality);
        self.qualities.insert(quality, QualityEntry { seq, challenge_hash, plot, index });
        self.check_invariants();
        Some(Message {
            id: None,
            body: Body::ChallengeResponse { challenge_hash, quality, plot_size },
        })
    }

    /// All disks answered (or timed out): the challenge is no longer in flight; its qualities
    /// stay answerable. Unknown or already finished challenges are ignored.
    pub fn on_challenge_done(&mut self, challenge_hash: Bytes32) {
        let Some(&seq) = self.seqs.get(&challenge_hash) else { return };
        if let Some(c) = self.remembered_mut(seq) {
            if c.in_flight {
                c.in_flight = false;
                self.in_flight -= 1;
            }
        }
    }

    /// Drops the challenges (and their qualities) that arrived more than `quality_ttl` before
    /// `now`. Also called by [`Self::on_message`] and [`Self::on_quality`].
    pub fn expire(&mut self, now: Duration) {
        self.now = self.now.max(now);
        while let Some(oldest) = self.challenges.front() {
            if self.now.saturating_sub(oldest.arrived_at) <= self.limits.quality_ttl {
                break;
            }
            self.evict_oldest();
        }
    }

    /// True once the farmer's first handshake arrived.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The pool keys of the latest handshake.
    pub fn pool_pubkeys(&self) -> &[G1] {
        &self.pool_pubkeys
    }

    /// Challenges recorded as in flight.
    pub fn challenges_in_flight(&self) -> usize {
        self.in_flight
    }

    /// Entries in the quality map.
    pub fn qualities_len(&self) -> usize {
        self.qualities.len()
    }

    /// Challenges whose qualities are remembered (in flight or done).
    pub fn challenges_remembered(&self) -> usize {
        self.challenges.len()
    }

    /// The limits this session enforces.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    fn on_new_challenge(&mut self, id: Option<u16>, challenge_hash: Bytes32) -> Input<P> {
        let refuse = |code, text: &str| {
            let message = format!("{text} (challenge {})", hex(&challenge_hash));
            let body = Body::Error { code, message, data: Some(challenge_hash.to_vec()) };
            Input::Reply(Message { id, body })
        };
        if !self.ready {
            return refuse(ErrorCode::NotReady, "NewChallenge before the HarvesterHandshake");
        }
        if self.seqs.contains_key(&challenge_hash) {
            return refuse(
                ErrorCode::DuplicateChallenge,
                "challenge already received on this connection; not looked up again",
            );
        }
        if self.in_flight >= self.limits.challenges_in_flight_max {
            let text = format!(
                "{} challenges in flight, the limit is {}",
                self.in_flight, self.limits.challenges_in_flight_max
            );
            return refuse(ErrorCode::Overloaded, &text);
        }
        let seq = self.seq_next;
        self.seq_next += 1;
        self.challenges.push_back(Remembered {
            seq,
            challenge_hash,
            arrived_at: self.now,
            in_flight: true,
            qualities: Vec::new(),
        });
        self.seqs.insert(challenge_hash, seq);
        self.in_flight += 1;
        while self.challenges.len() > self.limits.challenges_remembered_max.max(1) {
            self.evict_oldest();
        }
        self.check_invariants();
        Input::Challenge { challenge_hash }
    }

    fn sign(
        &mut self,
        id: Option<u16>,
        quality: Bytes32,
        message: Bytes32,
        kind: SignKind,
    ) -> Input<P> {
        match self.entry(&quality) {
            Ok(e) => Input::Sign { id, quality, plot: e.plot.clone(), message, kind },
            Err(code) => Input::Reply(refusal(id, code, &quality)),
        }
    }

    /// The entry of an announced quality, or the Error answering the request.
    fn entry(&self, quality: &Bytes32) -> Result<&QualityEntry<P>, ErrorCode> {
        if !self.ready {
            return Err(ErrorCode::NotReady);
        }
        self.qualities.get(quality).ok_or(ErrorCode::UnknownQuality)
    }

    fn remembered_mut(&mut self, seq: u64) -> Option<&mut Remembered> {
        let oldest = self.challenges.front()?.seq;
        let i = usize::try_from(seq.checked_sub(oldest)?).ok()?;
        self.challenges.get_mut(i)
    }

    /// Forgets the oldest challenge and its qualities.
    fn evict_oldest(&mut self) {
        let Some(oldest) = self.challenges.pop_front() else { return };
        if self.seqs.get(&oldest.challenge_hash) == Some(&oldest.seq) {
            self.seqs.remove(&oldest.challenge_hash);
        }
        if oldest.in_flight {
            self.in_flight -= 1;
        }
        for quality in &oldest.qualities {
            if self.qualities.get(quality).is_some_and(|e| e.seq == oldest.seq) {
                self.qualities.remove(quality);
            }
        }
    }

    fn check_invariants(&self) {
        debug_assert!(self.in_flight <= self.limits.challenges_in_flight_max);
        debug_assert!(self.qualities.len() <= self.limits.qualities_max);
        debug_assert!(self.challenges.len() <= self.limits.challenges_remembered_max.max(1));
        debug_assert_eq!(self.seqs.len(), self.challenges.len());
    }
}

/// The Error answering a request the session refuses (`NotReady` or `UnknownQuality`).
fn refusal(id: Option<u16>, code: ErrorCode, quality: &Bytes32) -> Message {
    let text = match code {
        ErrorCode::NotReady => "request before the HarvesterHandshake".to_owned(),
        _ => format!("quality {} unknown on this connection or expired", hex(quality)),
    };
    Message::error(id, code, text)
}

/// Lower-case hex, for error texts.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    type Session = HarvesterSession<u32>;

    const T0: Duration = Duration::from_secs(1000);

    fn msg(id: Option<u16>, body: Body) -> Message {
        Message { id, body }
    }

    fn handshake() -> Message {
        msg(None, Body::HarvesterHandshake { pool_pubkeys: vec![[7; 48]] })
    }

    fn challenge(c: u8) -> Message {
        msg(None, Body::NewChallenge { challenge_hash: [c; 32] })
    }

    fn q(i: u32) -> Bytes32 {
        let mut q = [0xaa; 32];
        q[..4].copy_from_slice(&i.to_be_bytes());
        q
    }

    fn ready(limits: SessionLimits) -> Session {
        let mut s = Session::new(limits);
        assert!(matches!(s.on_message(handshake(), T0), Input::Select { .. }));
        s
    }

    fn error_code(input: &Input<u32>) -> (Option<u16>, ErrorCode) {
        match input {
            Input::Reply(Message { id, body: Body::Error { code, .. } }) => (*id, *code),
            other => panic!("expected an Error reply, got {other:?}"),
        }
    }

    fn proof_request(id: u16, quality: Bytes32) -> Message {
        msg(Some(id), Body::RequestProofOfSpace { quality })
    }

    #[test]
    fn not_ready_before_handshake() {
        let mut s = Session::new(SessionLimits::default());
        assert!(!s.is_ready());
        let input = s.on_message(msg(Some(4), challenge(1).body), T0);
        assert_eq!(error_code(&input), (Some(4), ErrorCode::NotReady));
        let Input::Reply(Message { body: Body::Error { data, .. }, .. }) = &input else {
            unreachable!()
        };
        assert_eq!(data.as_deref(), Some(&[1; 32][..]), "the challenge is named in data");
        assert_eq!(s.challenges_in_flight(), 0);
        for body in [
            Body::RequestProofOfSpace { quality: q(1) },
            Body::RequestHeaderSignature { quality: q(1), header_hash: [0; 32] },
            Body::RequestPartialProof { quality: q(1), farmer_target_hash: [0; 32] },
        ] {
            assert_eq!(
                error_code(&s.on_message(msg(Some(9), body), T0)),
                (Some(9), ErrorCode::NotReady)
            );
        }
    }

    #[test]
    fn handshake_then_rehandshake() {
        let mut s = Session::new(SessionLimits::default());
        let keys = vec![[1; 48], [2; 48]];
        let input =
            s.on_message(msg(None, Body::HarvesterHandshake { pool_pubkeys: keys.clone() }), T0);
        assert_eq!(input, Input::Select { pool_pubkeys: keys.clone() });
        assert!(s.is_ready());
        assert_eq!(s.pool_pubkeys(), &keys[..]);
        assert_eq!(s.on_message(challenge(1), T0), Input::Challenge { challenge_hash: [1; 32] });
        assert!(s.on_quality([1; 32], q(1), 32, 5, 0, T0).is_some());
        let input =
            s.on_message(msg(None, Body::HarvesterHandshake { pool_pubkeys: vec![[3; 48]] }), T0);
        assert_eq!(input, Input::Select { pool_pubkeys: vec![[3; 48]] });
        assert_eq!(s.pool_pubkeys(), &[[3; 48]][..]);
        assert!(s.is_ready());
        // Announced qualities and challenges in flight survive a re-handshake.
        assert!(matches!(s.on_message(proof_request(1, q(1)), T0), Input::Proof { plot: 5, .. }));
        assert_eq!(s.challenges_in_flight(), 1);
    }

    #[test]
    fn challenge_quality_and_requests() {
        let mut s = ready(SessionLimits::default());
        assert_eq!(s.on_message(challenge(1), T0), Input::Challenge { challenge_hash: [1; 32] });
        assert_eq!(s.challenges_in_flight(), 1);
        let response = s.on_quality([1; 32], q(1), 32, 77, 3, T0);
        assert_eq!(
            response,
            Some(msg(
                None,
                Body::ChallengeResponse { challenge_hash: [1; 32], quality: q(1), plot_size: 32 }
            ))
        );
        assert_eq!(
            s.on_message(proof_request(0xbeef, q(1)), T0),
            Input::Proof {
                id: Some(0xbeef),
                quality: q(1),
                challenge_hash: [1; 32],
                plot: 77,
                index: 3
            }
        );
        let header =
            msg(Some(2), Body::RequestHeaderSignature { quality: q(1), header_hash: [9; 32] });
        assert_eq!(
            s.on_message(header, T0),
            Input::Sign {
                id: Some(2),
                quality: q(1),
                plot: 77,
                message: [9; 32],
                kind: SignKind::Header
            }
        );
        let partial =
            msg(Some(3), Body::RequestPartialProof { quality: q(1), farmer_target_hash: [8; 32] });
        assert_eq!(
            s.on_message(partial, T0),
            Input::Sign {
                id: Some(3),
                quality: q(1),
                plot: 77,
                message: [8; 32],
                kind: SignKind::Partial
            }
        );
        s.on_challenge_done([1; 32]);
        assert_eq!(s.challenges_in_flight(), 0);
        s.on_challenge_done([1; 32]);
        s.on_challenge_done([2; 32]);
        assert_eq!(s.challenges_in_flight(), 0);
        // Done: still answerable, but no new qualities.
        assert!(matches!(s.on_message(proof_request(1, q(1)), T0), Input::Proof { .. }));
        assert_eq!(s.on_quality([1; 32], q(2), 32, 77, 4, T0), None);
        // A challenge never received takes no qualities.
        assert_eq!(s.on_quality([5; 32], q(3), 32, 77, 4, T0), None);
        assert_eq!(s.qualities_len(), 1);
    }

    #[test]
    fn unknown_quality_echoes_id() {
        let mut s = ready(SessionLimits::default());
        let input = s.on_message(proof_request(0x1234, q(1)), T0);
        assert_eq!(error_code(&input), (Some(0x1234), ErrorCode::UnknownQuality));
        let header =
            msg(Some(7), Body::RequestHeaderSignature { quality: q(1), header_hash: [0; 32] });
        assert_eq!(error_code(&s.on_message(header, T0)), (Some(7), ErrorCode::UnknownQuality));
        let partial =
            msg(None, Body::RequestPartialProof { quality: q(1), farmer_target_hash: [0; 32] });
        assert_eq!(error_code(&s.on_message(partial, T0)), (None, ErrorCode::UnknownQuality));
    }

    #[test]
    fn overloaded_at_the_limit_and_duplicates() {
        let limits = SessionLimits { challenges_in_flight_max: 3, ..SessionLimits::default() };
        let mut s = ready(limits);
        for c in 1..=3 {
            assert!(matches!(s.on_message(challenge(c), T0), Input::Challenge { .. }));
        }
        assert_eq!(s.challenges_in_flight(), 3);
        let input = s.on_message(msg(Some(5), challenge(4).body), T0);
        assert_eq!(error_code(&input), (Some(5), ErrorCode::Overloaded));
        assert_eq!(s.challenges_in_flight(), 3);
        // A repeat of a remembered challenge (in flight or done) is refused, not re-run.
        assert_eq!(error_code(&s.on_message(challenge(2), T0)).1, ErrorCode::DuplicateChallenge);
        s.on_challenge_done([2; 32]);
        assert_eq!(error_code(&s.on_message(challenge(2), T0)).1, ErrorCode::DuplicateChallenge);
        // A challenge refused as Overloaded was not remembered: it is looked up when sent again.
        assert!(matches!(s.on_message(challenge(4), T0), Input::Challenge { .. }));
        assert_eq!(s.challenges_in_flight(), 3);
    }

    #[test]
    fn duplicate_quality_suppressed() {
        let mut s = ready(SessionLimits::default());
        s.on_message(challenge(1), T0);
        s.on_message(challenge(2), T0);
        assert!(s.on_quality([1; 32], q(1), 32, 1, 0, T0).is_some());
        assert_eq!(s.on_quality([1; 32], q(1), 32, 1, 0, T0), None);
        assert_eq!(s.on_quality([2; 32], q(1), 32, 2, 0, T0), None, "even for another challenge");
        assert_eq!(s.qualities_len(), 1);
        assert!(matches!(s.on_message(proof_request(1, q(1)), T0), Input::Proof { plot: 1, .. }));
    }

    #[test]
    fn expiry_by_ttl() {
        let ttl = Duration::from_secs(600);
        let limits = SessionLimits { quality_ttl: ttl, ..SessionLimits::default() };
        let mut s = ready(limits);
        s.on_message(challenge(1), T0);
        s.on_quality([1; 32], q(1), 32, 1, 0, T0 + Duration::from_secs(5));
        s.on_challenge_done([1; 32]);
        s.on_message(challenge(2), T0 + Duration::from_secs(100));
        s.on_quality([2; 32], q(2), 32, 2, 0, T0 + Duration::from_secs(100));
        // At exactly the ttl, still answerable.
        assert!(matches!(s.on_message(proof_request(1, q(1)), T0 + ttl), Input::Proof { .. }));
        let later = T0 + ttl + Duration::from_millis(1);
        assert_eq!(
            error_code(&s.on_message(proof_request(1, q(1)), later)).1,
            ErrorCode::UnknownQuality
        );
        assert_eq!(s.qualities_len(), 1);
        assert_eq!(s.challenges_in_flight(), 1, "challenge 2 is still in flight");
        // An in-flight challenge older than the ttl is treated as done.
        s.expire(T0 + Duration::from_secs(701));
        assert_eq!(s.challenges_in_flight(), 0);
        assert_eq!(s.qualities_len(), 0);
        assert_eq!(s.on_quality([2; 32], q(3), 32, 2, 1, T0 + Duration::from_secs(701)), None);
        // Time running backwards does not resurrect anything or break the order.
        s.on_message(challenge(3), T0);
        assert_eq!(s.challenges_remembered(), 1);
    }

    #[test]
    fn expiry_by_challenge_count() {
        let limits = SessionLimits { challenges_remembered_max: 4, ..SessionLimits::default() };
        let mut s = ready(limits);
        for c in 0..10u8 {
            s.on_message(challenge(c), T0);
            assert!(s.on_quality([c; 32], q(u32::from(c)), 32, u32::from(c), 0, T0).is_some());
            s.on_challenge_done([c; 32]);
            assert!(s.challenges_remembered() <= 4);
        }
        assert_eq!(s.qualities_len(), 4);
        for c in 0..6u32 {
            assert_eq!(
                error_code(&s.on_message(proof_request(1, q(c)), T0)).1,
                ErrorCode::UnknownQuality
            );
        }
        for c in 6..10u32 {
            assert!(matches!(s.on_message(proof_request(1, q(c)), T0), Input::Proof { .. }));
        }
        // A forgotten challenge may be sent again and is looked up again.
        assert!(matches!(s.on_message(challenge(0), T0), Input::Challenge { .. }));
    }

    #[test]
    fn eviction_drops_in_flight_challenges_too() {
        let limits = SessionLimits { challenges_remembered_max: 2, ..SessionLimits::default() };
        let mut s = ready(limits);
        for c in 0..3 {
            s.on_message(challenge(c), T0);
        }
        assert_eq!(s.challenges_in_flight(), 2);
        assert_eq!(s.on_quality([0; 32], q(0), 32, 0, 0, T0), None);
    }

    #[test]
    fn qualities_max_drops_oldest_challenges() {
        let limits = SessionLimits { qualities_max: 10, ..SessionLimits::default() };
        let mut s = ready(limits);
        s.on_message(challenge(1), T0);
        for i in 0..6 {
            assert!(s.on_quality([1; 32], q(i), 32, 1, i, T0).is_some());
        }
        s.on_message(challenge(2), T0);
        for i in 100..106 {
            assert!(s.on_quality([2; 32], q(i), 32, 2, i, T0).is_some());
        }
        // Challenge 1 (the oldest) was dropped whole to make room.
        assert_eq!(s.qualities_len(), 6);
        assert_eq!(s.challenges_remembered(), 1);
        assert_eq!(
            error_code(&s.on_message(proof_request(1, q(0)), T0)).1,
            ErrorCode::UnknownQuality
        );
        for i in 106..110 {
            assert!(s.on_quality([2; 32], q(i), 32, 2, i, T0).is_some());
        }
        // Full, and only challenge 2 could make room: refused.
        assert_eq!(s.on_quality([2; 32], q(110), 32, 2, 110, T0), None);
        assert_eq!(s.qualities_len(), 10);
    }

    #[test]
    fn close_on_harvester_only_messages() {
        let bodies = [
            Body::ChallengeResponse { challenge_hash: [0; 32], quality: [0; 32], plot_size: 32 },
            Body::RespondProofOfSpace {
                quality: [0; 32],
                proof: crate::ProofOfSpace {
                    challenge_hash: [0; 32],
                    pool_pubkey: [0; 48],
                    plot_pubkey: [0; 48],
                    size: 32,
                    proof: vec![0; 256],
                },
            },
            Body::RespondHeaderSignature { quality: [0; 32], header_hash_signature: [0; 96] },
            Body::RespondPartialProof { quality: [0; 32], farmer_target_signature: [0; 96] },
        ];
        for body in bodies {
            let name = body.name();
            for mut s in [Session::new(SessionLimits::default()), ready(SessionLimits::default())] {
                match s.on_message(msg(Some(3), body.clone()), T0) {
                    Input::Close { reply, reason } => {
                        assert!(reason.contains(name), "{reason}");
                        let Body::Error { code, .. } = reply.body else { panic!("an Error") };
                        assert_eq!(code, ErrorCode::ProtocolViolation);
                        assert_eq!(reply.id, Some(3));
                    }
                    other => panic!("{name}: expected Close, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn farmer_error_and_codec_error() {
        let mut s = Session::new(SessionLimits::default());
        let e = msg(
            Some(1),
            Body::Error { code: ErrorCode::Other(77), message: "hm".into(), data: None },
        );
        assert_eq!(
            s.on_message(e, T0),
            Input::FarmerError { code: ErrorCode::Other(77), message: "hm".into() }
        );
        let reply = s.on_codec_error(&CodecError::UnknownMessageType(9));
        assert_eq!(
            reply,
            Message::error(None, ErrorCode::ProtocolViolation, "unknown message type 9")
        );
    }

    #[test]
    fn bounded_map_under_100k_qualities() {
        let limits = SessionLimits {
            challenges_in_flight_max: 8,
            challenges_remembered_max: 32,
            qualities_max: 5_000,
            quality_ttl: Duration::from_secs(600),
        };
        let mut s = ready(limits);
        let mut now = T0;
        let mut announced = 0u32;
        for c in 0..1_000u32 {
            let mut hash = [0; 32];
            hash[..4].copy_from_slice(&c.to_be_bytes());
            assert!(matches!(
                s.on_message(msg(None, Body::NewChallenge { challenge_hash: hash }), now),
                Input::Challenge { .. }
            ));
            for i in 0..100 {
                if s.on_quality(hash, q(c * 100 + i), 32, c, i, now).is_some() {
                    announced += 1;
                }
                assert!(s.qualities_len() <= 5_000);
            }
            s.on_challenge_done(hash);
            assert!(s.challenges_remembered() <= 32);
            assert_eq!(s.challenges_in_flight(), 0);
            now += Duration::from_millis(10);
        }
        assert_eq!(announced, 100_000);
        assert_eq!(s.qualities_len(), 3_200);
        // The newest are answerable, with the right plot.
        assert!(matches!(
            s.on_message(proof_request(1, q(99_999)), now),
            Input::Proof { plot: 999, index: 99, .. }
        ));
        // After the ttl everything is gone.
        s.expire(now + Duration::from_secs(601));
        assert_eq!(s.qualities_len(), 0);
        assert_eq!(s.challenges_remembered(), 0);
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
