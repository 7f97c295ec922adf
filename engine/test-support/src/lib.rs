//! What the tests of every crate share (a dev-dependency only):
//!
//! - [`fixtures`], [`fixture_plots`], [`oracle_python`], [`chia_python`]: the fixture plots and
//!   the reference Pythons, found the same way everywhere (`HARVESTER_FIXTURES`,
//!   `ORACLE_PYTHON`, `CHIA_PYTHON`, else the repository's defaults).
//! - [`facility_missing`]: a test whose facility (root, loop devices, cgroup blkio, FUSE,
//!   O_DIRECT, ...) is missing skips with a line on stderr and in `HARVESTER_SKIP_LOG`, and
//!   **fails** when `HARVESTER_REQUIRE_FACILITIES=1`, which CI sets (`.ci/run`): there every
//!   facility must exist, so a green run means every test ran.
//! - [`wait_until`], [`wait_for`]: a bounded poll on a condition, instead of a sleep that
//!   guesses how long something takes.
//! - [`plot`] (feature `plot-format`): a lookup run against a plot file's bytes in memory.
//! - [`loopdisk`]: loop devices, mounts and blk-throttle cgroups for the tests that make a disk
//!   misbehave in the real kernel (root), each removed by a guard, also when the test panics.
#![forbid(unsafe_code)]

pub mod loopdisk;
#[cfg(feature = "plot-format")]
pub mod plot;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set to 1 (by `.ci/run`), a missing facility fails its test instead of skipping it.
pub const REQUIRE_FACILITIES_VAR: &str = "HARVESTER_REQUIRE_FACILITIES";
/// A file each skip appends one line to (`scripts/test.sh` prints them at the end).
pub const SKIP_LOG_VAR: &str = "HARVESTER_SKIP_LOG";

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture folder: `HARVESTER_FIXTURES`, else `<repo>/fixtures` (`scripts/make-fixtures.sh`).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("HARVESTER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("fixtures"));
    assert!(
        dir.join("manifest.json").exists(),
        "{}: no fixtures; run scripts/make-fixtures.sh",
        dir.display()
    );
    dir
}

/// The fixture plot files, `<fixtures>/plots/*.plot`, sorted by path.
pub fn fixture_plots() -> Vec<PathBuf> {
    let dir = fixtures().join("plots");
    let mut plots: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/make-fixtures.sh", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "plot"))
        .collect();
    plots.sort();
    plots
}

/// The fixture plots whose file name starts with `prefix` (`"k18"`: the four small ones).
pub fn fixture_plots_named(prefix: &str) -> Vec<PathBuf> {
    let named = |p: &Path| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix));
    fixture_plots().into_iter().filter(|p| named(p)).collect()
}

/// The reference oracle's Python (chiapos, blspy): `ORACLE_PYTHON`, else `<repo>/.venv`
/// (`scripts/oracle-venv.sh`).
pub fn oracle_python() -> PathBuf {
    let p = std::env::var_os("ORACLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(p.exists(), "oracle missing ({}): run scripts/oracle-venv.sh", p.display());
    p
}

/// chia-blockchain's Python: `CHIA_PYTHON`, else the one `scripts/chia-venv.sh` makes or
/// finds (the last line it prints). Found (or made) once per test binary.
pub fn chia_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(find_chia_python).clone()
}

fn find_chia_python() -> PathBuf {
    if let Some(python) = std::env::var_os("CHIA_PYTHON") {
        let python = PathBuf::from(python);
        assert!(
            python.exists(),
            "CHIA_PYTHON={} does not exist: point it at the python of a venv with \
             chia-blockchain 2.7.5, or unset it to use scripts/chia-venv.sh",
            python.display()
        );
        return python;
    }
    let root = repo();
    let out = Command::new("bash")
        .arg(root.join("scripts/chia-venv.sh"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/chia-venv.sh");
    assert!(
        out.status.success(),
        "the chia-blockchain 2.7.5 venv is missing and scripts/chia-venv.sh could not make it \
         ({}); these tests need it (CI installs it): run scripts/chia-venv.sh, or set \
         CHIA_PYTHON to a python with chia-blockchain 2.7.5\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python = PathBuf::from(stdout.lines().last().expect("chia-venv.sh prints a path").trim());
    assert!(
        python.exists(),
        "scripts/chia-venv.sh printed {}, which does not exist",
        python.display()
    );
    python
}

/// How often [`wait_until`] checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` (at once, then every [`POLL_INTERVAL`]) until it holds or `timeout` has
/// passed; whether it held. For a test that reports the timeout itself; else [`wait_for`].
pub fn wait_until(timeout: Duration, condition: impl FnMut() -> bool) -> bool {
    wait_until_every(timeout, POLL_INTERVAL, condition)
}

/// [`wait_until`] with another poll interval (for a condition that is costly to check, such
/// as one that runs a program).
pub fn wait_until_every(
    timeout: Duration,
    interval: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(interval);
    }
}

/// [`wait_until`], panicking with what was awaited (`what`) when it does not happen in time.
pub fn wait_for(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    assert!(wait_until(timeout, condition), "timed out after {timeout:?} waiting for {what}");
}

/// Whether a missing facility must fail the test (CI).
pub fn facilities_required() -> bool {
    std::env::var_os(REQUIRE_FACILITIES_VAR).is_some_and(|v| v == "1")
}

/// The test `test` cannot run here because `why`: fails under
/// `HARVESTER_REQUIRE_FACILITIES=1`, else reports the skip (stderr, past the test harness's
/// capture, and the skip log) and returns; the caller then returns from the test.
pub fn facility_missing(test: &str, why: &str) {
    if facilities_required() {
        panic!("{test}: {why} ({REQUIRE_FACILITIES_VAR}=1: every facility must exist here)");
    }
    let line = format!("SKIPPED {test}: {why}");
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_facility_is_logged_or_fails() {
        // One test touches the process environment, so nothing races with it.
        let log = std::env::temp_dir().join(format!("skips-{}", std::process::id()));
        std::env::set_var(SKIP_LOG_VAR, &log);
        std::env::remove_var(REQUIRE_FACILITIES_VAR);
        facility_missing("t::a", "no loop devices");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap_or_default(),
            "SKIPPED t::a: no loop devices\n"
        );
        std::env::set_var(REQUIRE_FACILITIES_VAR, "1");
        let failed = std::panic::catch_unwind(|| facility_missing("t::b", "no FUSE")).is_err();
        std::env::remove_var(REQUIRE_FACILITIES_VAR);
        std::env::remove_var(SKIP_LOG_VAR);
        let _ = std::fs::remove_file(&log);
        assert!(failed, "required facilities turn a skip into a failure");
    }

    #[test]
    fn wait_until_polls_until_the_condition_or_the_timeout() {
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3, "polled until it held, not longer");
        let started = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let failed = std::panic::catch_unwind(|| {
            wait_for("nothing", Duration::from_millis(20), || false);
        });
        let message = failed.expect_err("wait_for panics on a timeout");
        let message = message.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("waiting for nothing"), "{message}");
    }
}
