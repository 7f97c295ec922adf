//! The folder walk of a refresh: every `.plot` and `.plot2` file under the plot folders, with
//! the identity of each (device, inode, size, modification time), sorted by path.
//!
//! Symbolic links are followed, to files and to folders; a folder already walked (same device
//! and inode: a symlink loop, a bind mount, nested plot folders) is not walked again, and the
//! walk goes at most [`DEPTH_MAX`] folders deep and looks at most `entries_max` folder entries.
//! Only plot file names are `stat`ed (plus folders, when walking recursively).

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Folders below a plot folder walked into, at most.
pub(crate) const DEPTH_MAX: usize = 64;

/// What a file looks like from the outside. A file whose identity changed is a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size_bytes: u64,
    /// Modification time, nanoseconds since the epoch.
    pub(crate) mtime_ns: i128,
}

impl Identity {
    pub(crate) fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size_bytes: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Which proof of space a file name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `*.plot`: chiapos v1.
    V1,
    /// `*.plot2`: the v2 proof of space (not supported, only listed).
    V2,
}

#[derive(Debug, Clone)]
pub(crate) struct ScannedFile {
    pub(crate) path: PathBuf,
    pub(crate) identity: Identity,
    pub(crate) kind: FileKind,
}

/// The result of one walk.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Sorted by path, no path twice.
    pub(crate) files: Vec<ScannedFile>,
    /// Folders and files that could not be read, with the reason.
    pub(crate) problems: Vec<(PathBuf, String)>,
    /// The walk stopped at `entries_max`: files not listed may still exist.
    pub(crate) entries_capped: bool,
    /// Some folders were not entered because they lie deeper than [`DEPTH_MAX`].
    pub(crate) depth_capped: bool,
}

/// Walks `folders` (into subfolders when `recursive`), looking at most `entries_max` entries.
pub(crate) fn scan(folders: &[PathBuf], recursive: bool, entries_max: usize) -> Scan {
    let mut walker = Walker {
        recursive,
        entries_max,
        entries: 0,
        visited: HashSet::new(),
        stack: Vec::new(),
        scan: Scan::default(),
    };
    for folder in folders {
        if walker.walk(folder).is_err() {
            walker.scan.entries_capped = true;
            break;
        }
    }
    let mut scan = walker.scan;
    scan.files.sort_by(|a, b| a.path.cmp(&b.path));
    scan.files.dedup_by(|a, b| a.path == b.path);
    scan
}

/// The entry limit was reached.
struct Capped;

struct Walker {
    recursive: bool,
    entries_max: usize,
    entries: usize,
    /// (device, inode) of every folder walked.
    visited: HashSet<(u64, u64)>,
    /// Folders still to list, with their depth below the plot folder.
    stack: Vec<(PathBuf, usize)>,
    scan: Scan,
}

impl Walker {
    /// Walks one plot folder.
    fn walk(&mut self, folder: &Path) -> Result<(), Capped> {
        let meta = match fs::metadata(folder) {
            Ok(meta) => meta,
            Err(e) => {
                self.problem(folder, format!("cannot read plot folder: {e}"));
                return Ok(());
            }
        };
        if !meta.is_dir() {
            self.problem(folder, "plot folder is not a folder".into());
            return Ok(());
        }
        if !self.visited.insert((meta.dev(), meta.ino())) {
            return Ok(()); // the same folder as an earlier one (or inside one)
        }
        self.stack.push((folder.to_path_buf(), 0));
        while let Some((dir, depth)) = self.stack.pop() {
            self.list(&dir, depth)?;
        }
        Ok(())
    }

    fn problem(&mut self, path: &Path, reason: String) {
        self.scan.problems.push((path.to_path_buf(), reason));
    }

