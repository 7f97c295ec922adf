//! `harvester check`: like `chia plots check`. For each plot: the header, the keys in the memo
//! against the plot id, N challenges looked up, every proof fetched and verified.
//!
//! The plots are found by the daemon's folder walk (`harvester::plots::scan`): folders
//! recursively, symbolic links followed, each folder and each file once (by device and inode),
//! within the walk's depth and entry limits. Paths that cannot be read, and a walk cut short by
//! a limit, are reported after the plots and make the check fail like a bad plot.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use plot_format::keys::{self, PoolKind};
use plot_format::{Goal, HeaderKind, Mode};
use sha2::{Digest, Sha256};

use crate::plot_file::PlotFile;
use harvester::limits::SCAN_DEPTH_MAX;
use harvester::plots::scan::{walk, WalkOptions};
use harvester::plots::{KeysFileEntries, KeysFileEntry};

/// The result of checking one plot: a report, and whether the plot is bad.
struct Report {
    text: String,
    bad: Option<String>,
}

pub(crate) fn run(
    paths: &[PathBuf],
    challenges: u32,
    mode: Mode,
    threads: Option<usize>,
    keys_file: Option<&Path>,
) -> Result<ExitCode, String> {
    let keys_file = keys_file
        .map(KeysFileEntries::load)
        .transpose()
        .map_err(|e| format!("--keys-file: {e}"))?;
    let options = WalkOptions::tools();
    let scan = walk(paths, options);
    let files: Vec<PathBuf> = scan.files.into_iter().map(|f| f.path).collect();
    if files.is_empty() && scan.problems.is_empty() {
        return Err("no plot files found".into());
    }
    // Paths the walk could not read or did not reach: the check did not see every plot.
    let mut unchecked: Vec<String> = scan
        .problems
        .iter()
        .map(|(path, reason)| format!("{}: {reason}", path.display()))
        .collect();
    if scan.entries_capped {
        unchecked.push(format!(
            "the walk stopped after {} folder entries: plots past them were not checked",
            options.entries_max
        ));
    }
    if scan.depth_capped {
        unchecked.push(format!(
            "folders more than {SCAN_DEPTH_MAX} deep were not walked: plots in them were not \
             checked"
        ));
    }
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} plots {elapsed} (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reports: Vec<Mutex<Option<Report>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = crate::worker_threads(threads).min(files.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let entry = keys_file.as_ref().and_then(|k| k.entry(path));
                let report = check_plot(path, challenges, mode, entry);
                if let Ok(mut slot) = reports[i].lock() {
                    *slot = Some(report);
                }
                progress.inc(1);
            });
        }
    });
    progress.finish_and_clear();
    let mut bad = Vec::new();
    for (path, slot) in files.iter().zip(reports) {
        let report = slot.into_inner().ok().flatten().unwrap_or_else(|| Report {
            text: String::new(),
            bad: Some("the check did not finish".into()),
        });
        print!("{}", report.text);
        if let Some(reason) = report.bad {
            println!("BAD {}: {reason}", path.display());
            bad.push(path);
        } else {
            println!("OK  {}", path.display());
        }
        println!();
    }
    println!("{} plots checked: {} good, {} bad", files.len(), files.len() - bad.len(), bad.len());
    for path in &bad {
        println!("  bad: {}", path.display());
    }
    if !unchecked.is_empty() {
        println!("{} problems finding plots:", unchecked.len());
        for problem in &unchecked {
            println!("  unchecked: {problem}");
        }
    }
    let failed = !bad.is_empty() || !unchecked.is_empty();
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The challenges `check` uses: SHA-256 of the 4-byte big-endian counter, mixed with the plot
/// id so that different plots see different challenges.
pub(crate) fn check_challenge(plot_id: &[u8; 32], i: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(plot_id);
    h.update(i.to_be_bytes());
    h.finalize().into()
}

fn check_plot(path: &Path, challenges: u32, mode: Mode, entry: Option<KeysFileEntry>) -> Report {
    let mut text = format!("{}\n", path.display());
    let plot = match PlotFile::open(path) {
        Ok(p) => p,
        Err(e) => return Report { text, bad: Some(e.to_string()) },
    };
    let p = plot.plot();
    let header = p.header();
    let size = p.tables().file_len;
    let kind = match header.kind {
        HeaderKind::V1 => "v1",
        HeaderKind::V2 => "bladebit v2, uncompressed",
    };
    let _ = writeln!(
        text,
        "  k={} id={} size={:.1} MiB header={kind} memo={} bytes",
        p.k(),
        hex::encode(p.id()),
        size as f64 / (1024.0 * 1024.0),
        p.memo().len()
    );
    let mut bad = None;
    if let Some(e) = entry {
        // The original design: the keys file, not the memo, gives the plot's keys.
        if &e.plot_id == p.id() {
            let _ = writeln!(text, "  keys: plot id matches the keys file entry");
            let _ = writeln!(text, "        pool public key {}", hex::encode(e.pool_public_key));
            let _ = writeln!(text, "        plot public key {}", hex::encode(e.plot_public_key));
        } else {
            bad = Some(format!(
                "keys: the keys file entry gives plot id {}, the header has {}",
                hex::encode(e.plot_id),
                hex::encode(p.id())
            ));
        }
    } else {
        match keys::check_plot_id(p.memo(), p.id()) {
            Ok(k) => {
                let pool = match k.pool() {
                    PoolKind::PublicKey(pk) => format!("pool public key {}", hex::encode(pk)),
                    PoolKind::ContractPuzzleHash(h) => {
                        format!("pool contract puzzle hash {}", hex::encode(h))
                    }
                };
                let _ = writeln!(text, "  keys: plot id matches the memo; {pool}");
                let _ = writeln!(
                    text,
                    "        farmer public key {}",
                    hex::encode(k.farmer_public_key())
                );
                let _ =
                    writeln!(text, "        plot public key {}", hex::encode(k.plot_public_key()));
            }
            Err(e) => bad = Some(format!("keys: {e}")),
        }
    }
    let mut buf = Vec::new();
    let (mut proofs, mut lookup_errors) = (0u32, 0u32);
    let mut first_error = None;
    for i in 0..challenges {
        let challenge = check_challenge(p.id(), i);
        match plot.lookup(&challenge, Goal::QualitiesAndProofs, mode, &mut buf) {
            Ok(found) => {
                for f in found {
                    let proof = f.proof.as_deref().unwrap_or_default();
                    match plot_format::verify::validate_proof(p.id(), p.k(), &challenge, proof) {
                        Ok(q) if q == f.quality => proofs += 1,
                        Ok(_) => {
                            lookup_errors += 1;
                            first_error.get_or_insert_with(|| {
                                "proof's quality differs from the lookup's".to_string()
                            });
                        }
                        Err(e) => {
                            lookup_errors += 1;
                            first_error.get_or_insert_with(|| format!("invalid proof: {e}"));
                        }
                    }
                }
            }
            Err(e) => {
                lookup_errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let ratio = if challenges == 0 { 0.0 } else { f64::from(proofs) / f64::from(challenges) };
    let _ = writeln!(
        text,
        "  proofs: {proofs} valid for {challenges} challenges (ratio {ratio:.2}, expected about 1.00), {lookup_errors} errors"
    );
    if challenges >= 30 && ratio < 0.5 {
        let _ = writeln!(text, "  warning: few proofs; a ratio this low suggests a damaged plot");
    }
    if let Some(e) = first_error {
        bad.get_or_insert(format!("{lookup_errors} failed lookups or proofs, first: {e}"));
    }
    Report { text, bad }
}
