//! The plot manager: which plot files the harvester serves, and with which keys.
//!
//! [`PlotManager::refresh`] walks the plot folders (module `scan`), compares every `.plot`
//! file's identity (device, inode, size, modification time) with what it knew, and opens only
//! new and changed files: their headers are read on `open_threads` threads, so a refresh of an
//! unchanged farm costs one `stat` per plot and no reads. It never takes a lock the lookups
//! need: the daemon runs it on a background thread and applies the returned [`Refresh`] (new
//! plots to hand to their shards, keys to remove).
//!
//! What Chia's PlotManager gets wrong and this one does not (numbers: chia-blockchain issues):
//! duplicates are found by plot id, not by file name (#1288, #8562); the served copy is stable
//! and another copy takes over at the next refresh when it goes; unchanged files are never
//! reopened (#10668, #13084); a refresh holds nothing the lookups wait on (#9700); every
//! problem is logged with the file and its disk.
//!
//! Each file is in one [`PlotState`]:
//! - **served**: opened, keys found, and chosen among the files with its plot id: when an id has
//!   no served file, the first by path of the copies known before the refresh is served, else
//!   the first by path of those opened in it. A served file stays served while it is unchanged
//!   (a new copy with a smaller path does not take over).
//! - **duplicate**: another file with the same plot id is served.
//! - **quarantined**: the header cannot be read or is corrupt, the plot id does not match the
//!   memo or the keys file entry (a mismatch means a corrupt or forged plot, so it is not merely
//!   "missing keys"), the engine called [`PlotManager::quarantine`], or it is a `.plot2` file.
//! - **no keys**: no keys file entry and no usable memo.
//!
//! Quarantined and no-keys files are opened again when their identity changes, or after
//! `retry_quarantined_after` (`.plot2` files only when they change).

mod keys_file;
pub mod scan;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plot_format::keys::{self, KeyError, PlotKeys, PoolKind, SecretKey};
use plot_format::Plot;
use shard::PlotKey;
use tracing::{debug, info, warn};

use crate::limits::{scan_entries_max, FOLDERS_MAX, OPEN_THREADS_MAX, PLOTS_MAX, SCAN_DEPTH_MAX};
use keys_file::KeysFile;
use scan::{FileKind, Identity, ScannedFile, WalkOptions};

/// The disk name of files whose disk could not be found.
pub const DISK_UNKNOWN: &str = "unknown";
/// Why `.plot2` files are listed but never opened.
pub const V2_REASON: &str = "v2 plots (.plot2) are not supported";

/// Errors of [`PlotManager::new`]: the configuration and the keys file. Messages never contain
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum PlotsError {
    #[error("plots config: {0}")]
    Config(String),
    #[error("keys file {}: {source}", path.display())]
    KeysFileRead { path: PathBuf, source: std::io::Error },
    #[error("keys file {}: {reason}", path.display())]
    KeysFile { path: PathBuf, reason: String },
    /// `index` counts the `[[plot]]` entries from 1.
    #[error("keys file {}, entry {index} ({file}): {reason}", path.display())]
    KeysFileEntry { path: PathBuf, index: usize, file: String, reason: String },
}

/// Plots under any of `paths` belong to disk `name` (the longest matching prefix wins), for
/// set-ups where the block-device guess is wrong (network file systems, fuse, RAID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOverride {
    pub name: String,
    /// Compared component-wise with the paths the walk finds (folder joined with file names;
    /// not canonicalised).
    pub paths: Vec<PathBuf>,
}

/// What [`PlotManager`] serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotsConfig {
    /// Plot folders, walked in this order.
    pub folders: Vec<PathBuf>,
    /// Walk subfolders too (following symlinks, each folder once, at most
    /// [`SCAN_DEPTH_MAX`] deep).
    pub recursive: bool,
    /// The keys file of original-design plots (see the `keys_file` module).
    pub keys_file: Option<PathBuf>,
    /// Threads that open plot headers during a refresh.
    pub open_threads: usize,
    /// Most plot files tracked (in any state); new files past it are ignored and logged.
    pub plots_max: usize,
    pub disks: Vec<DiskOverride>,
    /// When a quarantined or no-keys file that did not change is tried again.
    pub retry_quarantined_after: Duration,
    /// Serve every file even when several share a plot id (benchmarks and soaks on copies of
    /// one plot; never on a farm: the farmer would get the same proof twice).
    pub serve_duplicate_ids: bool,
}

