//! `farmer-sim`: a farmer for harvesters under test. It listens, sends every harvester the
//! handshake and a stream of challenges, asks for proofs and signatures, checks every answer,
//! and prints a report (text on stdout, JSON with `--json`).
//!
//! Exit codes: 0 every answer valid and none lost; 1 an invalid or lost answer, or the run
//! stopped early (signal, harvesters missing); 2 usage or setup error (a missing certificate,
//! a bad keys file, the port in use), with a message naming the file or address.
//!
//! The logic lives in `bench::farmer`; this file parses flags and prints.

use std::fs::File;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::farmer::{
    run, FarmerConfig, FarmerKeys, FormulaParams, RequestMode, RunConfig, Security, SetupError,
};
use clap::{ArgGroup, Parser, ValueEnum};
use serde_json::json;

/// Most challenges in one run (the farmer remembers each).
const CHALLENGES_MAX: u64 = 1 << 24;
/// Most harvester connections at once.
const CONNECTIONS_MAX: usize = 1024;
/// Most requests outstanding over all harvesters.
const REQUESTS_OUTSTANDING_MAX: usize = 16384;
/// Most distinct qualities remembered.
const QUALITIES_TRACKED_MAX: usize = 1 << 22;
/// Longest duration any `--*-secs` flag accepts (a week).
const SECS_MAX: f64 = 7.0 * 24.0 * 3600.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RequestArg {
    /// The proof, a partial and a header signature for every quality.
    All,
    /// As the original farmer: by the iterations estimate and the two thresholds.
    Formula,
}

/// A farmer simulator: drives harvesters with challenges and checks every answer.
#[derive(Debug, Parser)]
#[command(name = "farmer-sim", version)]
#[command(group(ArgGroup::new("security").required(true).args(["certs", "insecure"])))]
struct Args {
    /// Address to listen on for harvesters.
    #[arg(long, default_value = "127.0.0.1:8447", value_name = "ADDR")]
    listen: String,
    /// Folder with ca.crt, farmer.crt and farmer.key (`harvester certs --dir DIR`): mutual TLS.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Plain TCP, no TLS.
    #[arg(long)]
    insecure: bool,
    /// JSON {"farmer_secret_key": hex32, "pool_public_keys": [hex48, ...]}.
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
    /// Harvesters that must be connected (and handshaken) before the first challenge.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=CONNECTIONS_MAX as u64))]
    harvesters: u64,
    /// How long to wait for them before giving up (exit 1).
    #[arg(long, default_value_t = 120.0, value_name = "F", value_parser = secs)]
    wait_secs: f64,
    /// Challenges to send.
    #[arg(long, default_value_t = 100, value_name = "COUNT",
          value_parser = clap::value_parser!(u64).range(0..=CHALLENGES_MAX))]
    challenges: u64,
    /// Challenges per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 10.0, value_name = "PER_SEC", value_parser = rate)]
    rate: f64,
    /// Challenge i is sha256(seed_le || i_le).
    #[arg(long, default_value_t = 0, value_name = "U64")]
    seed: u64,
    /// Which proofs and signatures to ask for.
    #[arg(long, value_enum, default_value_t = RequestArg::Formula)]
    request: RequestArg,
    /// Difficulty, in units of 2^32 iterations.
    #[arg(long, default_value_t = 1, value_name = "N")]
    difficulty: u64,
    /// Estimated timelord iterations per second.
    #[arg(long, default_value_t = 3000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    ips: u64,
    /// Iterations added to every estimate.
    #[arg(long, default_value_t = 0, value_name = "N")]
    min_iters: u64,
    /// Ask for a partial when the estimate is below this.
    #[arg(long, default_value_t = 1500.0, value_name = "F", value_parser = secs)]
    pool_share_threshold_secs: f64,
    /// Ask for a header signature when the estimate is below this.
    #[arg(long, default_value_t = 1000.0, value_name = "F", value_parser = secs)]
    propagate_threshold_secs: f64,
    /// Longest wait for outstanding answers after the last challenge.
    #[arg(long, default_value_t = 10.0, value_name = "F", value_parser = secs)]
    drain_secs: f64,
    /// After the last challenge, stop once nothing is outstanding and nothing arrived for
    /// this long (a challenge's responses come with no end marker).
    #[arg(long, default_value_t = 2.0, value_name = "F", value_parser = secs)]
    idle_secs: f64,
    /// Requests outstanding on a harvester that disconnects are counted apart, not as lost.
    #[arg(long)]
    allow_disconnects: bool,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write every accepted proof and signature here, one JSON line each
    /// (`scripts/oracle.py check-answers --file FILE` re-checks them).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// Log only warnings to stderr (the report still goes to stdout).
    #[arg(long)]
    quiet: bool,
}

fn secs(text: &str) -> Result<f64, String> {
    let v: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=SECS_MAX).contains(&v) {
        return Err(format!("must be between 0 and {SECS_MAX} seconds"));
    }
    Ok(v)
}

