//! Every limit of the backends, and the defaults of their configurable limits, documented here
//! once. Names end with the unit, then `_max` (or `_MAX_DEFAULT` for a default of one).
//!
//! A configurable limit (a field of [`crate::pread::PreadConfig`] or
//! [`crate::uring::UringConfig`]) and the bound on it share the name: `reads_in_flight_max` is at
//! most [`READS_IN_FLIGHT_MAX`]. Callers that validate their own configuration (the harvester's
//! `engine.reads_in_flight_max`) use these constants rather than numbers of their own.

use std::time::Duration;

/// Largest `reads_in_flight_max` a backend accepts: reads pushed and not yet drained. It also
/// bounds the io_uring in-flight table's slot indices (below 2^32) and the ring's size (SQ
/// entries: `reads_in_flight_max` rounded up to a power of two; twice that in the CQ).
pub const READS_IN_FLIGHT_MAX: usize = 8192;

/// Default `read_bytes_max`, the largest single read: 4 MiB (plot reads are 3–40 KB; merged
/// reads stay far below this).
pub const READ_BYTES_MAX_DEFAULT: u32 = 4 << 20;

/// Default `buffer_pool_bytes_max`: idle bytes a backend keeps in its buffer pool for reuse.
pub const BUFFER_POOL_BYTES_MAX_DEFAULT: usize = 8 << 20;

/// Default `read_retries_max`: EAGAIN / EINTR retries (resubmissions) of one read.
pub const READ_RETRIES_MAX_DEFAULT: u32 = 64;

/// Default `io_workers_max` of a ring is `reads_in_flight_max`, at most this (io-wq workers).
pub const IO_WORKERS_MAX_DEFAULT: u32 = 16;

/// Default `drop_wait_max`: how long dropping an io_uring backend waits for reads still in the
/// kernel before it leaks their buffers.
pub const DROP_WAIT_MAX_DEFAULT: Duration = Duration::from_secs(10);

/// Longest single wait of `UringBackend::submit_and_wait`: longer timeouts return after it
/// (callers loop).
pub(crate) const WAIT_MAX: Duration = Duration::from_secs(24 * 3600);

/// Buffer sizes the pool keeps free lists for, at most; bigger buffers are allocated and freed
/// each time.
pub(crate) const POOL_CLASS_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(READS_IN_FLIGHT_MAX.is_power_of_two());
const _: () = assert!(READS_IN_FLIGHT_MAX as u64 <= u32::MAX as u64);
const _: () = assert!(POOL_CLASS_BYTES_MAX.is_power_of_two());
const _: () = assert!(READ_BYTES_MAX_DEFAULT as usize <= POOL_CLASS_BYTES_MAX);