impl Default for PlotsConfig {
    fn default() -> Self {
        PlotsConfig {
            folders: Vec::new(),
            recursive: true,
            keys_file: None,
            open_threads: 8,
            plots_max: 100_000,
            disks: Vec::new(),
            retry_quarantined_after: Duration::from_secs(1200),
            serve_duplicate_ids: false,
        }
    }
}

/// Who the plot pays (complete: these are the two kinds of v1 plot).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PoolKey {
    /// An "OG" plot: the pool's public key.
    PublicKey([u8; 48]),
    /// A pool-contract (plot NFT) plot: the contract's puzzle hash. The daemon decides what to
    /// do with these.
    ContractPuzzleHash([u8; 32]),
}

impl fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolKey::PublicKey(pk) => write!(f, "PublicKey({})", hex::encode(pk)),
            PoolKey::ContractPuzzleHash(ph) => write!(f, "ContractPuzzleHash({})", hex::encode(ph)),
        }
    }
}

/// How the harvester signs for a plot. `Debug` redacts the secret keys.
// Memo plots are the common case, so boxing their keys would cost every plot an allocation to
// save ~230 bytes on the rare keys-file plot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Signer {
    /// Original design: the keys file holds the plot's whole secret key.
    KeysFile { plot_secret_key: SecretKey },
    /// The memo's keys: the harvester signs with the local key, the farmer adds its share.
    Memo(PlotKeys),
}

/// A plot the manager opened (served or duplicate).
pub struct PlotInfo {
    /// Unique for the life of the manager: a changed file gets a new key.
    pub key: PlotKey,
    pub path: PathBuf,
    pub id: [u8; 32],
    pub k: u8,
    pub pool: PoolKey,
    pub plot_public_key: [u8; 48],
    pub signer: Signer,
    /// The disk's name: an override's name, the kernel name of the disk, or [`DISK_UNKNOWN`].
    pub disk: String,
    pub file_bytes: u64,
    /// The file's modification time, unix seconds.
    pub modified_seconds: u64,
}

impl PlotInfo {
    /// The harvester's signature over a 32-byte message: with a keys-file plot the whole
    /// signature `sign_aug(plot_sk, msg, plot_pk)`; with a memo plot the local share
    /// `sign_aug(local_sk, msg, plot_pk)` ([`PlotKeys::sign_local_share`]) that the farmer
    /// completes with its own share (and the taproot share for pool-contract plots).
    pub fn sign(&self, msg: &[u8; 32]) -> [u8; 96] {
        match &self.signer {
            Signer::KeysFile { plot_secret_key } => {
                keys::sign_aug(plot_secret_key, msg, &self.plot_public_key)
            }
            Signer::Memo(plot_keys) => plot_keys.sign_local_share(msg),
        }
    }

    /// `"keys_file"` or `"memo"`: where the plot's keys come from.
    pub fn key_kind(&self) -> &'static str {
        match self.signer {
            Signer::KeysFile { .. } => "keys_file",
            Signer::Memo(_) => "memo",
        }
    }
}

impl fmt::Debug for PlotInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlotInfo")
            .field("key", &self.key)
            .field("path", &self.path)
            .field("id", &hex::encode(self.id))
            .field("k", &self.k)
            .field("pool", &self.pool)
            .field("plot_public_key", &hex::encode(self.plot_public_key))
            .field("signer", &self.signer)
            .field("disk", &self.disk)
            .field("file_bytes", &self.file_bytes)
            .field("modified_seconds", &self.modified_seconds)
            .finish()
    }
}

