//! The harvester with chia-blockchain 2.7.5's own, unmodified farmer service
//! (`scripts/chia_farm.py` in the pinned chia venv, `scripts/chia-venv.sh`): chia's farmer runs
//! in-process with a fake full node that validates every declared proof and signature with
//! chia's consensus code; the harvester under test dials the farmer from a fresh CHIA_ROOT made
//! by `chia init`. Expected proofs come from chiapos and chia's formulas at run time.
//!
//! Signage points, and two of the plots, are new for every run (the seed is printed, and
//! `CHIA_FARM_SEED` replays it). chia's own harvester runs the same harness as the baseline.
//!
//! The runs take the whole machine (chia's farmer, our harvester, chiapos for the expected
//! values), so they go one at a time.

mod support;

use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;
use support::{harvester_bin, repo, TempDir};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs the harness with `args`; returns its report after checking that it passed.
fn farm(name: &str, args: &[&str]) -> Value {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new(name);
    let report = dir.0.join("report.json");
    let seed = std::env::var("CHIA_FARM_SEED").unwrap_or_else(|_| "random".into());
    let bin = harvester_bin();
    let mut cmd = Command::new(test_support::chia_python());
    cmd.arg(repo().join("scripts/chia_farm.py"))
        .args(["--json", report.to_str().expect("utf-8 path"), "--seed", &seed])
        .args(["--workdir", dir.0.to_str().expect("utf-8 path")])
        .args(args);
    if args.contains(&"ours") {
        cmd.args(["--harvester-bin", bin.to_str().expect("utf-8 path")]);
    }
    let out = cmd.output().expect("run scripts/chia_farm.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{name}: chia_farm.py failed ({}):\n{stdout}\n{}",
        out.status,
        // The reasons and the tail of each log are at the end.
        stderr
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).expect("the report"))
        .expect("the report is JSON");
    assert_eq!(report["ok"], true, "{name}: {}", report["failures"]);
    report
}

fn total(report: &Value, key: &str) -> u64 {
    report["totals"][key].as_u64().unwrap_or_else(|| panic!("totals.{key} in {}", report["totals"]))
}

/// Every proof chiapos predicts reaches the farmer and is declared valid; every signature the
/// farmer aggregates with ours verifies; farming_info arrives for every signage point; the plot
/// view after sync matches the plots served; a farmer restarted mid-run has us back within
/// seconds; a plot added and one removed show in the farmer's plot list.
#[test]
fn chias_farmer_farms_with_our_harvester() {
    let r = farm(
        "chia-ours",
        &[
            "--harvester",
            "ours",
            "--signage-points",
            "24",
            "--restart-farmer-after",
            "8",
            "--add-remove-after",
            "16",
            // Two plots made by chia's plotter for this run only.
            "--fresh-plots",
            "2",
        ],
    );
    assert!(total(&r, "expected") > 0, "the run expects proofs: {}", r["totals"]);
    assert_eq!(total(&r, "missing"), 0);
    assert_eq!(total(&r, "invalid"), 0);
    assert!(total(&r, "declared") >= total(&r, "expected"));
    let restart = &r["scenarios"]["restart_farmer"];
    assert_eq!(restart["ok"], true, "{restart}");
    let back = restart["seconds_new_farmer_to_synced"].as_f64().expect("seconds");
    assert!(back < 10.0, "back {back} s after the farmer restarted");
    assert_eq!(r["scenarios"]["add_remove"]["ok"], true, "{}", r["scenarios"]["add_remove"]);
}

/// With sub-slot iterations that leave about half of the qualities eligible: exactly the
/// eligible ones are declared (required iterations computed as chia does).
#[test]
fn only_eligible_qualities_are_declared() {
    let r = farm(
        "chia-half",
        &["--harvester", "ours", "--signage-points", "30", "--sub-slot-iters", "half"],
    );
    let e = &r["eligibility"];
    println!("eligibility: {e}");
    assert!(total(&r, "expected") > 0);
    assert_eq!(total(&r, "missing"), 0);
    assert_eq!(total(&r, "invalid"), 0);
}

/// chia's own harvester in the same harness: the baseline, and the proof that the harness's
/// expectations are chia's.
#[test]
fn chias_own_harvester_passes_the_same_harness() {
    let r = farm("chia-baseline", &["--harvester", "chia", "--signage-points", "12"]);
    assert_eq!(total(&r, "missing"), 0);
}
