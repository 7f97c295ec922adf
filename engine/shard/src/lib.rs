//! One shard per disk: a thread that owns one [`disk_io::Backend`] (an io_uring ring in
//! production), the plots of that disk, and the lookups in progress.
//!
//! Each pass of the loop ([`Shard::tick`]): take new commands, drain completions and feed them
//! to their lookups, start lookups for queued jobs, queue every lookup's next reads (identical
//! reads shared), answer jobs whose deadline passed, then one submit-and-wait. Results leave
//! through a bounded crossbeam channel as [`Event`]s; a full channel slows the shard (counted),
//! nothing is dropped.
//!
//! Every job ends with exactly one [`Event::JobDone`], after the per-plot events it produced.
#![forbid(unsafe_code)]

pub mod hlog;
mod metrics;
mod open;
mod shard;

pub use metrics::{
    Counters, Histograms, MetricsHandle, Snapshot, READ_SIZE_BLOCK_BYTES, READ_SIZE_BUCKETS,
};
pub use open::{lookup_file, open_plot};
pub use shard::{
    Clock, Command, Event, Job, JobId, JobStatus, MonotonicClock, PlotKey, Rejection, Reply,
    ReplySink, Shard, ShardConfig, ShardError, ShardHandle, Work,
};