/// The state of one plot file (complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlotState {
    Served,
    /// A file with the same plot id, `of`, is served.
    Duplicate {
        of: PathBuf,
    },
    Quarantined {
        reason: String,
    },
    NoKeys {
        reason: String,
    },
}

impl PlotState {
    /// `"served"`, `"duplicate"`, `"quarantined"` or `"no_keys"`.
    pub fn name(&self) -> &'static str {
        match self {
            PlotState::Served => "served",
            PlotState::Duplicate { .. } => "duplicate",
            PlotState::Quarantined { .. } => "quarantined",
            PlotState::NoKeys { .. } => "no_keys",
        }
    }
}

/// A plot to start serving: hand `plot` to the shard of `info.disk` under `info.key`.
pub struct Added {
    pub info: Arc<PlotInfo>,
    pub plot: Box<Plot>,
}

/// Not derived: `Plot`'s `Debug` prints the header's memo, which holds the plot's master secret
/// key.
impl fmt::Debug for Added {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Added").field("info", &self.info).finish_non_exhaustive()
    }
}

/// What one [`PlotManager::refresh`] changed.
#[derive(Debug, Default)]
pub struct Refresh {
    /// Newly served plots (new files, changed files, promoted duplicates, recovered files).
    pub added: Vec<Added>,
    /// Keys no longer served (file gone or changed); remove them from their shards. Keys the
    /// caller quarantined are not repeated here.
    pub removed: Vec<PlotKey>,
    /// Newly quarantined, no-keys and duplicate files, and unreadable folders (for logging;
    /// each was logged at `warn` already).
    pub problems: Vec<(PathBuf, String)>,
    /// `.plot` and `.plot2` files found.
    pub scanned_files: usize,
    pub elapsed: Duration,
}

/// Tracks the plot files under the plot folders. See the module documentation.
pub struct PlotManager {
    config: PlotsConfig,
    keys: KeysFile,
    /// Every known file, by path.
    entries: BTreeMap<PathBuf, Entry>,
    /// Path of every served and duplicate key.
    paths_by_key: HashMap<PlotKey, PathBuf>,
    /// The served file of every served plot id.
    served_by_id: HashMap<ServeKey, PathBuf>,
    /// The next [`PlotKey`]; keys are never reused.
    key_next: u64,
}

impl fmt::Debug for PlotManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlotManager")
            .field("config", &self.config)
            .field("keys_file_entries", &self.keys.len())
            .field("files", &self.entries.len())
            .field("served", &self.served_by_id.len())
            .finish()
    }
}