    /// Lists one folder: plot files into the scan, subfolders onto the stack.
    fn list(&mut self, dir: &Path, depth: usize) -> Result<(), Capped> {
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) => {
                self.problem(dir, format!("cannot read plot folder: {e}"));
                return Ok(());
            }
        };
        for entry in listing {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.problem(dir, format!("cannot list plot folder: {e}"));
                    return Ok(());
                }
            };
            if self.entries >= self.entries_max {
                return Err(Capped);
            }
            self.entries += 1;
            let kind = file_kind(entry.file_name().as_encoded_bytes());
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    self.problem(&entry.path(), format!("cannot read file type: {e}"));
                    continue;
                }
            };
            // Only plot names and folders are worth a `stat`.
            let might_be_dir = self.recursive && (file_type.is_dir() || file_type.is_symlink());
            if kind.is_none() && !might_be_dir {
                continue;
            }
            let path = entry.path();
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    if kind.is_some() {
                        self.problem(&path, format!("cannot read plot file: {e}"));
                    }
                    // A dangling link with some other name: nothing to report.
                    continue;
                }
            };
            if meta.is_dir() {
                if !self.recursive {
                    continue;
                }
                if depth >= DEPTH_MAX {
                    self.scan.depth_capped = true;
                    continue;
                }
                if self.visited.insert((meta.dev(), meta.ino())) {
                    self.stack.push((path, depth + 1));
                }
            } else if let (Some(kind), true) = (kind, meta.is_file()) {
                self.scan.files.push(ScannedFile { path, identity: Identity::of(&meta), kind });
            }
        }
        Ok(())
    }
}

/// `*.plot` or `*.plot2`; AppleDouble files (`._*`) are not plots.
fn file_kind(name: &[u8]) -> Option<FileKind> {
    if name.starts_with(b"._") {
        None
    } else if name.ends_with(b".plot") {
        Some(FileKind::V1)
    } else if name.ends_with(b".plot2") {
        Some(FileKind::V2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::TempDir;

    #[test]
    fn file_kinds() {
        assert_eq!(file_kind(b"a.plot"), Some(FileKind::V1));
        assert_eq!(file_kind(b"a.plot2"), Some(FileKind::V2));
        assert_eq!(file_kind(b"._a.plot"), None);
        assert_eq!(file_kind(b"a.plot.tmp"), None);
        assert_eq!(file_kind(b"a.PLOT"), None);
        assert_eq!(file_kind(b".plot"), Some(FileKind::V1));
    }

    #[test]
    fn walk_finds_plots_skips_loops_and_respects_limits() {
        let tmp = TempDir::new("scan");
        let root = tmp.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("x.plot"), b"1").unwrap();
        fs::write(root.join("._x.plot"), b"1").unwrap();
        fs::write(root.join("notes.txt"), b"1").unwrap();
        fs::write(root.join("a/y.plot2"), b"1").unwrap();
        fs::write(root.join("a/b/z.plot"), b"1").unwrap();
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap(); // a loop
        std::os::unix::fs::symlink("missing.plot", root.join("dangling.plot")).unwrap();

        let rel = |s: &Scan| {
            s.files
                .iter()
                .map(|f| f.path.strip_prefix(root).unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let all = scan(&[root.to_owned(), root.join("a")], true, 1000);
        assert_eq!(
            rel(&all),
            [Path::new("a/b/z.plot"), Path::new("a/y.plot2"), Path::new("x.plot")]
        );
        assert_eq!(all.files[1].kind, FileKind::V2);
        assert_eq!(all.problems.len(), 1, "{:?}", all.problems);
        assert!(all.problems[0].0.ends_with("dangling.plot"));
        assert!(!all.entries_capped && !all.depth_capped);

        let flat = scan(&[root.to_owned()], false, 1000);
        assert_eq!(rel(&flat), [Path::new("x.plot")]);

        let capped = scan(&[root.to_owned()], true, 2);
        assert!(capped.entries_capped);

        let missing = scan(&[root.join("nope")], true, 1000);
        assert!(missing.files.is_empty());
        assert_eq!(missing.problems.len(), 1);
    }

    #[test]
    fn depth_is_capped() {
        let tmp = TempDir::new("scan-depth");
        let mut deep = tmp.path().to_owned();
        for _ in 0..DEPTH_MAX + 1 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("too-deep.plot"), b"1").unwrap();
        fs::write(deep.parent().unwrap().join("deepest.plot"), b"1").unwrap();
        let s = scan(&[tmp.path().to_owned()], true, 10_000);
        assert!(s.depth_capped);
        assert_eq!(s.files.len(), 1);
        assert!(s.files[0].path.ends_with("deepest.plot"));
    }
}
