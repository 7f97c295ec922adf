//! Shared helpers for the benches and load tools, and the farmer simulator's library
//! ([`farmer`], driven by the `farmer-sim` binary).

use std::path::PathBuf;

use plot_format::Plot;

pub mod farmer;

/// The fixture folder (`scripts/make-fixtures.sh`): `$HARVESTER_FIXTURES`, else `fixtures/` at
/// the repository root.
pub fn fixtures_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("HARVESTER_FIXTURES").map(PathBuf::from).unwrap_or(root.join("fixtures"))
}

/// The first k=18 fixture plot (`scripts/make-fixtures.sh`), its bytes and the opened plot.
pub fn k18_fixture() -> (PathBuf, Vec<u8>, Plot) {
    let dir = fixtures_dir();
    let path = std::fs::read_dir(dir.join("plots"))
        .expect("fixtures exist: run scripts/make-fixtures.sh")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("k18")))
        .min()
        .expect("a k18 fixture plot");
    let bytes = std::fs::read(&path).expect("readable fixture");
    let (_, plot) = shard::open_plot(&path).expect("the fixture opens");
    (path, bytes, plot)
}
