//! The folder walk: the one the daemon's refresh makes of its plot folders, and the one the
//! plot tools (`harvester check`) make of the paths they are given. Every `.plot` and `.plot2`
//! file under the starting folders, with the identity of each (device, inode, size,
//! modification time), sorted by path.
//!
//! Symbolic links are followed, to files and to folders; a folder already walked (same device
//! and inode: a symlink loop, a bind mount, nested plot folders) is not walked again, and the
//! walk goes at most [`SCAN_DEPTH_MAX`] folders deep and looks at most `entries_max` folder
//! entries. Only plot file names are `stat`ed (plus folders, when walking recursively).
//!
//! The two uses differ only in [`WalkOptions`]: the daemon's starting paths must be folders and
//! it lists a file once per path (its plot manager tells copies apart by plot id, and serves
//! hard-linked copies apart with `serve_duplicate_ids`); the tools also take plot files as
//! starting paths and list each file once, by device and inode.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::limits::{scan_entries_max, PLOTS_MAX, SCAN_DEPTH_MAX};

/// What a file looks like from the outside. A file whose identity changed is a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size_bytes: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
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
pub enum FileKind {
    /// `*.plot`: chiapos v1 (and a file named as a starting path, whatever its name).
    V1,
    /// `*.plot2`: the v2 proof of space (not supported, only listed).
    V2,
}

#[derive(Debug, Clone)]
pub struct ScannedFile {
    pub path: PathBuf,
    pub identity: Identity,
    pub kind: FileKind,
}

/// The result of one walk.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by path, no path twice (and with [`WalkOptions::once_per_file`], no file twice).
    pub files: Vec<ScannedFile>,
    /// Starting paths, folders and files that could not be read, with the reason.
    pub problems: Vec<(PathBuf, String)>,
    /// The walk stopped at `entries_max`: files not listed may still exist.
    pub entries_capped: bool,
    /// Some folders were not entered because they lie deeper than [`SCAN_DEPTH_MAX`].
    pub depth_capped: bool,
}

/// How a walk treats its starting paths, and a file reached by several paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkOptions {
    /// Walk into subfolders.
    pub recursive: bool,
    /// Folder entries (and starting paths) looked at, at most.
    pub entries_max: usize,
    /// A starting path that is a file is listed, whatever its name (as [`FileKind::V1`] unless
    /// it is named `*.plot2`); otherwise starting paths must be folders.
    pub files_as_roots: bool,
    /// A file reached by several paths (hard links, links to files, a file also named as a
    /// starting path) is listed once, at the first of its paths in sorted order; otherwise it
    /// is listed at each path.
    pub once_per_file: bool,
}

impl WalkOptions {
    /// The daemon's refresh: `folders` are plot folders; a file is listed at each of its paths.
    pub fn plot_folders(recursive: bool, entries_max: usize) -> WalkOptions {
        WalkOptions { recursive, entries_max, files_as_roots: false, once_per_file: false }
    }

    /// The plot tools: folders walked recursively, plot files taken as they are, each file
    /// listed once; as many entries as the daemon walks at its largest `plots_max`.
    pub fn tools() -> WalkOptions {
        WalkOptions {
            recursive: true,
            entries_max: scan_entries_max(PLOTS_MAX),
            files_as_roots: true,
            once_per_file: true,
        }
    }
}

/// Walks `paths` as `options` say.
pub fn walk(paths: &[PathBuf], options: WalkOptions) -> Scan {
    let mut walker = Walker {
        options,
        entries: 0,
        visited: HashSet::new(),
        stack: Vec::new(),
        scan: Scan::default(),
    };
    for path in paths {
        if walker.walk(path).is_err() {
            walker.scan.entries_capped = true;
            break;
        }
    }
    let mut scan = walker.scan;
    scan.files.sort_by(|a, b| a.path.cmp(&b.path));
    scan.files.dedup_by(|a, b| a.path == b.path);
    if options.once_per_file {
        let mut seen = HashSet::new();
        scan.files.retain(|f| seen.insert((f.identity.dev, f.identity.ino)));
    }
    scan
}

/// The entry limit was reached.
struct Capped;

struct Walker {
    options: WalkOptions,
    /// Folder entries and starting paths looked at so far.
    entries: usize,
    /// (device, inode) of every folder walked.
    visited: HashSet<(u64, u64)>,
    /// Folders still to list, with their depth below the plot folder.
    stack: Vec<(PathBuf, usize)>,
    scan: Scan,
}