fn rate(text: &str) -> Result<f64, String> {
    let v: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if v != 0.0 && !(0.001..=1e9).contains(&v) {
        return Err("must be 0 (as fast as possible) or between 0.001 and 1e9".into());
    }
    Ok(v)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.quiet { "warn" } else { "info" })
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    match farm(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("farmer-sim: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the farmer and prints the report; true if the run passed.
fn farm(args: Args) -> Result<bool, SetupError> {
    let keys = FarmerKeys::load(&args.keys)?;
    // Created before the run, so a bad path fails at once and not after it.
    let json_out = match &args.json {
        Some(path) => Some((
            path,
            File::create(path).map_err(|source| SetupError::File { path: path.clone(), source })?,
        )),
        None => None,
    };
    let settings = json!({
        "listen": args.listen,
        "tls": args.certs.is_some(),
        "harvesters": args.harvesters,
        "challenges": args.challenges,
        "rate_per_sec": args.rate,
        "seed": args.seed,
        "request": format!("{:?}", args.request).to_lowercase(),
        "difficulty": args.difficulty,
        "ips": args.ips,
        "min_iters": args.min_iters,
        "pool_share_threshold_secs": args.pool_share_threshold_secs,
        "propagate_threshold_secs": args.propagate_threshold_secs,
        "drain_secs": args.drain_secs,
        "idle_secs": args.idle_secs,
        "allow_disconnects": args.allow_disconnects,
    });
    let config = RunConfig {
        listen: args.listen,
        security: match args.certs {
            Some(certs_dir) => Security::Tls { certs_dir },
            None => Security::Insecure,
        },
        keys,
        farmer: FarmerConfig {
            request: match args.request {
                RequestArg::All => RequestMode::All,
                RequestArg::Formula => RequestMode::Formula,
            },
            formula: FormulaParams {
                difficulty: args.difficulty,
                ips: args.ips,
                min_iters: args.min_iters,
                pool_share_threshold_secs: args.pool_share_threshold_secs,
                propagate_threshold_secs: args.propagate_threshold_secs,
            },
            requests_outstanding_max: REQUESTS_OUTSTANDING_MAX,
            qualities_tracked_max: QUALITIES_TRACKED_MAX,
            challenges_max: CHALLENGES_MAX as usize,
            allow_disconnects: args.allow_disconnects,
            message_seed: args.seed,
            dump: args.dump.is_some(),
        },
        // Range-checked by clap to at most CONNECTIONS_MAX.
        harvesters_wanted: args.harvesters as usize,
        harvesters_wait: Duration::from_secs_f64(args.wait_secs),
        challenges: args.challenges,
        rate_per_sec: args.rate,
        challenge_seed: args.seed,
        drain: Duration::from_secs_f64(args.drain_secs),
        idle: Duration::from_secs_f64(args.idle_secs),
        connections_max: CONNECTIONS_MAX,
        dump_path: args.dump,
        settings,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SetupError::Runtime)?;
    let report = runtime.block_on(run(config))?;
    runtime.shutdown_timeout(Duration::from_secs(1));

    print!("{}", report.text());
    // A closed stdout is no reason to fail a run whose report also goes to --json.
    let _ = std::io::stdout().flush();
    if let Some((path, mut file)) = json_out {
        let text = serde_json::to_string_pretty(&report.json())
            .map_err(|e| SetupError::File { path: path.clone(), source: e.into() })?;
        writeln!(file, "{text}")
            .map_err(|source| SetupError::File { path: path.clone(), source })?;
    }
    Ok(report.passed())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["farmer-sim", "--keys", "k.json"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let a = parse(&["--insecure"]).expect("valid");
        assert_eq!(a.listen, "127.0.0.1:8447");
        assert_eq!((a.harvesters, a.challenges, a.rate, a.seed), (1, 100, 10.0, 0));
        assert_eq!(a.request, RequestArg::Formula);
        assert_eq!((a.difficulty, a.ips, a.min_iters), (1, 3000, 0));
        assert_eq!((a.pool_share_threshold_secs, a.propagate_threshold_secs), (1500.0, 1000.0));
        assert_eq!((a.drain_secs, a.idle_secs, a.wait_secs), (10.0, 2.0, 120.0));
        assert!(!a.allow_disconnects && !a.quiet && a.json.is_none() && a.dump.is_none());
    }

    #[test]
    fn usage_errors() {
        // Exactly one of --certs and --insecure.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--insecure", "--certs", "c"]).is_err());
        for bad in [
            &["--insecure", "--ips", "0"][..],
            &["--insecure", "--rate", "1e-9"],
            &["--insecure", "--drain-secs", "-1"],
            &["--insecure", "--drain-secs", "NaN"],
            &["--insecure", "--harvesters", "5000"],
            &["--insecure", "--challenges", "100000000"],
            &["--insecure", "--request", "some"],
        ] {
            let e = parse(bad).expect_err(&bad.join(" "));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let a = parse(&["--certs", "c", "--request", "all", "--rate", "0"]).expect("valid");
        assert_eq!((a.request, a.rate), (RequestArg::All, 0.0));
    }
}
