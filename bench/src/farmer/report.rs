//! What a run counted and measured ([`Stats`]), and the report made of it: text for stdout,
//! JSON for `--json`.
//!
//! The JSON layout (every count a u64; latencies in milliseconds):
//!
//! ```text
//! { "passed", "interrupted", "elapsed_secs", "settings": {...},
//!   "harvesters", "harvesters_wanted", "disconnects", "challenges", "responses",
//!   "challenges_done", "qualities",
//!   "duplicates", "untracked", "requests_skipped",
//!   "proofs": {"requested", "valid", "errors"},
//!   "signatures": {"partial": {"requested", "valid", "errors", "keys_file", "memo"},
//!                  "header": {...same...}, "kinds": {"keys_file", "memo"}},
//!   "errors": {"total", "unsolicited", "by_code": [{"code", "name", "count"}],
//!              "by_message": [{"code", "message", "count"}], "messages_dropped"},
//!   "invalid", "invalid_reasons": [..20], "lost", "lost_reasons": [..20],
//!   "disconnected_requests",
//!   "latency_ms": {"challenge_first_response" | "challenge_last_response" | "proof" |
//!                  "signature": {"count", "p50", "p90", "p99", "p99_9", "max"}} }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use protocol::ErrorCode;
use serde_json::{json, Value};

use super::checks::SignatureKind;

/// Reasons kept (and printed) for invalid and for lost answers; the counts go on.
pub const REASONS_KEPT_MAX: usize = 20;
/// Distinct (code, message) pairs of `Error` answers kept; later ones are only counted.
pub const ERROR_MESSAGES_KEPT_MAX: usize = 64;
/// Characters of an error message kept.
pub const ERROR_MESSAGE_CHARS_MAX: usize = 200;
/// Largest latency recorded, in microseconds (one hour); longer ones are clamped.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram_us: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram, 1 µs .. [`LATENCY_US_MAX`], 3 significant digits.
    pub fn new() -> Latency {
        // Constant, valid bounds (low 1 <= high/2, 3 significant figures): cannot fail.
        let histogram_us = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
        Latency { histogram_us }
    }

    /// Records one latency (clamped to 1 µs .. [`LATENCY_US_MAX`]).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram_us.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram_us.len()
    }

    /// Percentiles in milliseconds (all zero when empty).
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram_us;
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Percentiles of one [`Latency`], in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p99_9_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    fn json(&self) -> Value {
        json!({"count": self.count, "p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms,
               "p99_9": self.p99_9_ms, "max": self.max_ms})
    }
}

/// The four latencies of the report.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// `NewChallenge` sent → its first `ChallengeResponse` (per challenge that had any).
    pub challenge_first_response: Latency,
    /// `NewChallenge` sent → its last `ChallengeResponse` (per challenge that had any).
    pub challenge_last_response: Latency,
    /// `RequestProofOfSpace` → its answer (proof or `Error`).
    pub proof: Latency,
    /// `RequestPartialProof` / `RequestHeaderSignature` → its answer.
    pub signature: Latency,
}

/// Counts of one kind of request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests sent.
    pub requested: u64,
    /// Answers that passed every check.
    pub valid: u64,
    /// Answered with an `Error`.
    pub errors: u64,
    /// Valid signatures made with the whole plot key (keys-file plots).
    pub keys_file: u64,
    /// Valid signatures that needed the farmer's share (memo plots).
    pub memo: u64,
}

impl RequestCounts {
    /// Counts a valid signature of this kind.
    pub fn count_kind(&mut self, kind: SignatureKind) {
        self.valid += 1;
        match kind {
            SignatureKind::KeysFile => self.keys_file += 1,
            SignatureKind::Memo => self.memo += 1,
        }
    }
}

/// `Error` messages from harvesters, by code and by (code, message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Every `Error` received.
    pub total: u64,
    /// `Error`s that answered no request of ours (id None or not outstanding is *invalid*
    /// only for id Some; id None errors, e.g. `Overloaded` for a challenge, land here).
    pub unsolicited: u64,
    /// By code: name and count.
    pub by_code: BTreeMap<i16, (&'static str, u64)>,
    /// By (code, message), at most [`ERROR_MESSAGES_KEPT_MAX`] entries.
    pub by_message: BTreeMap<(i16, String), u64>,
    /// Errors whose (code, message) did not fit in `by_message`.
    pub messages_dropped: u64,
}

