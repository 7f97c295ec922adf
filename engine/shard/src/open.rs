//! Opening a plot file with positioned reads: the header and C2, before the plot is handed to
//! its shard (which then reads it through its own backend).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use plot_format::{drive, Goal, Mode, Outcome, Plot, PlotOpener};

/// Opens and indexes the plot at `path`; decoder errors come back as `InvalidData`.
pub fn open_plot(path: &Path) -> std::io::Result<(File, Plot)> {
    let file = disk_io::open_read(path, 0)?;
    let mut opener = PlotOpener::new(file.metadata()?.len());
    let mut buf = Vec::new();
    loop {
        let r = opener.next_read();
        buf.resize(r.len as usize, 0);
        file.read_exact_at(&mut buf, r.offset)?;
        let step = opener.supply(&buf).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
        })?;
        if let Some(plot) = step {
            return Ok((file, plot));
        }
    }
}

/// Runs one lookup to its end with blocking positioned reads: the reference the engine's
/// answers are compared with, and a simple driver for tools.
pub fn lookup_file(
    file: &File,
    plot: &Plot,
    challenge: &[u8; 32],
    goal: Goal,
    mode: Mode,
) -> std::io::Result<Outcome> {
    let mut lookup = plot.lookup(challenge, goal, mode);
    let mut buf = Vec::new();
    drive(&mut lookup, &mut buf, |r, buf| {
        buf.resize(r.len as usize, 0);
        file.read_exact_at(buf, r.offset)
    })?;
    // `drive` returns only once the lookup is done, so the outcome is set.
    Ok(lookup.into_outcome().unwrap_or(Ok(Vec::new())))
}