impl Walker {
    /// Walks one starting path: a plot folder (or, with `files_as_roots`, a plot file).
    fn walk(&mut self, folder: &Path) -> Result<(), Capped> {
        self.count_entry()?;
        let meta = match fs::metadata(folder) {
            Ok(meta) => meta,
            Err(e) if self.options.files_as_roots => {
                self.problem(folder, format!("cannot read: {e}"));
                return Ok(());
            }
            Err(e) => {
                self.problem(folder, format!("cannot read plot folder: {e}"));
                return Ok(());
            }
        };
        if self.options.files_as_roots && meta.is_file() {
            let name = folder.file_name().unwrap_or_default().as_encoded_bytes();
            let kind = match file_kind(name) {
                Some(FileKind::V2) => FileKind::V2,
                _ => FileKind::V1,
            };
            let path = folder.to_path_buf();
            self.scan.files.push(ScannedFile { path, identity: Identity::of(&meta), kind });
            return Ok(());
        }
        if !meta.is_dir() {
            let reason = if self.options.files_as_roots {
                "not a file or folder"
            } else {
                "plot folder is not a folder"
            };
            self.problem(folder, reason.into());
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

    /// Counts one more entry looked at, or stops the walk at `entries_max`.
    fn count_entry(&mut self) -> Result<(), Capped> {
        if self.entries >= self.options.entries_max {
            return Err(Capped);
        }
        self.entries += 1;
        Ok(())
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
            self.count_entry()?;
            let kind = file_kind(entry.file_name().as_encoded_bytes());
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    self.problem(&entry.path(), format!("cannot read file type: {e}"));
                    continue;
                }
            };
            // Only plot names and folders are worth a `stat`.
            let might_be_dir =
                self.options.recursive && (file_type.is_dir() || file_type.is_symlink());
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
                if !self.options.recursive {
                    continue;
                }
                if depth >= SCAN_DEPTH_MAX {
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

    /// The daemon's walk.
    fn scan(folders: &[PathBuf], recursive: bool, entries_max: usize) -> Scan {
        walk(folders, WalkOptions::plot_folders(recursive, entries_max))
    }

    fn names(scan: &Scan, root: &Path) -> Vec<PathBuf> {
        scan.files.iter().map(|f| f.path.strip_prefix(root).unwrap().to_owned()).collect()
    }

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
        for _ in 0..SCAN_DEPTH_MAX + 1 {
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

    /// The review's case: a folder holding one plot and a link to its parent. The tools list
    /// the plot once, also when it is reached through a link to it, a hard link, or named
    /// again; the daemon's walk lists it at each path (its plot manager tells the copies apart
    /// by plot id), but walks each folder once too.
    #[test]
    fn a_file_is_listed_once_per_file_for_the_tools_and_once_per_path_for_the_daemon() {
        let tmp = TempDir::new("scan-once");
        let folder = tmp.path().join("plots");
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join("x.plot"), b"1").unwrap();
        std::os::unix::fs::symlink("..", folder.join("up")).unwrap();

        let tools = walk(std::slice::from_ref(&folder), WalkOptions::tools());
        assert_eq!(names(&tools, &folder), [Path::new("x.plot")]);
        assert!(tools.problems.is_empty() && !tools.entries_capped && !tools.depth_capped);
        let daemon = scan(std::slice::from_ref(&folder), true, 1000);
        assert_eq!(names(&daemon, &folder), [Path::new("x.plot")]);

        std::os::unix::fs::symlink("x.plot", folder.join("alias.plot")).unwrap();
        fs::hard_link(folder.join("x.plot"), folder.join("y.plot")).unwrap();
        let roots = [folder.clone(), folder.join("y.plot"), tmp.path().to_owned()];
        let tools = walk(&roots, WalkOptions::tools());
        assert_eq!(names(&tools, &folder), [Path::new("alias.plot")], "the first path by name");
        let daemon = scan(&[folder.clone(), tmp.path().to_owned()], true, 1000);
        assert_eq!(
            names(&daemon, &folder),
            [Path::new("alias.plot"), Path::new("x.plot"), Path::new("y.plot")]
        );
    }

    /// The tools take files as starting paths, whatever their name; the daemon wants folders.
    #[test]
    fn files_as_starting_paths() {
        let tmp = TempDir::new("scan-roots");
        let root = tmp.path();
        fs::write(root.join("renamed.bin"), b"1").unwrap();
        fs::write(root.join("new.plot2"), b"2").unwrap();
        let roots = [root.join("renamed.bin"), root.join("new.plot2"), root.join("missing.plot")];

        let tools = walk(&roots, WalkOptions::tools());
        assert_eq!(names(&tools, root), [Path::new("new.plot2"), Path::new("renamed.bin")]);
        assert_eq!(tools.files[0].kind, FileKind::V2);
        assert_eq!(tools.files[1].kind, FileKind::V1);
        assert_eq!(tools.problems.len(), 1, "{:?}", tools.problems);
        assert!(tools.problems[0].0.ends_with("missing.plot"));
        assert!(tools.problems[0].1.starts_with("cannot read: "), "{:?}", tools.problems);

        let daemon = scan(&roots, true, 1000);
        assert!(daemon.files.is_empty());
        let reasons: Vec<&str> = daemon.problems.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons[..2], ["plot folder is not a folder"; 2]);

        // Starting paths count against the entry limit too.
        let capped = walk(&roots, WalkOptions { entries_max: 1, ..WalkOptions::tools() });
        assert!(capped.entries_capped);
        assert_eq!(capped.files.len(), 1);
    }
}
