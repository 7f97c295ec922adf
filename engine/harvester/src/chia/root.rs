//! A chia installation's root (`CHIA_ROOT`): what chia's harvester reads from
//! `config/config.yaml`, read the same way. Unknown keys are ignored (chia's file has hundreds);
//! YAML anchors and aliases, which chia's file uses, are resolved. Relative paths are relative
//! to the root, as in chia.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::chia::consensus::ConsensusConstants;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// config.yaml is read whole; chia's own is about 30 KiB.
const CONFIG_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Farmers dialled at most.
pub const FARMER_PEERS_MAX: usize = 64;

/// Why a chia root cannot be used; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {CONFIG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
    #[error("no chia root: pass --chia-root, or set CHIA_ROOT or HOME")]
    NoRoot,
}

/// One farmer to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmerPeer {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for FarmerPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the harvester takes from a chia root.
#[derive(Debug, Clone)]
pub struct ChiaRoot {
    pub root: PathBuf,
    pub config_path: PathBuf,
    /// `selected_network`: the handshake's network id and the constants' overrides.
    pub network: String,
    pub farmer_peers: Vec<FarmerPeer>,
    pub plot_directories: Vec<PathBuf>,
    pub recursive_plot_scan: bool,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub refresh_interval: Duration,
    pub retry_invalid: Duration,
    /// Plots or paths per plot-sync message.
    pub batch_size: usize,
    /// The selected network's consensus constants, with config.yaml's overrides applied.
    pub constants: ConsensusConstants,
    /// `harvester.logging.log_level`, if set.
    pub log_level: Option<String>,
}

