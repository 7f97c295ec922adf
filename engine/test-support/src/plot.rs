//! Plots in memory: a plot opened from its file's bytes, and sans-IO lookups run against them.
//! The plain decoder's answers that tests compare the engine's with, and the benches' lookups
//! without I/O.

use plot_format::{drive, Goal, Lookup, Mode, Outcome, Plot, PlotError, PlotOpener, ReadRequest};

/// Reads one lookup may make before it counts as looping (a panic, not a hang).
pub const LOOKUP_READS_MAX: u32 = 100_000;

/// The bytes of `request` in `bytes`, cut short at the end: a read past the end is short, which
/// the decoder answers with a typed error, not a panic.
pub fn read_at(bytes: &[u8], request: ReadRequest) -> &[u8] {
    let end = usize::try_from(request.end()).unwrap_or(usize::MAX).min(bytes.len());
    let start = usize::try_from(request.offset).unwrap_or(usize::MAX).min(end);
    &bytes[start..end]
}

/// Opens a plot from its file's bytes.
pub fn open_bytes(bytes: &[u8]) -> Result<Plot, PlotError> {
    let mut opener = PlotOpener::new(bytes.len() as u64);
    loop {
        if let Some(plot) = opener.supply(read_at(bytes, opener.next_read()))? {
            return Ok(plot);
        }
    }
}

/// The first k=18 fixture plot (by name, under [`crate::fixtures`]): its path, its bytes and
/// the plot opened from them.
pub fn k18_fixture() -> (std::path::PathBuf, Vec<u8>, Plot) {
    let dir = crate::fixtures().join("plots");
    let path = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("k18")))
        .min()
        .expect("a k18 fixture plot");
    let bytes = std::fs::read(&path).expect("readable fixture");
    let plot = open_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes, plot)
}

/// Runs `lookup` to its end against the plot file's `bytes` ([`read_at`]) and returns its
/// outcome. `buffers` hold the reads; pass the same ones again to allocate nothing (benches).
/// Panics past [`LOOKUP_READS_MAX`] reads.
pub fn drive_bytes(mut lookup: Lookup, bytes: &[u8], buffers: &mut Vec<Vec<u8>>) -> Outcome {
    let mut reads = 0u32;
    drive(&mut lookup, buffers, |request, buffer| {
        reads += 1;
        assert!(reads < LOOKUP_READS_MAX, "a lookup must not loop");
        buffer.clear();
        buffer.extend_from_slice(read_at(bytes, request));
        Ok::<(), ()>(())
    })
    .expect("memory reads do not fail");
    lookup.into_outcome().expect("drive runs a lookup to its outcome")
}

/// Runs `lookup` to its end handing it slices of `bytes` directly: no copy per read, so a
/// bench of it measures the decoder alone (the engine's reads, which copy, are measured by the
/// engine's benches). Panics past [`LOOKUP_READS_MAX`] reads.
pub fn drive_slices(mut lookup: Lookup, bytes: &[u8]) -> Outcome {
    let mut reads = 0u32;
    while !lookup.is_done() {
        // A round's reads all at once, as `plot_format::drive` supplies them (in 64s).
        reads += 1;
        assert!(reads < LOOKUP_READS_MAX, "a lookup must not loop");
        let supplies: Vec<(usize, &[u8])> =
            lookup.reads().iter().map(|r| read_at(bytes, *r)).enumerate().collect();
        lookup.supply_many(&supplies);
    }
    lookup.into_outcome().expect("the loop runs a lookup to its outcome")
}

/// `plot.lookup(challenge, goal, mode)` run against the plot file's `bytes` ([`drive_bytes`]).
pub fn lookup_bytes(
    plot: &Plot,
    bytes: &[u8],
    challenge: &[u8; 32],
    goal: Goal,
    mode: Mode,
) -> Outcome {
    drive_bytes(plot.lookup(challenge, goal, mode), bytes, &mut Vec::new())
}
