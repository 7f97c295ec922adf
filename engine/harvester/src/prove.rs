//! `harvester prove`: challenges from a file, looked up in every plot, on every core.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use plot_format::{Goal, Mode};

use crate::plot_file::PlotFile;

pub(crate) fn run(
    plots: &[PathBuf],
    challenges_file: &Path,
    proofs: bool,
    mode: Mode,
    threads: Option<usize>,
) -> Result<ExitCode, String> {
    let challenges = read_challenges(challenges_file)?;
    let goal = if proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
    let started = Instant::now();
    // Each plot's lines are produced by one worker and printed in plot order.
    let outputs: Vec<Mutex<Option<Result<String, String>>>> =
        plots.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = crate::worker_threads(threads).min(plots.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = plots.get(i) else { break };
                    let result = prove_plot(path, &challenges, goal, mode, &mut buf);
                    // A poisoned lock means another worker panicked; its output is lost anyway.
                    if let Ok(mut slot) = outputs[i].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0;
    for slot in outputs {
        match slot.into_inner().ok().flatten() {
            Some(Ok(lines)) => out.write_all(lines.as_bytes()).map_err(|e| e.to_string())?,
            Some(Err(e)) => {
                eprintln!("{e}");
                failed += 1;
            }
            None => failed += 1,
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    let lookups = plots.len() * challenges.len();
    eprintln!(
        "{lookups} lookups in {elapsed:.3} s ({:.0} lookups/s, {workers} threads), {failed} plots failed",
        lookups as f64 / elapsed.max(1e-9)
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Challenges of one plot looked up together ([`PlotFile::lookup_many`]): enough for every
/// step to hold parks of several lookups to decode in pairs.
const LOOKUPS_TOGETHER_MAX: usize = 8;

fn prove_plot(
    path: &Path,
    challenges: &[[u8; 32]],
    goal: Goal,
    mode: Mode,
    buf: &mut Vec<Vec<u8>>,
) -> Result<String, String> {
    let plot = PlotFile::open(path).map_err(|e| e.to_string())?;
    let shown = path.display().to_string();
    let mut lines = String::new();
    for group in challenges.chunks(LOOKUPS_TOGETHER_MAX) {
        let answers = plot.lookup_many(group, goal, mode, buf).map_err(|e| e.to_string())?;
        for (challenge, found) in group.iter().zip(answers) {
            let found = found.map_err(|e| e.to_string())?;
            let challenge_hex = hex::encode(challenge);
            for f in found {
                let mut line = serde_json::json!({
                    "plot": shown,
                    "challenge": challenge_hex,
                    "index": f.index,
                    "quality": hex::encode(f.quality),
                });
                if let Some(proof) = &f.proof {
                    line["proof"] = serde_json::Value::String(hex::encode(proof));
                }
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
        }
    }
    Ok(lines)
}

fn read_challenges(path: &Path) -> Result<Vec<[u8; 32]>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let what = format!("{}:{}", path.display(), n + 1);
        out.push(crate::hexarg::bytes32(&what, &line)?);
    }
    Ok(out)
}