impl PlotManager {
    /// Checks the configuration and loads the keys file (if any). A keys file with bad hex,
    /// wrong lengths, invalid keys, unknown fields or two entries for one file is an error
    /// naming the file and the entry.
    pub fn new(config: PlotsConfig) -> Result<Self, PlotsError> {
        validate(&config)?;
        let keys = match &config.keys_file {
            Some(path) => {
                let keys = KeysFile::load(path, config.plots_max)?;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        warn!(path = %path.display(), "the keys file is readable by other users");
                    }
                }
                info!(path = %path.display(), entries = keys.len(), "keys file loaded");
                keys
            }
            None => KeysFile::default(),
        };
        Ok(PlotManager {
            config,
            keys,
            entries: BTreeMap::new(),
            paths_by_key: HashMap::new(),
            served_by_id: HashMap::new(),
            key_next: 0,
        })
    }

    /// Walks the folders and brings the state up to date: new and changed files (and
    /// quarantined ones due for a retry) have their headers opened on `open_threads` threads,
    /// with a progress bar on stderr when `progress`. Blocks on the file system only.
    pub fn refresh(&mut self, progress: bool) -> Refresh {
        let start = Instant::now();
        let options = WalkOptions::plot_folders(self.config.recursive, self.scan_entries_max());
        let scan = scan::walk(&self.config.folders, options);
        let mut out = Refresh { scanned_files: scan.files.len(), ..Refresh::default() };
        for (path, reason) in scan.problems {
            warn!(path = %path.display(), "{reason}");
            out.problems.push((path, reason));
        }
        if scan.entries_capped {
            warn!(
                entries_max = self.scan_entries_max(),
                "plot folders hold too many entries: the walk stopped early, and files it did not \
                 reach are kept as they were"
            );
        }
        if scan.depth_capped {
            warn!(
                depth_max = SCAN_DEPTH_MAX,
                "plot folders nest too deep: deeper ones are ignored"
            );
        }

        if !scan.entries_capped {
            let present: HashSet<&Path> = scan.files.iter().map(|f| f.path.as_path()).collect();
            let gone: Vec<PathBuf> =
                self.entries.keys().filter(|p| !present.contains(p.as_path())).cloned().collect();
            for path in gone {
                debug!(path = %path.display(), "plot file gone");
                self.forget(&path, &mut out.removed);
            }
        }

        // New, changed and due files.
        let now = Instant::now();
        let mut tracked = self.entries.len();
        let mut skipped = 0usize;
        let mut to_open: Vec<ScannedFile> = Vec::new();
        let mut unsupported: Vec<ScannedFile> = Vec::new();
        for file in scan.files {
            match self.entries.get(&file.path) {
                Some(entry) if entry.identity == file.identity => {
                    if entry.retry_due(now, self.config.retry_quarantined_after) {
                        to_open.push(file);
                    }
                    continue;
                }
                Some(_) => {
                    debug!(path = %file.path.display(), "plot file changed");
                    self.forget(&file.path, &mut out.removed);
                }
                None if tracked >= self.config.plots_max => {
                    skipped += 1;
                    continue;
                }
                None => tracked += 1,
            }
            match file.kind {
                FileKind::V1 => to_open.push(file),
                FileKind::V2 => unsupported.push(file),
            }
        }
        if skipped > 0 {
            warn!(
                skipped,
                plots_max = self.config.plots_max,
                "plots_max reached: {skipped} new plot files were not loaded"
            );
        }

        let mut disks = DiskCache::default();
        for file in unsupported {
            let disk = disks.disk(&self.config.disks, &file.path, file.identity.dev);
            self.set_problem(&mut out, file.path, file.identity, disk, Problem::V2, now);
        }
        let jobs: Vec<OpenJob> = to_open
            .into_iter()
            .map(|file| {
                let disk = disks.disk(&self.config.disks, &file.path, file.identity.dev);
                OpenJob { path: file.path, identity: file.identity, disk }
            })
            .collect();
        let opened = open_all(&jobs, &self.keys, self.config.open_threads, progress);
        let mut fresh: HashSet<PathBuf> = HashSet::new();
        for (job, opened) in jobs.into_iter().zip(opened) {
            match opened {
                Opened::Plot { plot, identity, keys } => {
                    let key = PlotKey(self.key_next);
                    self.key_next += 1;
                    let info = Arc::new(PlotInfo {
                        key,
                        path: job.path.clone(),
                        id: *plot.id(),
                        k: plot.k(),
                        pool: keys.pool,
                        plot_public_key: keys.plot_public_key,
                        signer: keys.signer,
                        disk: job.disk.clone(),
                        file_bytes: identity.size_bytes,
                        modified_seconds: u64::try_from(identity.mtime_ns / 1_000_000_000)
                            .unwrap_or(0),
                    });
                    self.paths_by_key.insert(key, job.path.clone());
                    fresh.insert(job.path.clone());
                    // Not served yet: the election below decides.
                    let status = Status::Duplicate { info, plot, of: None };
                    self.entries.insert(job.path, Entry { identity, disk: job.disk, status });
                }
                Opened::Problem { identity, problem } => {
                    self.set_problem(&mut out, job.path, identity, job.disk, problem, now);
                }
            }
        }
        self.elect(&fresh, &mut out);

        out.elapsed = start.elapsed();
        info!(
            scanned = out.scanned_files,
            served = self.served_by_id.len(),
            added = out.added.len(),
            removed = out.removed.len(),
            problems = out.problems.len(),
            elapsed_ms = out.elapsed.as_millis() as u64,
            "plot refresh"
        );
        out
    }

    /// Quarantines a plot (the engine saw repeated read errors). The caller removes it from its
    /// shard itself; it is not served again until its file changes or
    /// `retry_quarantined_after` passes. Another copy of the plot, if any, takes over at the
    /// next refresh. Unknown keys are ignored.
    pub fn quarantine(&mut self, key: PlotKey, reason: String) {
        let Some(path) = self.paths_by_key.remove(&key) else {
            debug!(key = key.0, "quarantine of an unknown plot key ignored");
            return;
        };
        let Some(entry) = self.entries.get_mut(&path) else {
            return;
        };
        if let Status::Served { info } | Status::Duplicate { info, .. } = &entry.status {
            let k = serve_key(self.config.serve_duplicate_ids, &info.id, &path);
            if self.served_by_id.get(&k) == Some(&path) {
                self.served_by_id.remove(&k);
            }
        }
        warn!(path = %path.display(), disk = %entry.disk, %reason, "plot quarantined");
        entry.status = Status::Quarantined { reason, since: Instant::now(), retry: true };
    }

    /// Every known file and its state, by path.
    pub fn states(&self) -> Vec<(PathBuf, PlotState)> {
        self.entries.iter().map(|(path, entry)| (path.clone(), self.state(entry))).collect()
    }

    /// How many files are in each state: `served`, `duplicate`, `quarantined`, `no_keys`
    /// (always these four, in this order).
    pub fn counts_by_state(&self) -> Vec<(&'static str, u64)> {
        let mut counts = [("served", 0u64), ("duplicate", 0), ("quarantined", 0), ("no_keys", 0)];
        for entry in self.entries.values() {
            let slot = match entry.status {
                Status::Served { .. } => 0,
                Status::Duplicate { .. } => 1,
                Status::Quarantined { .. } => 2,
                Status::NoKeys { .. } => 3,
            };
            counts[slot].1 += 1;
        }
        counts.to_vec()
    }

    /// The served plots, by path.
    pub fn served(&self) -> impl Iterator<Item = &Arc<PlotInfo>> {
        self.entries.values().filter_map(|entry| match &entry.status {
            Status::Served { info } => Some(info),
            _ => None,
        })
    }

    /// The served plot with this key (to sign for it).
    pub fn get(&self, key: PlotKey) -> Option<&Arc<PlotInfo>> {
        match &self.entries.get(self.paths_by_key.get(&key)?)?.status {
            Status::Served { info } if info.key == key => Some(info),
            _ => None,
        }
    }

    fn scan_entries_max(&self) -> usize {
        scan_entries_max(self.config.plots_max)
    }

    fn state(&self, entry: &Entry) -> PlotState {
        match &entry.status {
            Status::Served { .. } => PlotState::Served,
            Status::Duplicate { info, of, .. } => {
                // With serve_duplicate_ids nothing is a duplicate, so the id alone is the key.
                let of = self.served_by_id.get(&(info.id, None)).or(of.as_ref());
                PlotState::Duplicate { of: of.cloned().unwrap_or_default() }
            }
            Status::Quarantined { reason, .. } => PlotState::Quarantined { reason: reason.clone() },
            Status::NoKeys { reason, .. } => PlotState::NoKeys { reason: reason.clone() },
        }
    }

    /// Drops a file; a served one's key goes to `removed`.
    fn forget(&mut self, path: &Path, removed: &mut Vec<PlotKey>) {
        let Some(entry) = self.entries.remove(path) else {
            return;
        };
        let info = match entry.status {
            Status::Served { info } => {
                removed.push(info.key);
                info
            }
            Status::Duplicate { info, .. } => info,
            Status::Quarantined { .. } | Status::NoKeys { .. } => return,
        };
        self.paths_by_key.remove(&info.key);
        let k = serve_key(self.config.serve_duplicate_ids, &info.id, path);
        if self.served_by_id.get(&k).is_some_and(|p| p == path) {
            self.served_by_id.remove(&k);
        }
    }

    /// Records a file that cannot be served, logs it and lists it in `out.problems`.
    fn set_problem(
        &mut self,
        out: &mut Refresh,
        path: PathBuf,
        identity: Identity,
        disk: String,
        problem: Problem,
        now: Instant,
    ) {
        let status = match problem {
            Problem::Quarantined(reason) => {
                warn!(path = %path.display(), %disk, %reason, "plot quarantined");
                Status::Quarantined { reason, since: now, retry: true }
            }
            Problem::V2 => {
                warn!(path = %path.display(), %disk, reason = V2_REASON, "plot quarantined");
                Status::Quarantined { reason: V2_REASON.into(), since: now, retry: false }
            }
            Problem::NoKeys(reason) => {
                warn!(path = %path.display(), %disk, %reason, "plot has no keys");
                Status::NoKeys { reason, since: now }
            }
        };
        if let Status::Quarantined { reason, .. } | Status::NoKeys { reason, .. } = &status {
            out.problems.push((path.clone(), reason.clone()));
        }
        self.entries.insert(path, Entry { identity, disk, status });
    }

    /// Serves a duplicate of every plot id without a served file: the first by path among the
    /// files known before this refresh, else the first by path among those opened in it (a
    /// copy known to be good beats a new or just retried file). Reports the files opened in
    /// this refresh that are duplicates.
    fn elect(&mut self, fresh: &HashSet<PathBuf>, out: &mut Refresh) {
        let dups = self.config.serve_duplicate_ids;
        for fresh_pass in [false, true] {
            for (path, entry) in self.entries.iter_mut() {
                let Status::Duplicate { info, of, .. } = &mut entry.status else {
                    continue;
                };
                let is_fresh = fresh.contains(path);
                if is_fresh != fresh_pass {
                    continue;
                }
                let k = serve_key(dups, &info.id, path);
                if let Some(server) = self.served_by_id.get(&k) {
                    if of.as_ref() != Some(server) {
                        *of = Some(server.clone());
                        if is_fresh {
                            let reason = format!(
                                "duplicate of {} (same plot id {})",
                                server.display(),
                                hex::encode(info.id)
                            );
                            warn!(path = %path.display(), disk = %entry.disk, %reason, "duplicate plot");
                            out.problems.push((path.clone(), reason));
                        }
                    }
                    continue;
                }
                self.served_by_id.insert(k, path.clone());
                let info = Arc::clone(info);
                if let Status::Duplicate { info, plot, .. } =
                    std::mem::replace(&mut entry.status, Status::Served { info })
                {
                    out.added.push(Added { info, plot });
                }
            }
        }
    }
}

