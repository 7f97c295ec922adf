//! Virtual time: a shared nanosecond counter that only moves forward.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::rng::nanos;

/// A handle on virtual time, shared by clones (the disk, the code under test, the test).
///
/// Time moves only when someone moves it: [`SimClock::advance`] and [`SimClock::advance_to`],
/// and the simulated disk's `submit_and_wait`, which jumps to the next completion or to the
/// end of its timeout. A test of a one-minute deadline runs instantly. Time never goes back.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    nanos: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock at zero.
    pub fn new() -> SimClock {
        SimClock::default()
    }

    /// A clock at `start`.
    pub fn starting_at(start: Duration) -> SimClock {
        SimClock { nanos: Arc::new(AtomicU64::new(nanos(start))) }
    }

    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    /// Moves time forward by `step` (clamped at 584 years).
    pub fn advance(&self, step: Duration) {
        let step = nanos(step);
        let before = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(step)))
            .expect("the update always returns Some");
        assert!(self.nanos.load(Ordering::SeqCst) >= before);
    }

    /// Moves time forward to `time`; a time already passed leaves the clock as it is.
    pub fn advance_to(&self, time: Duration) {
        self.nanos.fetch_max(nanos(time), Ordering::SeqCst);
        assert!(self.now() >= time.min(Duration::from_nanos(u64::MAX)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_time_which_only_moves_forward() {
        let a = SimClock::new();
        let b = a.clone();
        assert_eq!(a.now(), Duration::ZERO);
        a.advance(Duration::from_millis(5));
        assert_eq!(b.now(), Duration::from_millis(5));
        b.advance_to(Duration::from_millis(3));
        assert_eq!(a.now(), Duration::from_millis(5), "time never goes back");
        b.advance_to(Duration::from_secs(60));
        assert_eq!(a.now(), Duration::from_secs(60));
        a.advance(Duration::MAX);
        assert_eq!(a.now(), Duration::from_nanos(u64::MAX), "clamped, no overflow");
        assert_eq!(SimClock::starting_at(Duration::from_secs(1)).now(), Duration::from_secs(1));
    }
}
