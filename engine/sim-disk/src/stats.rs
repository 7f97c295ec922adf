//! What the simulated disk did, for tests to assert on.

/// Counters since the disk was made, and gauges of now (`*_now`).
///
/// Relations that always hold (checked by [`SimStats::check`]):
/// `reads_pushed == reads_completed + in_flight_now`,
/// `reads_completed == reads_ok + reads_failed`,
/// `reads_failed == reads_failed_eio + reads_failed_vanished + reads_failed_closed
///  + reads_failed_other`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Reads accepted by `push`.
    pub reads_pushed: u64,
    /// Pushes refused with `Full`.
    pub reads_refused_full: u64,
    /// Reads taken from the queue by `submit_and_wait`.
    pub reads_submitted: u64,
    /// Completions handed out by `drain`.
    pub reads_completed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub reads_failed_eio: u64,
    pub reads_failed_vanished: u64,
    pub reads_failed_closed: u64,
    /// Unknown file, or longer than `read_bytes_max`.
    pub reads_failed_other: u64,
    /// Reads that hung (released or not).
    pub reads_hung: u64,
    /// Hung reads released by `unhang` or `vanish`.
    pub reads_unhung: u64,
    /// Extra rounds spent on short reads (each a latency of its own).
    pub short_read_retries: u64,
    /// Bytes handed out in successful completions.
    pub bytes_read: u64,
    /// Completions with one byte flipped.
    pub reads_corrupted: u64,
    /// Most reads in flight at once.
    pub in_flight_max_observed: u64,
    /// Buffers given back through `recycle`.
    pub buffers_recycled: u64,
    /// Buffers the caller dropped instead of recycling (noticed when the allocator hands
    /// their address out again, so a lower bound).
    pub buffers_dropped: u64,
    /// Reads pushed and not yet drained.
    pub in_flight_now: u64,
    /// Reads hung right now.
    pub reads_hung_now: u64,
    /// Buffers drained and neither recycled nor known dropped.
    pub buffers_with_caller_now: u64,
}

impl SimStats {
    /// Panics unless the counters agree with each other.
    pub fn check(&self) {
        assert_eq!(self.reads_pushed, self.reads_completed + self.in_flight_now, "{self:?}");
        assert_eq!(self.reads_completed, self.reads_ok + self.reads_failed, "{self:?}");
        let failed = self.reads_failed_eio
            + self.reads_failed_vanished
            + self.reads_failed_closed
            + self.reads_failed_other;
        assert_eq!(self.reads_failed, failed, "{self:?}");
        assert!(self.reads_submitted <= self.reads_pushed, "{self:?}");
        assert_eq!(self.reads_hung - self.reads_unhung, self.reads_hung_now, "{self:?}");
        assert!(self.reads_hung_now <= self.in_flight_now, "{self:?}");
        assert!(self.reads_corrupted <= self.reads_ok, "{self:?}");
        assert!(self.in_flight_now <= self.in_flight_max_observed, "{self:?}");
        let buffers_back = self.buffers_recycled + self.buffers_dropped;
        assert_eq!(self.reads_ok - buffers_back, self.buffers_with_caller_now, "{self:?}");
    }
}
