//! A plot file read with positioned reads (`pread`): the simple synchronous driver of the
//! sans-IO decoder, for the CLI tools. The io_uring engine replaces it in the daemon.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use plot_format::{drive, drive_many, Found, Goal, Mode, Plot, PlotError, PlotOpener, ReadRequest};

/// Why a plot file cannot be served; always names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlotFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Plot { path: PathBuf, source: PlotError },
    #[error("{path}: \".plot2\" files (the v2 proof of space) are not supported")]
    Plot2 { path: PathBuf },
}

pub(crate) struct PlotFile {
    path: PathBuf,
    file: File,
    plot: Plot,
}

impl PlotFile {
    pub(crate) fn open(path: &Path) -> Result<PlotFile, PlotFileError> {
        if path.extension().is_some_and(|e| e == "plot2") {
            return Err(PlotFileError::Plot2 { path: path.to_owned() });
        }
        let io = |source| PlotFileError::Io { path: path.to_owned(), source };
        let file = disk_io::open_read(path, 0).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut opener = PlotOpener::new(len);
        let mut buf = Vec::new();
        let plot = loop {
            read_at(&file, opener.next_read(), &mut buf).map_err(io)?;
            match opener.supply(&buf) {
                Ok(Some(plot)) => break plot,
                Ok(None) => {}
                Err(source) => return Err(PlotFileError::Plot { path: path.to_owned(), source }),
            }
        };
        Ok(PlotFile { path: path.to_owned(), file, plot })
    }

    pub(crate) fn plot(&self) -> &Plot {
        &self.plot
    }

    /// Runs one lookup to its end with blocking positioned reads.
    pub(crate) fn lookup(
        &self,
        challenge: &[u8; 32],
        goal: Goal,
        mode: Mode,
        buf: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Found>, PlotFileError> {
        let mut lookup = self.plot.lookup(challenge, goal, mode);
        let io = |source| PlotFileError::Io { path: self.path.clone(), source };
        drive(&mut lookup, buf, |request, buf| read_at(&self.file, request, buf)).map_err(io)?;
        // `drive` returns only once the lookup is done, so the outcome is set.
        let outcome = lookup.into_outcome().expect("drive runs a lookup to its outcome");
        outcome.map_err(|source| PlotFileError::Plot { path: self.path.clone(), source })
    }

    /// [`PlotFile::lookup`] of several challenges, driven together ([`drive_many`]: their
    /// parks are decoded two at a time); answers in the order of `challenges`. A read error
    /// fails them all.
    pub(crate) fn lookup_many(
        &self,
        challenges: &[[u8; 32]],
        goal: Goal,
        mode: Mode,
        buf: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Vec<Found>, PlotFileError>>, PlotFileError> {
        let mut lookups: Vec<_> =
            challenges.iter().map(|c| self.plot.lookup(c, goal, mode)).collect();
        let io = |source| PlotFileError::Io { path: self.path.clone(), source };
        drive_many(&mut lookups, buf, |_, request, buf| read_at(&self.file, request, buf))
            .map_err(io)?;
        Ok(lookups
            .into_iter()
            .map(|lookup| {
                // `drive_many` returns Ok only once every lookup is done.
                let outcome = lookup.into_outcome().expect("drive_many runs lookups to the end");
                outcome.map_err(|source| PlotFileError::Plot { path: self.path.clone(), source })
            })
            .collect())
    }
}

/// Reads exactly `request.len` bytes; a file that shrank under us gives `UnexpectedEof`.
fn read_at(file: &File, request: ReadRequest, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.resize(request.len as usize, 0);
    file.read_exact_at(buf, request.offset)
}
