//! What the tests of every crate share (a dev-dependency only):
//!
//! - [`fixtures`], [`oracle_python`], [`chia_python`]: the fixture plots and the reference
//!   Pythons, found the same way everywhere (`HARVESTER_FIXTURES`, `ORACLE_PYTHON`,
//!   `CHIA_PYTHON`, else the repository's defaults).
//! - [`facility_missing`]: a test whose facility (root, loop devices, cgroup blkio, FUSE,
//!   O_DIRECT, ...) is missing skips with a line on stderr and in `HARVESTER_SKIP_LOG`, and
//!   **fails** when `HARVESTER_REQUIRE_FACILITIES=1`, which CI sets (`.ci/run`): there every
//!   facility must exist, so a green run means every test ran.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// Set to 1 (by `.ci/run`), a missing facility fails its test instead of skipping it.
pub const REQUIRE_FACILITIES_VAR: &str = "HARVESTER_REQUIRE_FACILITIES";
/// A file each skip appends one line to (`scripts/test.sh` prints them at the end).
pub const SKIP_LOG_VAR: &str = "HARVESTER_SKIP_LOG";

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture plots: `HARVESTER_FIXTURES`, else `<repo>/fixtures` (`scripts/make-fixtures.sh`).
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
/// finds (the last line it prints).
pub fn chia_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CHIA_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new(repo().join("scripts/chia-venv.sh"))
        .output()
        .expect("run scripts/chia-venv.sh");
    assert!(
        out.status.success(),
        "scripts/chia-venv.sh failed (chia-blockchain 2.7.5 is needed for these tests):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the venv's python").trim())
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
}