/// What identifies a served plot: its id, plus its path when duplicates are served.
type ServeKey = ([u8; 32], Option<PathBuf>);

fn serve_key(serve_duplicate_ids: bool, id: &[u8; 32], path: &Path) -> ServeKey {
    (*id, serve_duplicate_ids.then(|| path.to_owned()))
}

fn validate(config: &PlotsConfig) -> Result<(), PlotsError> {
    let fail = |what: String| Err(PlotsError::Config(what));
    if !(1..=OPEN_THREADS_MAX).contains(&config.open_threads) {
        return fail(format!("open_threads must be 1..={OPEN_THREADS_MAX}"));
    }
    if !(1..=PLOTS_MAX).contains(&config.plots_max) {
        return fail(format!("plots_max must be 1..={PLOTS_MAX}"));
    }
    if config.folders.len() > FOLDERS_MAX {
        return fail(format!("more than {FOLDERS_MAX} plot folders"));
    }
    if config.disks.len() > FOLDERS_MAX {
        return fail(format!("more than {FOLDERS_MAX} disk overrides"));
    }
    for disk in &config.disks {
        if disk.name.is_empty() || disk.paths.is_empty() {
            return fail("a disk override needs a name and at least one path".into());
        }
        if disk.paths.len() > FOLDERS_MAX {
            return fail(format!("disk override {}: more than {FOLDERS_MAX} paths", disk.name));
        }
    }
    Ok(())
}