impl ErrorCounts {
    /// Counts one `Error`.
    pub fn count(&mut self, code: ErrorCode, message: &str) {
        self.total += 1;
        self.by_code.entry(code.code()).or_insert((code.name(), 0)).1 += 1;
        let message: String = message.chars().take(ERROR_MESSAGE_CHARS_MAX).collect();
        let key = (code.code(), message);
        if let Some(n) = self.by_message.get_mut(&key) {
            *n += 1;
        } else if self.by_message.len() < ERROR_MESSAGES_KEPT_MAX {
            self.by_message.insert(key, 1);
        } else {
            self.messages_dropped += 1;
        }
    }
}

/// A count with the first [`REASONS_KEPT_MAX`] reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reasons {
    /// How many.
    pub count: u64,
    /// The first reasons, in order.
    pub kept: Vec<String>,
}

impl Reasons {
    /// Counts one, keeping its reason if there is room.
    pub fn push(&mut self, reason: impl FnOnce() -> String) {
        self.count += 1;
        if self.kept.len() < REASONS_KEPT_MAX {
            self.kept.push(reason());
        }
    }
}

/// Everything a run counts. Filled by [`super::state::Farmer`].
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Connections that got the handshake.
    pub harvesters: u64,
    /// Connections that ended before the run did.
    pub disconnects: u64,
    /// Challenges broadcast.
    pub challenges: u64,
    /// `ChallengeResponse`s received (duplicates included).
    pub responses: u64,
    /// `ChallengeDone`s received (harvesters that negotiated `harvester/2`), each checked
    /// against the responses that came before it.
    pub challenges_done: u64,
    /// Distinct qualities announced.
    pub qualities: u64,
    /// `ChallengeResponse`s repeating a quality already seen.
    pub duplicates: u64,
    /// Qualities not tracked (the quality table was full): never requested.
    pub untracked: u64,
    /// Requests not sent because too many were outstanding.
    pub requests_skipped: u64,
    /// `RequestProofOfSpace`.
    pub proofs: RequestCounts,
    /// `RequestPartialProof`.
    pub partials: RequestCounts,
    /// `RequestHeaderSignature`.
    pub headers: RequestCounts,
    /// `Error` answers.
    pub errors: ErrorCounts,
    /// Invalid answers (each fails the run).
    pub invalid: Reasons,
    /// Requests never answered (each fails the run).
    pub lost: Reasons,
    /// Requests outstanding on a connection that dropped, with `--allow-disconnects`.
    pub disconnected_requests: u64,
    /// Latencies.
    pub latency: Latencies,
}

/// The run's settings, echoed in the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunInfo {
    /// `--harvesters`.
    pub harvesters_wanted: u64,
    /// Wall time from the first challenge to the end.
    pub elapsed: Duration,
    /// Stopped early (signal, or the harvesters never came).
    pub interrupted: Option<String>,
    /// Settings as JSON (flags and their values).
    pub settings: Value,
}

/// A finished run: its stats and settings.
#[derive(Debug, Clone)]
pub struct Report {
    /// The counts.
    pub stats: Stats,
    /// The settings and timing.
    pub info: RunInfo,
}

impl Report {
    /// No invalid and no lost answer, and the run was not interrupted.
    pub fn passed(&self) -> bool {
        self.stats.invalid.count == 0
            && self.stats.lost.count == 0
            && self.info.interrupted.is_none()
    }

