//! Per-shard latency histograms and counters. The shard records into its own copy and
//! publishes it with `try_lock` (never blocking the shard); readers clone the published copy.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

/// Latencies in microseconds, 1 us .. 1 hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// One read, push to completion.
    pub read_latency_us: Histogram<u64>,
    /// A quality job: accepted to its last result out.
    pub lookup_latency_us: Histogram<u64>,
    /// A proof job: accepted to the proof out.
    pub proof_latency_us: Histogram<u64>,
    /// A job's wait in the shard's queue before its lookups start.
    pub queue_wait_us: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low).
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Histograms {
            read_latency_us: h(),
            lookup_latency_us: h(),
            proof_latency_us: h(),
            queue_wait_us: h(),
        }
    }
}

impl Histograms {
    pub(crate) fn record(h: &mut Histogram<u64>, micros: u64) {
        h.saturating_record(micros.max(1));
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub jobs: u64,
    pub jobs_timed_out: u64,
    pub jobs_rejected: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub read_errors: u64,
    /// Reads answered by another identical read in flight.
    pub reads_coalesced: u64,
    /// Completions that arrived after their job was already answered.
    pub reads_late: u64,
    pub qualities: u64,
    pub proofs: u64,
    pub plot_errors: u64,
    pub plots_quarantined: u64,
    /// Times the result channel was full and the shard had to wait.
    pub results_backpressure: u64,
    pub degraded_episodes: u64,
    /// Reads sent to the disk by size: `read_sizes_blocks[i]` counts reads of `i + 1` blocks
    /// of 4 KiB (rounded up), the last entry those of that many blocks or more. Benchmarks
    /// replay this mix with fio.
    pub read_sizes_blocks: [u64; READ_SIZE_BUCKETS],
}

/// Buckets of [`Counters::read_sizes_blocks`]: reads of 1..=15 blocks, then 16 or more.
pub const READ_SIZE_BUCKETS: usize = 16;

/// The block size of [`Counters::read_sizes_blocks`].
pub const READ_SIZE_BLOCK_BYTES: u64 = 4096;

impl Counters {
    pub(crate) fn record_read_size(&mut self, len_bytes: u64) {
        let blocks = len_bytes.div_ceil(READ_SIZE_BLOCK_BYTES).max(1);
        let bucket = usize::try_from(blocks - 1).unwrap_or(usize::MAX).min(READ_SIZE_BUCKETS - 1);
        self.read_sizes_blocks[bucket] += 1;
    }
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub histograms: Histograms,
    pub counters: Counters,
    pub reads_in_flight: u64,
    pub plots_active: u64,
    pub plots_quarantined: u64,
    pub degraded: bool,
}

/// A reader's handle on a shard's published metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle {
    pub(crate) shared: Arc<Mutex<Snapshot>>,
}

impl MetricsHandle {
    /// The latest published snapshot (at most one tick old).
    pub fn snapshot(&self) -> Snapshot {
        match self.shared.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publishes without ever blocking: if a reader holds the lock, the next tick retries.
    pub(crate) fn try_publish(&self, snapshot: &Snapshot) -> bool {
        match self.shared.try_lock() {
            Ok(mut s) => {
                s.clone_from(snapshot);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_sizes_go_to_their_block_count() {
        let mut c = Counters::default();
        for len in [1, 4096, 4097, 8192, 12_288, 15 * 4096, 15 * 4096 + 1, 1 << 30, 0] {
            c.record_read_size(len);
        }
        let mut want = [0u64; READ_SIZE_BUCKETS];
        want[0] = 3; // 1, 4096 and 0 bytes
        want[1] = 2; // 4097, 8192
        want[2] = 1;
        want[14] = 1;
        want[15] = 2; // 16 blocks and more
        assert_eq!(c.read_sizes_blocks, want);
    }
}