/// One known file.
struct Entry {
    identity: Identity,
    disk: String,
    status: Status,
}

enum Status {
    Served {
        info: Arc<PlotInfo>,
    },
    /// Opened; keeps the plot to hand over when promoted. `of` is `None` only during a refresh.
    Duplicate {
        info: Arc<PlotInfo>,
        plot: Box<Plot>,
        of: Option<PathBuf>,
    },
    /// `retry` is false for files that cannot get better without changing (`.plot2`).
    Quarantined {
        reason: String,
        since: Instant,
        retry: bool,
    },
    NoKeys {
        reason: String,
        since: Instant,
    },
}

impl Entry {
    fn retry_due(&self, now: Instant, after: Duration) -> bool {
        match &self.status {
            Status::Quarantined { since, retry: true, .. } | Status::NoKeys { since, .. } => {
                now.saturating_duration_since(*since) >= after
            }
            _ => false,
        }
    }
}

/// Disk names for one refresh: overrides, then `disk_of` once per device.
#[derive(Default)]
struct DiskCache {
    by_dev: HashMap<u64, String>,
}

impl DiskCache {
    fn disk(&mut self, overrides: &[DiskOverride], path: &Path, dev: u64) -> String {
        if let Some(name) = disk_override(overrides, path) {
            return name.to_owned();
        }
        self.by_dev
            .entry(dev)
            .or_insert_with(|| match disk_io::device::disk_of(path) {
                Ok(disk) => disk.key,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot find the disk of a plot");
                    DISK_UNKNOWN.to_owned()
                }
            })
            .clone()
    }
}