    /// The JSON report (layout in the module docs).
    pub fn json(&self) -> Value {
        let s = &self.stats;
        let sig = |c: &RequestCounts| {
            json!({"requested": c.requested, "valid": c.valid, "errors": c.errors,
                   "keys_file": c.keys_file, "memo": c.memo})
        };
        let by_code: Vec<Value> = s
            .errors
            .by_code
            .iter()
            .map(|(code, (name, n))| json!({"code": code, "name": name, "count": n}))
            .collect();
        let by_message: Vec<Value> = s
            .errors
            .by_message
            .iter()
            .map(|((code, msg), n)| json!({"code": code, "message": msg, "count": n}))
            .collect();
        let l = &s.latency;
        json!({
            "passed": self.passed(),
            "interrupted": self.info.interrupted,
            "elapsed_secs": self.info.elapsed.as_secs_f64(),
            "settings": self.info.settings,
            "harvesters": s.harvesters,
            "harvesters_wanted": self.info.harvesters_wanted,
            "disconnects": s.disconnects,
            "challenges": s.challenges,
            "responses": s.responses,
            "challenges_done": s.challenges_done,
            "qualities": s.qualities,
            "duplicates": s.duplicates,
            "untracked": s.untracked,
            "requests_skipped": s.requests_skipped,
            "proofs": {"requested": s.proofs.requested, "valid": s.proofs.valid,
                       "errors": s.proofs.errors},
            "signatures": {
                "partial": sig(&s.partials),
                "header": sig(&s.headers),
                "kinds": {"keys_file": s.partials.keys_file + s.headers.keys_file,
                          "memo": s.partials.memo + s.headers.memo},
            },
            "errors": {"total": s.errors.total, "unsolicited": s.errors.unsolicited,
                       "by_code": by_code, "by_message": by_message,
                       "messages_dropped": s.errors.messages_dropped},
            "invalid": s.invalid.count,
            "invalid_reasons": s.invalid.kept,
            "lost": s.lost.count,
            "lost_reasons": s.lost.kept,
            "disconnected_requests": s.disconnected_requests,
            "latency_ms": {
                "challenge_first_response": l.challenge_first_response.summary().json(),
                "challenge_last_response": l.challenge_last_response.summary().json(),
                "proof": l.proof.summary().json(),
                "signature": l.signature.summary().json(),
            },
        })
    }