/// The chia root to use: `explicit`, else `$CHIA_ROOT`, else `~/.chia/mainnet`, as chia does.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, RootError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(r) = std::env::var_os("CHIA_ROOT").filter(|r| !r.is_empty()) {
        return Ok(expand_home(Path::new(&r)));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(RootError::NoRoot)?;
    Ok(Path::new(&home).join(".chia").join("mainnet"))
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => p.to_path_buf(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct File {
    selected_network: Option<String>,
    private_ssl_ca: Option<CaSection>,
    network_overrides: Option<Overrides>,
    harvester: Option<HarvesterSection>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct CaSection {
    crt: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Overrides {
    constants: BTreeMap<String, BTreeMap<String, Scalar>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HarvesterSection {
    selected_network: Option<String>,
    farmer_peers: Option<Vec<PeerSection>>,
    plot_directories: Option<Vec<String>>,
    recursive_plot_scan: Option<bool>,
    ssl: Option<SslSection>,
    private_ssl_ca: Option<CaSection>,
    plots_refresh_parameter: Option<RefreshSection>,
    network_overrides: Option<Overrides>,
    logging: Option<LoggingSection>,
}

#[derive(Deserialize)]
struct PeerSection {
    host: String,
    port: u16,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SslSection {
    private_crt: Option<String>,
    private_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefreshSection {
    interval_seconds: Option<f64>,
    retry_invalid_seconds: Option<f64>,
    batch_size: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoggingSection {
    log_level: Option<String>,
}

/// A constant's value in config.yaml: an integer (possibly above u64, like
/// `DIFFICULTY_CONSTANT_FACTOR`), or something else (hex strings such as `GENESIS_CHALLENGE`),
/// which the harvester does not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Int(u128),
    Other,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a constant's value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(u128::from(v)))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(u128::try_from(v).map(Scalar::Int).unwrap_or(Scalar::Other))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(u128::try_from(v).map(Scalar::Int).unwrap_or(Scalar::Other))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl ChiaRoot {
    /// Reads `root/config/config.yaml`.
    pub fn load(root: &Path) -> Result<ChiaRoot, RootError> {
        let config_path = root.join("config").join("config.yaml");
        let read = |source| RootError::Read { path: config_path.clone(), source };
        let meta = std::fs::metadata(&config_path).map_err(read)?;
        if meta.len() > CONFIG_BYTES_MAX {
            return Err(RootError::TooLarge { path: config_path });
        }
        let text = std::fs::read_to_string(&config_path).map_err(read)?;
        Self::parse(root, &config_path, &text)
    }

    /// Parses config.yaml's text (`config_path` names it in errors).
    pub fn parse(root: &Path, config_path: &Path, text: &str) -> Result<ChiaRoot, RootError> {
        let file: File = serde_saphyr::from_str(text).map_err(|e| RootError::Parse {
            path: config_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: String| RootError::Invalid {
            path: config_path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let harvester = file.harvester.ok_or_else(|| {
            invalid("harvester", "missing: this is not a chia config.yaml".into())
        })?;
        let network = harvester
            .selected_network
            .or(file.selected_network)
            .unwrap_or_else(|| "mainnet".to_string());
        let farmer_peers: Vec<FarmerPeer> = harvester
            .farmer_peers
            .unwrap_or_default()
            .into_iter()
            .map(|p| FarmerPeer { host: p.host, port: p.port })
            .collect();
        if farmer_peers.is_empty() {
            return Err(invalid("harvester.farmer_peers", "no farmer to connect to".into()));
        }
        if farmer_peers.len() > FARMER_PEERS_MAX {
            return Err(invalid(
                "harvester.farmer_peers",
                format!("{} farmers; at most {FARMER_PEERS_MAX}", farmer_peers.len()),
            ));
        }
        let at_root = |p: &str| {
            let p = expand_home(Path::new(p));
            if p.is_absolute() {
                p
            } else {
                root.join(p)
            }
        };
        let ssl = harvester.ssl.unwrap_or_default();
        let ca = harvester.private_ssl_ca.or(file.private_ssl_ca).unwrap_or_default();
        let ca_cert = at_root(ca.crt.as_deref().unwrap_or("config/ssl/ca/private_ca.crt"));
        let cert = at_root(
            ssl.private_crt.as_deref().unwrap_or("config/ssl/harvester/private_harvester.crt"),
        );
        let key = at_root(
            ssl.private_key.as_deref().unwrap_or("config/ssl/harvester/private_harvester.key"),
        );
        let refresh = harvester.plots_refresh_parameter.unwrap_or_default();
        let seconds = |key: &str, v: Option<f64>, default: f64| match v {
            None => Ok(Duration::from_secs_f64(default)),
            Some(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(invalid(key, format!("{s} is not a number of seconds"))),
        };
        let refresh_interval = seconds(
            "harvester.plots_refresh_parameter.interval_seconds",
            refresh.interval_seconds,
            120.0,
        )?;
        let retry_invalid = seconds(
            "harvester.plots_refresh_parameter.retry_invalid_seconds",
            refresh.retry_invalid_seconds,
            1200.0,
        )?;
        let batch_size = refresh.batch_size.unwrap_or(300).clamp(1, 10_000) as usize;
        let overrides = harvester.network_overrides.or(file.network_overrides).unwrap_or_default();
        let empty = BTreeMap::new();
        let values = overrides.constants.get(&network).unwrap_or(&empty);
        let ints = values.iter().filter_map(|(name, v)| match v {
            Scalar::Int(i) => Some((name.as_str(), *i)),
            Scalar::Other => None,
        });
        let constants = ConsensusConstants::for_network(&network, ints).map_err(|e| {
            invalid(&format!("network_overrides.constants.{network}"), e.to_string())
        })?;
        Ok(ChiaRoot {
            root: root.to_path_buf(),
            config_path: config_path.to_path_buf(),
            network,
            farmer_peers,
            plot_directories: harvester
                .plot_directories
                .unwrap_or_default()
                .iter()
                .map(|p| at_root(p))
                .collect(),
            recursive_plot_scan: harvester.recursive_plot_scan.unwrap_or(false),
            ca_cert,
            cert,
            key,
            refresh_interval,
            retry_invalid,
            batch_size,
            constants,
            log_level: harvester.logging.and_then(|l| l.log_level),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
min_mainnet_k_size: 32
network_overrides: &network_overrides
  constants:
    mainnet:
      GENESIS_CHALLENGE: ccd5bb71183532bff220ba46c268991a3ff07eb358e8255a65c30a2dce0e5fbb
      MIN_PLOT_SIZE_V1: 18
      DIFFICULTY_CONSTANT_FACTOR: 147573952589676412928
    testnet11:
      MIN_PLOT_SIZE_V1: 20
  config:
    mainnet:
      address_prefix: "xch"
selected_network: &selected_network "mainnet"
private_ssl_ca:
  crt: "config/ssl/ca/private_ca.crt"
  key: "config/ssl/ca/private_ca.key"
harvester:
  farmer_peers:
    - host: localhost
      port: 8447
  plots_refresh_parameter:
    interval_seconds: 2
    batch_size: 50
  network_overrides: *network_overrides
  selected_network: *selected_network
  plot_directories:
    - /mnt/a
    - rel/b
  recursive_plot_scan: True
  ssl:
    private_crt: "config/ssl/harvester/private_harvester.crt"
    private_key: "/abs/h.key"
  logging:
    log_level: WARNING
    log_stdout: false
  unknown_key: [1, 2]
"#;

    #[test]
    fn reads_what_chia_writes() {
        let r = ChiaRoot::parse(Path::new("/root"), Path::new("/root/config/config.yaml"), CONFIG)
            .unwrap();
        assert_eq!(r.network, "mainnet");
        assert_eq!(r.farmer_peers, [FarmerPeer { host: "localhost".into(), port: 8447 }]);
        assert_eq!(r.plot_directories, [PathBuf::from("/mnt/a"), PathBuf::from("/root/rel/b")]);
        assert!(r.recursive_plot_scan);
        assert_eq!(r.ca_cert, Path::new("/root/config/ssl/ca/private_ca.crt"));
        assert_eq!(r.cert, Path::new("/root/config/ssl/harvester/private_harvester.crt"));
        assert_eq!(r.key, Path::new("/abs/h.key"));
        assert_eq!(r.refresh_interval, Duration::from_secs(2));
        assert_eq!(r.batch_size, 50);
        assert_eq!(r.constants.min_plot_size_v1, 18);
        assert_eq!(r.constants.difficulty_constant_factor, 1u128 << 67);
        assert_eq!(r.log_level.as_deref(), Some("WARNING"));
    }

    #[test]
    fn the_selected_networks_overrides_apply() {
        let text = CONFIG.replace("\"mainnet\"", "\"testnet11\"");
        let r = ChiaRoot::parse(Path::new("/r"), Path::new("c"), &text).unwrap();
        assert_eq!(r.network, "testnet11");
        assert_eq!(r.constants.min_plot_size_v1, 20);
    }

    #[test]
    fn errors_name_the_key() {
        let no_peers = CONFIG.replace("    - host: localhost\n      port: 8447\n", "");
        let e = ChiaRoot::parse(Path::new("/r"), Path::new("c"), &no_peers).unwrap_err();
        assert!(e.to_string().contains("harvester.farmer_peers"), "{e}");
        let bad = CONFIG.replace("MIN_PLOT_SIZE_V1: 18", "MIN_PLOT_SIZE_V1: 300");
        let e = ChiaRoot::parse(Path::new("/r"), Path::new("c"), &bad).unwrap_err();
        assert!(e.to_string().contains("MIN_PLOT_SIZE_V1"), "{e}");
        let e = ChiaRoot::parse(Path::new("/r"), Path::new("c"), "a: [").unwrap_err();
        assert!(matches!(e, RootError::Parse { .. }), "{e}");
        let e = ChiaRoot::parse(Path::new("/r"), Path::new("c"), "x: 1").unwrap_err();
        assert!(e.to_string().contains("not a chia config.yaml"), "{e}");
    }
}