/// The name of the override with the longest path prefix of `path` (the first on ties).
fn disk_override<'a>(overrides: &'a [DiskOverride], path: &Path) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for disk in overrides {
        for prefix in &disk.paths {
            if path.starts_with(prefix) {
                let len = prefix.components().count();
                if best.is_none_or(|(best_len, _)| len > best_len) {
                    best = Some((len, &disk.name));
                }
            }
        }
    }
    best.map(|(_, name)| name)
}

struct OpenJob {
    path: PathBuf,
    identity: Identity,
    disk: String,
}

/// Keys found for an opened plot.
struct PlotKeysFound {
    pool: PoolKey,
    plot_public_key: [u8; 48],
    signer: Signer,
}

enum Problem {
    Quarantined(String),
    NoKeys(String),
    V2,
}

// Short-lived (one per file opened during a refresh), and the big variant is the common one.
#[allow(clippy::large_enum_variant)]
enum Opened {
    /// `identity` is the opened file's (it may have changed since the walk).
    Plot {
        plot: Box<Plot>,
        identity: Identity,
        keys: PlotKeysFound,
    },
    Problem {
        identity: Identity,
        problem: Problem,
    },
}

/// Opens every job's header on up to `threads` threads; the results in job order.
fn open_all(jobs: &[OpenJob], keys: &KeysFile, threads: usize, progress: bool) -> Vec<Opened> {
    let bar = if progress && !jobs.is_empty() {
        let bar =
            ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} plot headers {elapsed} (eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Opened>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (Some(job), Some(slot)) = (jobs.get(i), slots.get(i)) else {
            break;
        };
        let opened = open_one(&job.path, job.identity, keys);
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(opened);
        }
        bar.inc(1);
    };
    let workers = threads.min(jobs.len());
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            match std::thread::Builder::new().name(format!("plot-open-{i}")).spawn_scoped(s, work) {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    warn!(error = %e, "cannot start a plot opening thread");
                    break;
                }
            }
        }
        if handles.is_empty() {
            work();
        }
        for handle in handles {
            if handle.join().is_err() {
                warn!("a plot opening thread panicked");
            }
        }
    });
    bar.finish_and_clear();
    slots
        .into_iter()
        .zip(jobs)
        .map(|(slot, job)| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| Opened::Problem {
                identity: job.identity,
                problem: Problem::Quarantined(
                    "opening the plot did not finish (its thread panicked)".into(),
                ),
            })
        })
        .collect()
}

