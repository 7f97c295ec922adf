//! A simulated disk: a deterministic, seeded [`disk_io::Backend`] with faults the kernel
//! cannot produce on demand, for tests of the engine's guarantees (TigerBeetle's
//! `testing/storage.zig`, redb's fault-injecting backend).
//!
//! - **Files** live in memory ([`SimHandle::add_file`]); `open` of another path fails with
//!   `NotFound`.
//! - **Time** is virtual ([`SimClock`]): `submit_and_wait(timeout)` jumps to the next
//!   completion, or by `timeout` when nothing completes sooner, so deadline tests run at once.
//! - **Latency** per read: fixed, uniform, or a long tail ([`Latency`]); optionally a device
//!   that serves only so many reads at once ([`SimConfig::device_reads_max`]).
//! - **Faults** per disk or per file ([`Faults`]): EIO, short reads (retried inside, as the
//!   backend contract says: they cost another latency round and a counter, never bytes),
//!   reads that hang until [`SimHandle::unhang`], byte flips, and a disk that vanishes
//!   ([`SimHandle::vanish`]).
//! - **Completions** come in completion-time order, not submit order.
//! - **Determinism**: every read draws its decisions from its own stream of the seed
//!   (indexed by push order), so a seed and the same calls reproduce a run exactly.
//! - **The contract** of [`disk_io::Backend`] is asserted, not assumed: `push` refuses beyond
//!   `reads_in_flight_max`; every pushed read ends in exactly one completion; reads own
//!   generation-stamped slots and buffer ids from push to drain; recycling a buffer that is
//!   not the caller's panics. [`SimStats`] counts everything.
//!
//! The disk's state sits behind a mutex shared with its [`SimHandle`]s, so a test keeps
//! control (vanish, unhang, stats) after handing the disk to a shard, even on another thread.
#![forbid(unsafe_code)]

mod clock;
mod config;
mod disk;
mod rng;
mod stats;

pub use clock::SimClock;
pub use config::{
    Faults, Latency, SimConfig, LATENCY_DEFAULT, READS_IN_FLIGHT_LIMIT, READ_BYTES_MAX_DEFAULT,
    SHORT_READS_PER_READ_MAX,
};
pub use disk::{SimDisk, SimHandle, EINVAL, EIO};
pub use rng::Rng;
pub use stats::SimStats;

#[cfg(test)]
mod tests;
