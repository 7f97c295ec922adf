//! The daemon's configuration file (TOML). Every key has a default; `docs/configuration.md`
//! lists them all. Relative paths are taken relative to the configuration file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::limits::{
    CHALLENGES_IN_FLIGHT_MAX, CHALLENGES_REMEMBERED_MAX, DURATION_SECONDS_MAX, EVENTS_QUEUED_MAX,
    FRAME_BYTES_MAX, FRAME_BYTES_MIN, JOBS_QUEUED_MAX, LOOKUPS_ACTIVE_MAX, OPEN_THREADS_MAX,
    PLOTS_MAX, POOL_KEYS_MAX, PROOF_JOBS_QUEUED_MAX, QUALITIES_MAX, READS_IN_FLIGHT_MAX,
    RETRY_QUARANTINED_AFTER_SECONDS_MAX, SHARDS_PER_DISK_MAX, SIGNATURES_IN_FLIGHT_MAX,
};

/// Why a configuration cannot be used; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub farmer: FarmerConfig,
    pub tls: TlsConfig,
    pub plots: PlotsSection,
    /// Overrides of the plot -> disk grouping (longest path prefix wins).
    pub disks: Vec<DiskSection>,
    pub engine: EngineConfig,
    pub protocol: ProtocolConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FarmerConfig {
    /// Where the farmer listens; the harvester dials it.
    pub address: String,
    /// The name the farmer's certificate must carry.
    pub server_name: String,
    /// Plain TCP without TLS. Only for tests on a trusted host.
    pub insecure: bool,
    /// First wait before dialling again after a failed or lost connection; doubles each time.
    pub reconnect_initial_seconds: f64,
    pub reconnect_max_seconds: f64,
    /// Dialling (TCP + TLS handshake) gives up after this long.
    pub connect_timeout_seconds: f64,
    /// A frame that cannot be written for this long closes the connection.
    pub write_timeout_seconds: f64,
}

