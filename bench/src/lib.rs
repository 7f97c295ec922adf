//! Shared helpers for the benches and load tools.

use std::path::PathBuf;

use plot_format::Plot;

/// The first k=18 fixture plot (`scripts/make-fixtures.sh`), its bytes and the opened plot.
pub fn k18_fixture() -> (PathBuf, Vec<u8>, Plot) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir =
        std::env::var_os("HARVESTER_FIXTURES").map(PathBuf::from).unwrap_or(root.join("fixtures"));
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
