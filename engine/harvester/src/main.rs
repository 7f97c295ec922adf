//! `harvester`: the daemon (`run`), its certificates (`certs`), and the plot tools (`prove`,
//! `verify`, `check`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod check;
mod hexarg;
mod plot_file;
mod prove;

#[derive(Parser)]
#[command(name = "harvester", version, about = "A proof-of-space harvester for chiapos v1 plots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ModeArg {
    /// Every table-7 entry of the challenge, also those chiapos misses (a superset).
    Complete,
    /// Exactly chiapos' answers and proof indices.
    Chiapos,
}

impl From<ModeArg> for plot_format::Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Complete => plot_format::Mode::Complete,
            ModeArg::Chiapos => plot_format::Mode::Chiapos,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the harvester daemon: serve the plots of the configured folders to the farmer.
    ///
    /// With --chia-root, serve chia-blockchain's farmer as `chia start harvester` does, from
    /// the chia root's config.yaml (farmer peers, plot directories, certificates, network).
    #[command(group(clap::ArgGroup::new("front").required(true).multiple(true).args(["config", "chia_root"])))]
    Run {
        /// The configuration file (TOML; see docs/configuration.md). With --chia-root it adds
        /// engine, metrics and log settings on top of config.yaml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Serve chia's farmer from this chia root (without a value: $CHIA_ROOT, then
        /// ~/.chia/mainnet).
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
        chia_root: Option<PathBuf>,
        /// Write HdrHistogram interval logs (read, lookup, proof, queue wait per disk; challenge,
        /// proof request and signature latency) to this file, in microseconds.
        #[arg(long)]
        hlog: Option<PathBuf>,
        /// Seconds per interval of the --hlog file.
        #[arg(long, default_value_t = 10.0)]
        hlog_interval_seconds: f64,
    },
    /// Create a private CA and the farmer's and harvester's certificates (mutual TLS).
    Certs {
        /// Folder to write ca.crt, ca.key, farmer.crt/.key and harvester.crt/.key into.
        #[arg(long)]
        dir: PathBuf,
        /// Sign with this existing CA certificate instead of making a new CA (needs --ca-key).
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Look up challenges in plots; one JSON object per quality found, on stdout.
    Prove {
        /// Plot files.
        #[arg(required = true)]
        plots: Vec<PathBuf>,
        /// Hex challenges (32 bytes), one per line.
        #[arg(long)]
        challenges_file: PathBuf,
        /// Also fetch the full proof of every quality.
        #[arg(long)]
        proofs: bool,
        #[arg(long, value_enum, default_value_t = ModeArg::Complete)]
        mode: ModeArg,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Verify one proof; prints the quality and exits 0, or the reason and exits 1.
    Verify {
        #[arg(long)]
        id: String,
        #[arg(long)]
        k: u8,
        #[arg(long)]
        challenge: String,
        #[arg(long)]
        proof: String,
    },
    /// Check plots (files or folders, recursively), like `chia plots check`.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["paths", "chia_root"])))]
    Check {
        paths: Vec<PathBuf>,
        /// Also check the plot directories of this chia root's config.yaml (without a value:
        /// $CHIA_ROOT, then ~/.chia/mainnet).
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
        chia_root: Option<PathBuf>,
        /// Challenges looked up per plot.
        #[arg(long, default_value_t = 30)]
        challenges: u32,
        #[arg(long, value_enum, default_value_t = ModeArg::Complete)]
        mode: ModeArg,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// The daemon's keys file: plots it names are checked against it instead of the memo.
        #[arg(long)]
        keys_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, chia_root, hlog, hlog_interval_seconds } => {
            let run = |hlog| match (&chia_root, &config) {
                (Some(root), config) => {
                    let root = (!root.as_os_str().is_empty()).then_some(root.as_path());
                    harvester::daemon::run_chia(root, config.as_deref(), hlog)
                }
                // clap requires one of the two.
                (None, Some(config)) => harvester::daemon::run(config, hlog),
                (None, None) => unreachable!("clap requires --config or --chia-root"),
            };
            match hlog_options(hlog, hlog_interval_seconds)
                .and_then(|hlog| run(hlog).map_err(|e| e.to_string()))
            {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e),
            }
        }
        Command::Certs { dir, ca_cert, ca_key, force } => {
            harvester::tls::certs_command(&dir, ca_cert.as_deref(), ca_key.as_deref(), force)
                .map(|summary| {
                    println!("{summary}");
                    ExitCode::SUCCESS
                })
                .map_err(|e| e.to_string())
        }
        Command::Prove { plots, challenges_file, proofs, mode, threads } => {
            prove::run(&plots, &challenges_file, proofs, mode.into(), threads)
        }
        Command::Verify { id, k, challenge, proof } => verify(&id, k, &challenge, &proof),
        Command::Check { mut paths, chia_root, challenges, mode, threads, keys_file } => {
            match chia_plot_directories(chia_root.as_deref()) {
                Ok(dirs) => {
                    paths.extend(dirs);
                    check::run(&paths, challenges, mode.into(), threads, keys_file.as_deref())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("harvester: {message}");
            ExitCode::from(2)
        }
    }
}

/// The plot directories of a chia root's config.yaml (none without `--chia-root`).
fn chia_plot_directories(root: Option<&std::path::Path>) -> Result<Vec<PathBuf>, String> {
    let Some(root) = root else { return Ok(Vec::new()) };
    let root = (!root.as_os_str().is_empty()).then_some(root);
    let dir = harvester::chia::root::resolve(root).map_err(|e| e.to_string())?;
    let chia = harvester::chia::root::ChiaRoot::load(&dir).map_err(|e| e.to_string())?;
    if chia.plot_directories.is_empty() {
        return Err(format!("{}: harvester.plot_directories is empty", chia.config_path.display()));
    }
    Ok(chia.plot_directories)
}

fn hlog_options(
    path: Option<PathBuf>,
    seconds: f64,
) -> Result<Option<harvester::daemon::HlogOptions>, String> {
    if !(seconds.is_finite() && (0.001..=86_400.0).contains(&seconds)) {
        return Err(format!("--hlog-interval-seconds {seconds}: must be in [0.001, 86400]"));
    }
    let interval = std::time::Duration::from_secs_f64(seconds);
    Ok(path.map(|path| harvester::daemon::HlogOptions { path, interval }))
}

fn verify(id: &str, k: u8, challenge: &str, proof: &str) -> Result<ExitCode, String> {
    let id = hexarg::bytes32("--id", id)?;
    let challenge = hexarg::bytes32("--challenge", challenge)?;
    let proof = hex::decode(proof.trim()).map_err(|e| format!("--proof: not hex: {e}"))?;
    match plot_format::verify::validate_proof(&id, k, &challenge, &proof) {
        Ok(quality) => {
            println!("{}", hex::encode(quality));
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            println!("invalid proof: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Threads to use: the option, else one per core.
pub(crate) fn worker_threads(option: Option<usize>) -> usize {
    option
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}