/// Opens one plot's header and finds its keys.
fn open_one(path: &Path, scanned: Identity, keys: &KeysFile) -> Opened {
    let (file, plot) = match shard::open_plot(path) {
        Ok(opened) => opened,
        Err(e) => {
            let text = e.to_string();
            let prefix = format!("{}: ", path.display());
            let reason = match (e.kind(), text.strip_prefix(&prefix)) {
                (std::io::ErrorKind::InvalidData, Some(rest)) => rest.to_owned(),
                (std::io::ErrorKind::InvalidData, None) => text,
                _ => format!("cannot read the plot header: {text}"),
            };
            return Opened::Problem { identity: scanned, problem: Problem::Quarantined(reason) };
        }
    };
    let identity = file.metadata().map_or(scanned, |meta| Identity::of(&meta));
    drop(file);
    match find_keys(path, &plot, keys) {
        Ok(keys) => Opened::Plot { plot: Box::new(plot), identity, keys },
        Err(problem) => Opened::Problem { identity, problem },
    }
}

/// The plot's keys: its keys file entry if it has one, else its memo.
fn find_keys(path: &Path, plot: &Plot, keys: &KeysFile) -> Result<PlotKeysFound, Problem> {
    if let Some(entry) = keys.lookup(path) {
        if entry.plot_id != *plot.id() {
            return Err(Problem::Quarantined(format!(
                "keys file entry for {} does not match the plot id",
                entry.file
            )));
        }
        return Ok(PlotKeysFound {
            pool: PoolKey::PublicKey(entry.pool_public_key),
            plot_public_key: entry.plot_public_key,
            signer: Signer::KeysFile { plot_secret_key: entry.plot_secret_key.clone() },
        });
    }
    if plot.memo().is_empty() {
        return Err(Problem::NoKeys(
            "no keys file entry for this file and no memo in the plot".into(),
        ));
    }
    match keys::check_plot_id(plot.memo(), plot.id()) {
        Ok(plot_keys) => Ok(PlotKeysFound {
            pool: match *plot_keys.pool() {
                PoolKind::PublicKey(pk) => PoolKey::PublicKey(pk),
                PoolKind::ContractPuzzleHash(ph) => PoolKey::ContractPuzzleHash(ph),
            },
            plot_public_key: *plot_keys.plot_public_key(),
            signer: Signer::Memo(plot_keys),
        }),
        Err(e @ KeyError::IdMismatch { .. }) => {
            Err(Problem::Quarantined(format!("plot id does not match the memo ({e})")))
        }
        Err(e) => Err(Problem::NoKeys(format!(
            "no keys file entry for this file and the memo is unusable: {e}"
        ))),
    }
}

/// A keys file opened for the plot tools (`harvester check --keys-file`).
#[derive(Debug)]
pub struct KeysFileEntries(KeysFile);

/// What a keys file says about one plot (no secret: the tools only check the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFileEntry {
    pub pool_public_key: [u8; 48],
    pub plot_public_key: [u8; 48],
    /// sha256(pool public key ++ plot public key): the id the plot must have.
    pub plot_id: [u8; 32],
}

impl KeysFileEntries {
    pub fn load(path: &Path) -> Result<KeysFileEntries, PlotsError> {
        KeysFile::load(path, PLOTS_MAX).map(KeysFileEntries)
    }

    /// The entry for the plot at `path` (by absolute path, then by file name).
    pub fn entry(&self, path: &Path) -> Option<KeysFileEntry> {
        self.0.lookup(path).map(|e| KeysFileEntry {
            pool_public_key: e.pool_public_key,
            plot_public_key: e.plot_public_key,
            plot_id: e.plot_id,
        })
    }
}