    /// The text report for stdout.
    pub fn text(&self) -> String {
        let s = &self.stats;
        let mut t = String::new();
        // Writing to a String cannot fail; the results are ignored below for that reason.
        let _ = writeln!(
            t,
            "farmer-sim: {} {} ({} wanted, {} disconnects), {} challenges in {:.2} s",
            if self.passed() { "PASSED" } else { "FAILED" },
            plural(s.harvesters, "harvester"),
            self.info.harvesters_wanted,
            s.disconnects,
            s.challenges,
            self.info.elapsed.as_secs_f64(),
        );
        if let Some(why) = &self.info.interrupted {
            let _ = writeln!(t, "  interrupted: {why}");
        }
        let _ = writeln!(
            t,
            "  challenge responses  {} ({} distinct qualities, {} duplicates, {} untracked)",
            s.responses, s.qualities, s.duplicates, s.untracked
        );
        let _ = writeln!(
            t,
            "  proofs               requested {}, valid {}, errors {}",
            s.proofs.requested, s.proofs.valid, s.proofs.errors
        );
        for (name, c) in [("partial signatures", &s.partials), ("header signatures", &s.headers)] {
            let _ = writeln!(
                t,
                "  {name:<20} requested {}, valid {} (keys_file {}, memo {}), errors {}",
                c.requested, c.valid, c.keys_file, c.memo, c.errors
            );
        }
        if s.requests_skipped > 0 {
            let _ =
                writeln!(t, "  requests skipped     {} (outstanding limit)", s.requests_skipped);
        }
        let _ = writeln!(
            t,
            "  errors               {} ({} unsolicited)",
            s.errors.total, s.errors.unsolicited
        );
        for (code, (name, n)) in &s.errors.by_code {
            let _ = writeln!(t, "    {name} ({code}): {n}");
        }
        for ((code, msg), n) in &s.errors.by_message {
            let _ = writeln!(t, "    [{code}] {msg:?}: {n}");
        }
        if s.errors.messages_dropped > 0 {
            let _ = writeln!(t, "    ... {} more with other messages", s.errors.messages_dropped);
        }
        let _ = writeln!(t, "  invalid              {}", s.invalid.count);
        for r in &s.invalid.kept {
            let _ = writeln!(t, "    {r}");
        }
        let _ = writeln!(
            t,
            "  lost                 {} (disconnected, allowed: {})",
            s.lost.count, s.disconnected_requests
        );
        for r in &s.lost.kept {
            let _ = writeln!(t, "    {r}");
        }
        let _ = writeln!(
            t,
            "  {:<32} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let l = &s.latency;
        for (name, h) in [
            ("challenge -> first response", &l.challenge_first_response),
            ("challenge -> last response", &l.challenge_last_response),
            ("proof request -> response", &l.proof),
            ("signature request -> response", &l.signature),
        ] {
            let m = h.summary();
            let _ = writeln!(
                t,
                "    {name:<30} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                m.count, m.p50_ms, m.p90_ms, m.p99_ms, m.p99_9_ms, m.max_ms
            );
        }
        t
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_in_ms() {
        let mut l = Latency::new();
        assert_eq!(l.summary().count, 0);
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        l.record(Duration::from_secs(10_000)); // clamped to one hour
        let s = l.summary();
        assert_eq!(s.count, 101);
        assert!((s.p50_ms - 51.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 3_600_000.0).abs() / 3_600_000.0 < 0.001, "{s:?}");
        l.record(Duration::ZERO); // clamped to 1 µs
        assert_eq!(l.count(), 102);
    }

    #[test]
    fn error_counts_are_bounded() {
        let mut e = ErrorCounts::default();
        for i in 0..(ERROR_MESSAGES_KEPT_MAX + 10) {
            e.count(ErrorCode::LookupFailed, &format!("plot {i}"));
        }
        e.count(ErrorCode::LookupFailed, "plot 0");
        e.count(ErrorCode::Other(77), &"x".repeat(10_000));
        assert_eq!(e.total, ERROR_MESSAGES_KEPT_MAX as u64 + 12);
        assert_eq!(e.by_code[&4], ("LookupFailed", ERROR_MESSAGES_KEPT_MAX as u64 + 11));
        assert_eq!(e.by_message.len(), ERROR_MESSAGES_KEPT_MAX);
        assert_eq!(e.by_message[&(4, "plot 0".to_string())], 2);
        assert_eq!(e.messages_dropped, 11);
    }

    #[test]
    fn reasons_keep_the_first_twenty() {
        let mut r = Reasons::default();
        for i in 0..30 {
            r.push(|| format!("reason {i}"));
        }
        assert_eq!(r.count, 30);
        assert_eq!(r.kept.len(), REASONS_KEPT_MAX);
        assert_eq!(r.kept[19], "reason 19");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut stats = Stats { harvesters: 2, challenges: 5, ..Stats::default() };
        stats.partials.requested = 3;
        stats.partials.count_kind(SignatureKind::Memo);
        stats.headers.count_kind(SignatureKind::KeysFile);
        stats.errors.count(ErrorCode::NoSigningKey, "no key");
        stats.latency.proof.record(Duration::from_millis(3));
        let report = Report { stats, info: RunInfo { harvesters_wanted: 2, ..RunInfo::default() } };
        assert!(report.passed());
        let v = report.json();
        for (pointer, want) in [
            ("/harvesters", 2),
            ("/challenges", 5),
            ("/invalid", 0),
            ("/lost", 0),
            ("/signatures/partial/requested", 3),
            ("/signatures/partial/valid", 1),
            ("/signatures/header/valid", 1),
            ("/signatures/kinds/keys_file", 1),
            ("/signatures/kinds/memo", 1),
            ("/errors/total", 1),
            ("/errors/by_code/0/count", 1),
            ("/latency_ms/proof/count", 1),
        ] {
            assert_eq!(v.pointer(pointer).and_then(Value::as_u64), Some(want), "{pointer}: {v}");
        }
        assert_eq!(v["passed"], true);
        let text = report.text();
        assert!(text.contains("PASSED") && text.contains("NoSigningKey (7): 1"), "{text}");

        let mut failed = report.clone();
        failed.stats.lost.push(|| "lost one".into());
        assert!(!failed.passed());
        assert!(failed.text().contains("lost one"));
        assert_eq!(failed.json()["passed"], false);
    }
}
