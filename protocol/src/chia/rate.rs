//! chia's rate limits for what a harvester sends (chia-blockchain 2.7.5,
//! `server/rate_limit_numbers.py`, v2 limits, which both sides announce): per message type at
//! most N messages of at most M bytes per minute, and at most 1,000 messages and 100 MiB per
//! minute over all of them. A farmer disconnects and bans a peer that breaks a limit, except on
//! loopback, so a test against a local farmer cannot catch a breach: this budget is how we stay
//! inside by design. It keeps a sliding window of 60 seconds, which never exceeds a limit in
//! any fixed minute the farmer counts.

use std::collections::VecDeque;

use crate::chia::messages::msg;

/// The window chia counts over.
pub const WINDOW_SECONDS: f64 = 60.0;
/// Messages per window over all types.
pub const AGGREGATE_MESSAGES_MAX: usize = 1000;
/// Bytes per window over all types.
pub const AGGREGATE_BYTES_MAX: u64 = 100 * 1024 * 1024;

/// chia's limit for one message type: (messages per minute, bytes per message).
pub fn limit(msg_type: u8) -> Option<(usize, usize)> {
    Some(match msg_type {
        msg::HANDSHAKE => (5, 10 * 1024),
        msg::NEW_PROOF_OF_SPACE => (100, 2048),
        msg::RESPOND_SIGNATURES => (100, 2048),
        msg::FARMING_INFO => (100, 1024),
        msg::RESPOND_PLOTS | msg::RESPOND_PLOTS2 => (100, 100 * 1024 * 1024),
        msg::PLOT_SYNC_START
        | msg::PLOT_SYNC_LOADED
        | msg::PLOT_SYNC_LOADED2
        | msg::PLOT_SYNC_REMOVED
        | msg::PLOT_SYNC_INVALID
        | msg::PLOT_SYNC_KEYS_MISSING
        | msg::PLOT_SYNC_DUPLICATES
        | msg::PLOT_SYNC_DONE => (1000, 100 * 1024 * 1024),
        _ => return None,
    })
}

/// Why a message may not go now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Larger than chia accepts for its type: it can never be sent.
    TooLarge {
        /// The message's bytes.
        bytes: usize,
        /// chia's limit.
        max: usize,
    },
    /// The type has no limit we know of: not something a harvester sends.
    Unknown,
    /// The budget frees up in this many seconds.
    Wait(f64),
}

/// The sender's budget for one connection. Times are seconds on any monotonic clock.
#[derive(Debug, Default)]
pub struct RateBudget {
    /// (type, time) of each message sent in the window.
    sent: VecDeque<(u8, f64, u64)>,
    bytes: u64,
}

impl RateBudget {
    /// An empty budget.
    pub fn new() -> Self {
        Self::default()
    }

    fn expire(&mut self, now: f64) {
        while let Some(&(_, t, b)) = self.sent.front() {
            if now - t < WINDOW_SECONDS {
                break;
            }
            self.sent.pop_front();
            self.bytes -= b;
        }
    }

    /// Takes a place for a message of `msg_type` and `bytes` at `now`, or says why not.
    pub fn try_take(&mut self, msg_type: u8, bytes: usize, now: f64) -> Result<(), Refusal> {
        let (per_minute, size_max) = limit(msg_type).ok_or(Refusal::Unknown)?;
        if bytes > size_max {
            return Err(Refusal::TooLarge { bytes, max: size_max });
        }
        self.expire(now);
        let of_type: Vec<f64> =
            self.sent.iter().filter(|(t, _, _)| *t == msg_type).map(|(_, at, _)| *at).collect();
        let mut wait: f64 = 0.0;
        if of_type.len() >= per_minute {
            wait = wait.max(of_type[of_type.len() - per_minute] + WINDOW_SECONDS - now);
        }
        if self.sent.len() >= AGGREGATE_MESSAGES_MAX {
            let (_, t, _) = self.sent[self.sent.len() - AGGREGATE_MESSAGES_MAX];
            wait = wait.max(t + WINDOW_SECONDS - now);
        }
        if self.bytes + bytes as u64 > AGGREGATE_BYTES_MAX {
            // The oldest message's departure frees the most; wait for it (and retry).
            if let Some(&(_, t, _)) = self.sent.front() {
                wait = wait.max(t + WINDOW_SECONDS - now);
            }
        }
        if wait > 0.0 {
            return Err(Refusal::Wait(wait));
        }
        self.sent.push_back((msg_type, now, bytes as u64));
        self.bytes += bytes as u64;
        Ok(())
    }

    /// Messages in the current window.
    pub fn in_window(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_type_limit_over_a_sliding_minute() {
        let mut b = RateBudget::new();
        for i in 0..100 {
            b.try_take(msg::NEW_PROOF_OF_SPACE, 500, i as f64 * 0.1).unwrap();
        }
        match b.try_take(msg::NEW_PROOF_OF_SPACE, 500, 10.0) {
            Err(Refusal::Wait(w)) => assert!((w - 50.0).abs() < 1e-9, "{w}"),
            r => panic!("{r:?}"),
        }
        // Other types still go.
        b.try_take(msg::FARMING_INFO, 100, 10.0).unwrap();
        // 60 s after the first proof, one more fits, and only one.
        b.try_take(msg::NEW_PROOF_OF_SPACE, 500, 60.0).unwrap();
        assert!(b.try_take(msg::NEW_PROOF_OF_SPACE, 500, 60.0).is_err());
    }

    #[test]
    fn any_fixed_minute_stays_within_the_limit() {
        // A sender that sends whenever the budget allows, as fast as possible, for 5 minutes.
        let mut b = RateBudget::new();
        let mut times = Vec::new();
        let mut now = 0.0;
        while now < 300.0 {
            if b.try_take(msg::FARMING_INFO, 200, now).is_ok() {
                times.push(now);
            }
            now += 0.01;
        }
        for start in 0..300 {
            let s = start as f64;
            let n = times.iter().filter(|t| **t >= s && **t < s + 60.0).count();
            assert!(n <= 100, "{n} farming_info in the minute from {s}");
        }
        assert!(times.len() >= 450, "the budget is used, not starved: {}", times.len());
    }

    #[test]
    fn size_and_aggregate_limits() {
        let mut b = RateBudget::new();
        assert_eq!(
            b.try_take(msg::NEW_PROOF_OF_SPACE, 2049, 0.0),
            Err(Refusal::TooLarge { bytes: 2049, max: 2048 })
        );
        assert_eq!(b.try_take(msg::HARVESTER_HANDSHAKE, 10, 0.0), Err(Refusal::Unknown));
        for i in 0..AGGREGATE_MESSAGES_MAX {
            b.try_take(msg::PLOT_SYNC_LOADED2, 10, i as f64 * 0.001).unwrap();
        }
        assert!(matches!(b.try_take(msg::FARMING_INFO, 10, 2.0), Err(Refusal::Wait(_))));
        assert_eq!(b.in_window(), AGGREGATE_MESSAGES_MAX);
        b.try_take(msg::FARMING_INFO, 10, 61.0).unwrap();
    }
}