impl Default for FarmerConfig {
    fn default() -> Self {
        FarmerConfig {
            address: "127.0.0.1:8447".into(),
            server_name: "farmer".into(),
            insecure: false,
            reconnect_initial_seconds: 0.5,
            reconnect_max_seconds: 30.0,
            connect_timeout_seconds: 10.0,
            write_timeout_seconds: 30.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The private CA's certificate: the farmer's certificate must chain to it.
    pub ca_cert: PathBuf,
    /// The harvester's certificate and key, presented to the farmer.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_cert: "certs/ca.crt".into(),
            cert: "certs/harvester.crt".into(),
            key: "certs/harvester.key".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlotsSection {
    /// Folders searched for `*.plot` files.
    pub folders: Vec<PathBuf>,
    pub recursive: bool,
    /// Plot secret keys and pool keys of plots without a usable memo (the original design).
    pub keys_file: Option<PathBuf>,
    /// Seconds between background rescans of the folders.
    pub refresh_interval_seconds: f64,
    /// Threads opening plot headers in parallel.
    pub open_threads: usize,
    pub plots_max: usize,
    /// A quarantined file is retried after this long even when it did not change.
    pub retry_quarantined_after_seconds: f64,
    /// Serve copies of one plot (same id) as separate plots: for benchmarks and soaks only.
    pub serve_duplicate_ids: bool,
}

impl Default for PlotsSection {
    fn default() -> Self {
        PlotsSection {
            folders: Vec::new(),
            recursive: true,
            keys_file: None,
            refresh_interval_seconds: 120.0,
            open_threads: 8,
            plots_max: 100_000,
            retry_quarantined_after_seconds: 1200.0,
            serve_duplicate_ids: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSection {
    pub name: String,
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupMode {
    Complete,
    Chiapos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Uring,
    Pread,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub mode: LookupMode,
    pub backend: BackendKind,
    /// O_DIRECT reads (falling back to buffered where refused); false reads through the page cache.
    pub direct_io: bool,
    /// Reads in flight per disk; never more than the device's queue depth.
    pub reads_in_flight_max: usize,
    /// Shards (threads and rings) per disk. A disk's plots are split among them and so is
    /// `reads_in_flight_max`; more than one lets a fast disk (NVMe, or plots in the page
    /// cache) use more than one core for decoding.
    pub shards_per_disk: usize,
    /// A challenge's lookups on one disk are answered as timed out after this long.
    pub lookup_deadline_seconds: f64,
    /// A proof fetch is answered as timed out after this long.
    pub proof_deadline_seconds: f64,
    /// A read in flight this long, with no read of its disk completed meanwhile, marks the
    /// disk degraded.
    pub read_stuck_after_seconds: f64,
    pub lookups_active_max: usize,
    pub jobs_queued_max: usize,
    /// Proof jobs waiting per disk, apart from lookups (proofs also start and read first).
    pub proof_jobs_queued_max: usize,
    /// Consecutive failed reads of one plot before it is quarantined.
    pub plot_errors_max: u32,
    /// Engine events waiting for a slow connection (per connection) before the engine slows.
    pub events_queued_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mode: LookupMode::Complete,
            backend: BackendKind::Uring,
            direct_io: true,
            reads_in_flight_max: 64,
            shards_per_disk: 1,
            lookup_deadline_seconds: 20.0,
            proof_deadline_seconds: 20.0,
            read_stuck_after_seconds: 1.0,
            lookups_active_max: 4096,
            jobs_queued_max: 1024,
            proof_jobs_queued_max: 65_536,
            plot_errors_max: 3,
            events_queued_max: 65536,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    pub frame_bytes_max: u32,
    pub pool_keys_max: u32,
    pub challenges_in_flight_max: usize,
    pub challenges_remembered_max: usize,
    pub qualities_max: usize,
    pub quality_ttl_seconds: f64,
    /// Signatures computed at once per connection.
    pub signatures_in_flight_max: usize,
    /// A frame that has started arriving must be complete within this long.
    pub frame_read_timeout_seconds: f64,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            frame_bytes_max: 1 << 20,
            pool_keys_max: 1024,
            challenges_in_flight_max: 64,
            challenges_remembered_max: 256,
            qualities_max: 1 << 20,
            quality_ttl_seconds: 600.0,
            signatures_in_flight_max: 256,
            frame_read_timeout_seconds: 30.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint; empty disables it.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: "127.0.0.1:9914".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter (`harvester=debug`).
    /// The `RUST_LOG` environment variable wins when set.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Also append one line per challenge (or chia signage point) to this file, in the form
    /// chia's harvester writes to its debug.log ("N plots were eligible for farming ... Found
    /// M proofs. Time: T s. Total P plots"), for log monitors written for chia. Off if unset.
    pub chia_activity_file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "text".into(), chia_activity_file: None }
    }
}

/// Seconds from the file as a duration (validated to be finite and positive first).
pub fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

impl Config {
    /// Reads, parses and checks `path`, resolving relative paths against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Config::parse(&text, path)?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses and checks configuration text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.ca_cert);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        self.plots.folders.iter_mut().for_each(fix);
        if let Some(k) = &mut self.plots.keys_file {
            fix(k);
        }
        for d in &mut self.disks {
            d.paths.iter_mut().for_each(fix);
        }
        if let Some(f) = &mut self.log.chia_activity_file {
            fix(f);
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let secs: [(&'static str, f64); 10] = [
            ("protocol.frame_read_timeout_seconds", self.protocol.frame_read_timeout_seconds),
            ("farmer.reconnect_initial_seconds", self.farmer.reconnect_initial_seconds),
            ("farmer.reconnect_max_seconds", self.farmer.reconnect_max_seconds),
            ("farmer.connect_timeout_seconds", self.farmer.connect_timeout_seconds),
            ("farmer.write_timeout_seconds", self.farmer.write_timeout_seconds),
            ("plots.refresh_interval_seconds", self.plots.refresh_interval_seconds),
            ("engine.lookup_deadline_seconds", self.engine.lookup_deadline_seconds),
            ("engine.proof_deadline_seconds", self.engine.proof_deadline_seconds),
            ("engine.read_stuck_after_seconds", self.engine.read_stuck_after_seconds),
            ("protocol.quality_ttl_seconds", self.protocol.quality_ttl_seconds),
        ];
        for (key, v) in secs {
            if !(v.is_finite() && v > 0.0 && v <= DURATION_SECONDS_MAX) {
                return Err(bad(
                    key,
                    format!("{v}: must be a number of seconds in (0, {DURATION_SECONDS_MAX}]"),
                ));
            }
        }
        let retry = self.plots.retry_quarantined_after_seconds;
        if !(retry.is_finite() && (0.0..=RETRY_QUARANTINED_AFTER_SECONDS_MAX).contains(&retry)) {
            return Err(bad(
                "plots.retry_quarantined_after_seconds",
                format!(
                    "{retry}: must be a number of seconds in \
                     [0, {RETRY_QUARANTINED_AFTER_SECONDS_MAX}]"
                ),
            ));
        }
        let counts: [(&'static str, usize, usize); 13] = [
            ("plots.open_threads", self.plots.open_threads, OPEN_THREADS_MAX),
            ("plots.plots_max", self.plots.plots_max, PLOTS_MAX),
            ("engine.reads_in_flight_max", self.engine.reads_in_flight_max, READS_IN_FLIGHT_MAX),
            ("engine.shards_per_disk", self.engine.shards_per_disk, SHARDS_PER_DISK_MAX),
            ("engine.lookups_active_max", self.engine.lookups_active_max, LOOKUPS_ACTIVE_MAX),
            ("engine.jobs_queued_max", self.engine.jobs_queued_max, JOBS_QUEUED_MAX),
            (
                "engine.proof_jobs_queued_max",
                self.engine.proof_jobs_queued_max,
                PROOF_JOBS_QUEUED_MAX,
            ),
            ("engine.events_queued_max", self.engine.events_queued_max, EVENTS_QUEUED_MAX),
            ("protocol.pool_keys_max", self.protocol.pool_keys_max as usize, POOL_KEYS_MAX),
            (
                "protocol.challenges_in_flight_max",
                self.protocol.challenges_in_flight_max,
                CHALLENGES_IN_FLIGHT_MAX,
            ),
            (
                "protocol.challenges_remembered_max",
                self.protocol.challenges_remembered_max,
                CHALLENGES_REMEMBERED_MAX,
            ),
            ("protocol.qualities_max", self.protocol.qualities_max, QUALITIES_MAX),
            (
                "protocol.signatures_in_flight_max",
                self.protocol.signatures_in_flight_max,
                SIGNATURES_IN_FLIGHT_MAX,
            ),
        ];
        for (key, v, max) in counts {
            if v == 0 || v > max {
                return Err(bad(key, format!("{v}: must be in 1..={max}")));
            }
        }
        let frame = self.protocol.frame_bytes_max;
        if !(FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&frame) {
            return Err(bad(
                "protocol.frame_bytes_max",
                format!("{frame}: must be in {FRAME_BYTES_MIN}..={FRAME_BYTES_MAX}"),
            ));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(bad("metrics.listen", format!("{:?}: not ip:port", self.metrics.listen)));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(bad("log.format", format!("{:?}: text or json", self.log.format)));
        }
        if self.farmer.address.is_empty() {
            return Err(bad("farmer.address", "empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", Path::new("x.toml")).expect("defaults are valid");
        assert_eq!(c.farmer.address, "127.0.0.1:8447");
        assert_eq!(c.engine.mode, LookupMode::Complete);
        assert_eq!(c.metrics.listen, "127.0.0.1:9914");
        assert!(c.plots.recursive);
    }

    #[test]
    fn full_file_parses_and_paths_resolve() {
        let text = r#"
            [farmer]
            address = "10.0.0.1:8447"
            insecure = true
            [tls]
            ca_cert = "/etc/h/ca.crt"
            [plots]
            folders = ["plots", "/mnt/a"]
            keys_file = "keys.toml"
            refresh_interval_seconds = 5
            [[disks]]
            name = "jbod-1"
            paths = ["/mnt/a"]
            [engine]
            mode = "chiapos"
            backend = "pread"
            direct_io = false
            [protocol]
            challenges_in_flight_max = 8
            [metrics]
            listen = ""
            [log]
            level = "debug"
            format = "json"
        "#;
        let mut c = Config::parse(text, Path::new("/srv/h.toml")).expect("valid");
        c.resolve_paths(Path::new("/srv"));
        assert_eq!(c.plots.folders, vec![PathBuf::from("/srv/plots"), PathBuf::from("/mnt/a")]);
        assert_eq!(c.plots.keys_file, Some(PathBuf::from("/srv/keys.toml")));
        assert_eq!(c.tls.ca_cert, PathBuf::from("/etc/h/ca.crt"));
        assert_eq!(c.tls.cert, PathBuf::from("/srv/certs/harvester.crt"));
        assert_eq!(c.engine.backend, BackendKind::Pread);
        assert_eq!(c.disks[0].name, "jbod-1");
        assert_eq!(c.protocol.challenges_in_flight_max, 8);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::parse("[farmer]\nadress = \"x\"\n", Path::new("h.toml")).unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
        let e = Config::parse("[engine]\nlookup_deadline_seconds = -1\n", Path::new("h.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("engine.lookup_deadline_seconds"), "{e}");
        let e =
            Config::parse("[engine]\nreads_in_flight_max = 0\n", Path::new("h.toml")).unwrap_err();
        assert!(e.to_string().contains("reads_in_flight_max"), "{e}");
        let e = Config::parse("[metrics]\nlisten = \"nope\"\n", Path::new("h.toml")).unwrap_err();
        assert!(e.to_string().contains("metrics.listen"), "{e}");
    }

    /// `key = value` in `[section]` alone: `Ok` or the error's text.
    fn parse_one(section: &str, key: &str, value: &str) -> Result<Config, String> {
        let text = format!("[{section}]\n{key} = {value}\n");
        Config::parse(&text, Path::new("h.toml")).map_err(|e| e.to_string())
    }

    /// The limited counts: section, key, and the largest value (from `limits`).
    fn count_limits() -> [(&'static str, &'static str, u64); 14] {
        use crate::limits::*;
        [
            ("plots", "open_threads", OPEN_THREADS_MAX as u64),
            ("plots", "plots_max", PLOTS_MAX as u64),
            ("engine", "reads_in_flight_max", READS_IN_FLIGHT_MAX as u64),
            ("engine", "shards_per_disk", SHARDS_PER_DISK_MAX as u64),
            ("engine", "lookups_active_max", LOOKUPS_ACTIVE_MAX as u64),
            ("engine", "jobs_queued_max", JOBS_QUEUED_MAX as u64),
            ("engine", "proof_jobs_queued_max", PROOF_JOBS_QUEUED_MAX as u64),
            ("engine", "events_queued_max", EVENTS_QUEUED_MAX as u64),
            ("protocol", "frame_bytes_max", u64::from(FRAME_BYTES_MAX)),
            ("protocol", "pool_keys_max", POOL_KEYS_MAX as u64),
            ("protocol", "challenges_in_flight_max", CHALLENGES_IN_FLIGHT_MAX as u64),
            ("protocol", "challenges_remembered_max", CHALLENGES_REMEMBERED_MAX as u64),
            ("protocol", "qualities_max", QUALITIES_MAX as u64),
            ("protocol", "signatures_in_flight_max", SIGNATURES_IN_FLIGHT_MAX as u64),
        ]
    }

    fn count_low(key: &str) -> u64 {
        if key == "frame_bytes_max" {
            u64::from(crate::limits::FRAME_BYTES_MIN)
        } else {
            1
        }
    }

    /// Every limited count is accepted from 1 up to exactly its constant in `limits`, and
    /// refused at 0 and one above, with a message naming the key and the constant's value.
    #[test]
    fn counts_are_accepted_up_to_their_limit_and_refused_above() {
        for (section, key, max) in count_limits() {
            let low = count_low(key);
            for ok in [low, max] {
                let parsed = parse_one(section, key, &ok.to_string());
                assert!(parsed.is_ok(), "{section}.{key} = {ok}: {}", parsed.unwrap_err());
            }
            for refused in [low - 1, max + 1] {
                let e = parse_one(section, key, &refused.to_string()).unwrap_err();
                assert!(e.contains(&format!("{section}.{key}: {refused}: must be in")), "{e}");
                assert!(e.contains(&format!("{low}..={max}")), "{e}");
            }
        }
    }

    /// Every duration is accepted up to exactly its constant in `limits` and refused above.
    #[test]
    fn durations_are_accepted_up_to_their_limit_and_refused_above() {
        use crate::limits::{DURATION_SECONDS_MAX, RETRY_QUARANTINED_AFTER_SECONDS_MAX};
        let mut limits: Vec<(&str, &str, f64)> = [
            ("protocol", "frame_read_timeout_seconds"),
            ("farmer", "reconnect_initial_seconds"),
            ("farmer", "reconnect_max_seconds"),
            ("farmer", "connect_timeout_seconds"),
            ("farmer", "write_timeout_seconds"),
            ("plots", "refresh_interval_seconds"),
            ("engine", "lookup_deadline_seconds"),
            ("engine", "proof_deadline_seconds"),
            ("engine", "read_stuck_after_seconds"),
            ("protocol", "quality_ttl_seconds"),
        ]
        .into_iter()
        .map(|(section, key)| (section, key, DURATION_SECONDS_MAX))
        .collect();
        limits.push((
            "plots",
            "retry_quarantined_after_seconds",
            RETRY_QUARANTINED_AFTER_SECONDS_MAX,
        ));
        for (section, key, max) in limits {
            let parsed = parse_one(section, key, &format!("{max:?}"));
            assert!(parsed.is_ok(), "{section}.{key} = {max}: {}", parsed.unwrap_err());
            let e = parse_one(section, key, &format!("{:?}", max + 1.0)).unwrap_err();
            assert!(e.contains(&format!("{section}.{key}: {}", max + 1.0)), "{e}");
            assert!(e.contains(&format!("{max}]")), "{e}");
        }
    }

    /// `docs/configuration.md` gives each limit's range as `limits` has it.
    #[test]
    fn the_documented_limits_are_the_constants() {
        use crate::limits::{DURATION_SECONDS_MAX, RETRY_QUARANTINED_AFTER_SECONDS_MAX};
        let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&doc).expect("docs/configuration.md");
        // A key's line and the comment lines under it.
        let entry = |key: &str| -> String {
            let start = doc.find(&format!("\n{key} = ")).unwrap_or_else(|| panic!("{key}"));
            let lines = doc[start + 1..].lines();
            let mut text = String::new();
            for (i, line) in lines.enumerate() {
                if i > 0 && !line.starts_with(' ') {
                    break;
                }
                text.push_str(line);
                text.push('\n');
            }
            text
        };
        for (_, key, max) in count_limits() {
            let range = format!("{}..={max}", count_low(key));
            assert!(entry(key).contains(&range), "{key}: {range} not in {}", entry(key));
        }
        assert!(doc.contains(&format!("(0, {DURATION_SECONDS_MAX}]")));
        let retry = entry("retry_quarantined_after_seconds");
        assert!(retry.contains(&format!("[0, {RETRY_QUARANTINED_AFTER_SECONDS_MAX}]")), "{retry}");
    }
}
