//! The harvester's limits, each documented here once: the largest value each configuration key
//! accepts, and the fixed limits of the plot walk and the engine. Configuration validation
//! (`config`), the plot manager (`plots`), the walk (`plots::scan`) and the engine use these
//! constants, never numbers of their own; `docs/configuration.md` lists the same values, and
//! `config`'s tests hold validation to them (each accepted up to its limit, refused above it).
//!
//! Naming: a limit on the key `x_max` (or on the count `x`) is `X_MAX`, the unit last
//! (`reads_in_flight_max` <= [`READS_IN_FLIGHT_MAX`], `frame_bytes_max` <= [`FRAME_BYTES_MAX`]).

/// Largest `engine.reads_in_flight_max`: exactly what the disk backends accept.
pub use disk_io::limits::READS_IN_FLIGHT_MAX;

// ---- plots ----

/// Largest `plots.open_threads`: threads opening plot headers in parallel during a refresh.
pub const OPEN_THREADS_MAX: usize = 256;

/// Largest `plots.plots_max`: plot files tracked, in any state.
pub const PLOTS_MAX: usize = 10_000_000;

/// Most plot folders; also most disk overrides, and most paths of one disk override.
pub const FOLDERS_MAX: usize = 100_000;

/// Folders below a plot folder (or a folder named to `check`) that a walk goes into, at most.
pub const SCAN_DEPTH_MAX: usize = 64;

/// Folder entries one walk looks at per plot of `plots_max` (other files share the folders).
pub const SCAN_ENTRIES_PER_PLOT: usize = 16;

/// Folder entries one walk looks at, at least (whatever `plots_max`).
pub const SCAN_ENTRIES_MIN: usize = 1 << 20;

/// Folder entries one walk looks at, at most, for `plots_max` plots: the daemon's refresh with
/// its `plots.plots_max`, the tools (`check`) with [`PLOTS_MAX`].
pub const fn scan_entries_max(plots_max: usize) -> usize {
    let entries = plots_max.saturating_mul(SCAN_ENTRIES_PER_PLOT);
    if entries > SCAN_ENTRIES_MIN {
        entries
    } else {
        SCAN_ENTRIES_MIN
    }
}

// ---- engine ----

/// Shards served at most (disks x `engine.shards_per_disk`).
pub const DISKS_MAX: usize = 1024;

/// Largest `engine.shards_per_disk`.
pub const SHARDS_PER_DISK_MAX: usize = 64;

/// Largest `engine.lookups_active_max` (per shard).
pub const LOOKUPS_ACTIVE_MAX: usize = 1 << 20;

/// Largest `engine.jobs_queued_max` (per shard).
pub const JOBS_QUEUED_MAX: usize = 1 << 20;

/// Largest `engine.proof_jobs_queued_max` (per shard).
pub const PROOF_JOBS_QUEUED_MAX: usize = 1 << 20;

/// Largest `engine.events_queued_max` (per connection).
pub const EVENTS_QUEUED_MAX: usize = 1 << 24;

// ---- protocol ----

/// Smallest `protocol.frame_bytes_max`.
pub const FRAME_BYTES_MIN: u32 = 1024;

/// Largest `protocol.frame_bytes_max`: 64 MiB.
pub const FRAME_BYTES_MAX: u32 = 64 << 20;

/// Largest `protocol.pool_keys_max` (48 bytes each: 3 MiB of keys, within a frame).
pub const POOL_KEYS_MAX: usize = 1 << 16;

/// Largest `protocol.challenges_in_flight_max`.
pub const CHALLENGES_IN_FLIGHT_MAX: usize = 4096;

/// Largest `protocol.challenges_remembered_max`.
pub const CHALLENGES_REMEMBERED_MAX: usize = 1 << 16;

/// Largest `protocol.qualities_max`.
pub const QUALITIES_MAX: usize = 1 << 26;

/// Largest `protocol.signatures_in_flight_max`.
pub const SIGNATURES_IN_FLIGHT_MAX: usize = 65536;

// ---- durations ----

/// Largest value of every `*_seconds` key but `retry_quarantined_after_seconds`: a day, which
/// keeps every conversion to a `Duration` and every deadline sum far from overflow.
pub const DURATION_SECONDS_MAX: f64 = 86_400.0;

/// Largest `plots.retry_quarantined_after_seconds`: a year (365 days).
pub const RETRY_QUARANTINED_AFTER_SECONDS_MAX: f64 = 31_536_000.0;

const _: () = assert!(OPEN_THREADS_MAX >= 1 && SHARDS_PER_DISK_MAX <= DISKS_MAX);
const _: () = assert!(FRAME_BYTES_MIN <= FRAME_BYTES_MAX);
const _: () = assert!(POOL_KEYS_MAX * 48 <= FRAME_BYTES_MAX as usize);
// The metrics endpoint keeps its own copy of the shard limit (`telemetry::DISKS_MAX`) until it
// imports this one; they must agree.
const _: () = assert!(crate::telemetry::DISKS_MAX == DISKS_MAX);
