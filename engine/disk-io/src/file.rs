//! Files as both backends open and read them, so `pread` stays the reference for `uring`:
//! O_DIRECT or buffered, the alignment of reads, and what to do after each read returns
//! (short read, EAGAIN, EINTR, EINVAL on a direct read, end of file).
//!
//! O_DIRECT (with [`DirectIo::Prefer`]) falls back to buffered reads, counted, when:
//! - the open fails with EINVAL (procfs, sysfs, some FUSE);
//! - statx says direct I/O is not supported on this file (`STATX_DIOALIGN` with offset
//!   alignment 0: ext4 inline-data, encrypted or verity files, data=journal);
//! - the first read fails with EINVAL (before any direct read of the file succeeded).
//!
//! Alignment of direct reads: statx `stx_dio_offset_align` when the file system reports it,
//! else the logical block size of the disk ([`crate::device`]), 4096 without a block device.
//! Buffered files get `POSIX_FADV_RANDOM`: plot reads are random, readahead only wastes disk time.
//! Every file is opened with O_NOATIME where allowed ([`open_read`]).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::buffer::BUFFER_ALIGNMENT_BYTES;
use crate::{device, DirectIo, FileId, IoError, OpenedFile};

/// Largest read alignment accepted from statx or sysfs (64 KiB block file systems).
const ALIGNMENT_BYTES_MAX: u32 = 65536;

/// An open file and how it is read.
#[derive(Debug)]
pub(crate) struct FileState {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    /// O_DIRECT is set on the file.
    pub(crate) direct: bool,
    /// A direct read of this file succeeded: a later EINVAL is an error, not a refusal.
    pub(crate) direct_confirmed: bool,
    /// Offsets and lengths of new reads are multiples of this (1 when buffered).
    pub(crate) alignment: u32,
    /// Buffers of new reads start at a multiple of this.
    pub(crate) memory_alignment: usize,
}

/// Why a file asked for with O_DIRECT is read buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    OpenRefused,
    Unsupported,
    ReadRefused,
}

impl Fallback {
    fn reason(self) -> &'static str {
        match self {
            Fallback::OpenRefused => "open with O_DIRECT failed with EINVAL",
            Fallback::Unsupported => "statx reports no direct I/O for this file",
            Fallback::ReadRefused => "the first direct read failed with EINVAL",
        }
    }
}

/// Counts fallbacks and logs the first one (a file system without O_DIRECT usually holds many
/// plots: one line, not thousands).
#[derive(Debug, Default)]
pub(crate) struct FallbackLog {
    pub(crate) count: u64,
}

impl FallbackLog {
    pub(crate) fn record(&mut self, path: &Path, fallback: Fallback) {
        self.count += 1;
        if self.count == 1 {
            tracing::warn!(
                file = %path.display(),
                "reading buffered: {}; further fallbacks are only counted",
                fallback.reason()
            );
        }
    }
}

impl FileState {
    /// Opens `path` for reading as `direct` asks; says whether O_DIRECT was asked and refused.
    pub(crate) fn open(path: &Path, direct: DirectIo) -> io::Result<(FileState, Option<Fallback>)> {
        if direct == DirectIo::Off {
            return Ok((FileState::buffered(open_read(path, 0)?, path)?, None));
        }
        let file = match open_read(path, libc::O_DIRECT) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let state = FileState::buffered(open_read(path, 0)?, path)?;
                return Ok((state, Some(Fallback::OpenRefused)));
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let (alignment, memory_alignment) = match dio_alignment(&file) {
            DioAlignment::Unsupported => {
                set_buffered(&file)?;
                let state = FileState::buffered(file, path)?;
                return Ok((state, Some(Fallback::Unsupported)));
            }
            DioAlignment::Known { offset_bytes, memory_bytes } => (offset_bytes, memory_bytes),
            DioAlignment::Unknown => {
                // A device node is read on the device it names, not the one holding the node.
                let dev = if meta.file_type().is_block_device() { meta.rdev() } else { meta.dev() };
                let disk = device::disk_of_dev(libc::major(dev), libc::minor(dev));
                (disk.logical_block_bytes, disk.logical_block_bytes)
            }
        };
        assert!(alignment.is_power_of_two() && alignment <= ALIGNMENT_BYTES_MAX);
        let state = FileState {
            len: file_len(&file, &meta)?,
            file,
            path: path.to_path_buf(),
            direct: true,
            direct_confirmed: false,
            alignment,
            memory_alignment: (memory_alignment as usize).max(BUFFER_ALIGNMENT_BYTES),
        };
        Ok((state, None))
    }

    fn buffered(file: File, path: &Path) -> io::Result<FileState> {
        let len = file_len(&file, &file.metadata()?)?;
        advise_random(&file);
        Ok(FileState {
            file,
            path: path.to_path_buf(),
            len,
            direct: false,
            direct_confirmed: false,
            alignment: 1,
            memory_alignment: BUFFER_ALIGNMENT_BYTES,
        })
    }

    pub(crate) fn opened(&self, id: FileId) -> OpenedFile {
        OpenedFile { id, len: self.len, direct: self.direct, alignment: self.alignment }
    }

    /// Clears O_DIRECT on the open file; reads already issued keep their aligned geometry.
    fn fall_back(&mut self) -> io::Result<()> {
        set_buffered(&self.file)?;
        advise_random(&self.file);
        self.direct = false;
        self.alignment = 1;
        self.memory_alignment = BUFFER_ALIGNMENT_BYTES;
        Ok(())
    }
}

/// Bytes in the file; for a block device node (whose `st_size` is 0), the device's size.
fn file_len(file: &File, meta: &Metadata) -> io::Result<u64> {
    if meta.file_type().is_block_device() {
        let mut file = file; // reads are positional: moving the offset changes nothing
        return file.seek(SeekFrom::End(0));
    }
    Ok(meta.len())
}

/// What statx says about direct I/O on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DioAlignment {
    /// The file system does not report it (tmpfs, older kernels).
    Unknown,
    /// Reported as not supported on this file.
    Unsupported,
    Known {
        offset_bytes: u32,
        memory_bytes: u32,
    },
}

fn dio_alignment(file: &File) -> DioAlignment {
    let mut statx = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the fd is open (owned by `file`, borrowed for the call); the path is a valid
    // empty C string, as AT_EMPTY_PATH requires; `statx` points to writable memory of the
    // struct's size, which the kernel fills and which outlives the call.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            statx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return DioAlignment::Unknown;
    }
    // SAFETY: `libc::statx` holds only integers, so the zeroed bytes (and whatever the kernel
    // wrote over them) are a valid value.
    let statx = unsafe { statx.assume_init() };
    if statx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return DioAlignment::Unknown;
    }
    let (offset_bytes, memory_bytes) = (statx.stx_dio_offset_align, statx.stx_dio_mem_align);
    if offset_bytes == 0 {
        return DioAlignment::Unsupported;
    }
    if !offset_bytes.is_power_of_two() || offset_bytes > ALIGNMENT_BYTES_MAX {
        return DioAlignment::Unknown;
    }
    let memory_bytes = if memory_bytes.is_power_of_two() { memory_bytes } else { offset_bytes };
    DioAlignment::Known { offset_bytes, memory_bytes: memory_bytes.min(ALIGNMENT_BYTES_MAX) }
}

/// Clears O_DIRECT on an open file (Linux allows toggling it with F_SETFL).
/// Opens `path` read-only with `flags` (`open(2)` flags) and O_NOATIME, so that reading plots
/// writes no access times to their disks (the kernel also skips its atime check on each
/// read); without O_NOATIME where it is refused: EPERM when we neither own the file nor have
/// CAP_FOWNER, or EINVAL from a file system that takes the flag amiss (the open is then tried
/// as it would be without us asking; its own EINVAL, to O_DIRECT say, stands).
pub fn open_read(path: &Path, flags: i32) -> io::Result<File> {
    open_noatime_or_not(flags, |flags| OpenOptions::new().read(true).custom_flags(flags).open(path))
}

fn open_noatime_or_not(
    flags: i32,
    mut open: impl FnMut(i32) -> io::Result<File>,
) -> io::Result<File> {
    match open(flags | libc::O_NOATIME) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => open(flags),
        opened => opened,
    }
}

fn set_buffered(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on an fd that `file` keeps open for the call; it takes no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on the same open fd with an integer argument; it takes no memory.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn advise_random(file: &File) {
    // SAFETY: posix_fadvise on an fd that `file` keeps open for the call; it takes no memory.
    // Only a hint: an error (e.g. ESPIPE, EINVAL on odd file systems) changes nothing.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
}

/// Where one read lands: `read_bytes` bytes at `read_offset` into a buffer, of which the
/// caller asked for `window_start..window_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    pub(crate) read_offset: u64,
    pub(crate) read_bytes: u32,
    pub(crate) window_start: u32,
    pub(crate) window_end: u32,
    pub(crate) alignment: u32,
}

impl ReadPlan {
    /// The read of `len` bytes at `offset`, widened to `alignment`; `None` if the read does
    /// not fit in u64 offsets and u32 lengths.
    pub(crate) fn new(offset: u64, len: u32, alignment: u32) -> Option<ReadPlan> {
        assert!(alignment.is_power_of_two(), "alignment {alignment}");
        let a = u64::from(alignment);
        let end = offset.checked_add(u64::from(len))?;
        let read_offset = offset & !(a - 1);
        let read_end = end.checked_next_multiple_of(a)?;
        let read_bytes = u32::try_from(read_end - read_offset).ok()?;
        let window_start = u32::try_from(offset - read_offset).ok()?;
        let window_end = u32::try_from(end - read_offset).ok()?;
        Some(ReadPlan { read_offset, read_bytes, window_start, window_end, alignment })
    }
}

/// A read in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadProgress {
    pub(crate) plan: ReadPlan,
    pub(crate) done_bytes: u32,
    /// The read was issued with O_DIRECT (so far).
    pub(crate) direct: bool,
    /// EAGAIN, EINTR and EINVAL-fallback retries so far.
    pub(crate) retries: u32,
}

/// What to do with a read after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read the rest (`next_offset`, `remaining_bytes`).
    Again,
    /// The file fell back to buffered reads (count it); read the rest.
    FellBack,
    /// Done: the window is ready.
    Complete,
    Fail(IoError),
}

impl ReadProgress {
    pub(crate) fn new(plan: ReadPlan, direct: bool) -> ReadProgress {
        ReadProgress { plan, done_bytes: 0, direct, retries: 0 }
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.plan.read_offset + u64::from(self.done_bytes)
    }

    pub(crate) fn remaining_bytes(&self) -> u32 {
        self.plan.read_bytes - self.done_bytes
    }

    /// The requested bytes that were read, as a range of the buffer.
    pub(crate) fn window(&self) -> (usize, usize) {
        let start = self.plan.window_start as usize;
        let end = (self.plan.window_end.min(self.done_bytes) as usize).max(start);
        (start, end)
    }

    /// Takes the result of one attempt (bytes read, or an errno) and says what comes next.
    pub(crate) fn step(
        &mut self,
        file: &mut FileState,
        result: Result<u32, i32>,
        retries_max: u32,
    ) -> Step {
        let errno = match result {
            Ok(n) => {
                assert!(
                    n <= self.remaining_bytes(),
                    "read {n} bytes, asked {}",
                    self.remaining_bytes()
                );
                self.done_bytes += n;
                if n > 0 && self.direct {
                    file.direct_confirmed = true;
                }
                let at_eof = n == 0
                    // O_DIRECT returns a count off the alignment only at end of file.
                    || (self.direct && self.next_offset() % u64::from(self.plan.alignment) != 0);
                return if at_eof || self.remaining_bytes() == 0 {
                    Step::Complete
                } else {
                    Step::Again
                };
            }
            Err(errno) => errno,
        };
        let retry = errno == libc::EAGAIN
            || errno == libc::EINTR
            || (errno == libc::EINVAL && self.direct && !file.direct_confirmed);
        if !retry {
            return Step::Fail(IoError::Os(errno));
        }
        self.retries += 1;
        if self.retries > retries_max {
            return Step::Fail(IoError::Os(errno));
        }
        if errno != libc::EINVAL {
            return Step::Again;
        }
        // A direct read refused before any succeeded: the file system takes no O_DIRECT.
        self.direct = false;
        if !file.direct {
            return Step::Again; // an earlier read of this file already switched it
        }
        match file.fall_back() {
            Ok(()) => Step::FellBack,
            Err(e) => Step::Fail(IoError::Os(e.raw_os_error().unwrap_or(libc::EINVAL))),
        }
    }
}

/// A file for unit tests under `target/tmp-disk-io` (the real disk; `/tmp` may be tmpfs).
#[cfg(test)]
pub(crate) fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp-disk-io");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(format!("file-{name}-{}", std::process::id()));
    std::fs::write(&path, bytes).expect("write");
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn status_flags(file: &File) -> i32 {
        // SAFETY: F_GETFL on an fd that `file` keeps open for the call; it takes no memory.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) }
    }

    #[test]
    fn our_own_files_open_without_access_times() {
        let path = scratch("noatime", &[7u8; 4096]);
        let file = open_read(&path, 0).expect("open");
        assert_ne!(status_flags(&file) & libc::O_NOATIME, 0, "O_NOATIME set");
        std::fs::remove_file(&path).expect("remove");
        let missing = open_read(&path, 0).expect_err("no such file");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_refused_noatime_opens_again_without_it() {
        let path = scratch("noatime-refused", &[7u8; 4096]);
        let mut asked = Vec::new();
        // As the kernel answers a file we do not own: EPERM for O_NOATIME only.
        let file = open_noatime_or_not(libc::O_DIRECT, |flags| {
            asked.push(flags);
            if flags & libc::O_NOATIME != 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            File::open(&path)
        })
        .expect("opened the second time");
        assert_eq!(asked, [libc::O_DIRECT | libc::O_NOATIME, libc::O_DIRECT]);
        assert_eq!(status_flags(&file) & libc::O_NOATIME, 0);
        std::fs::remove_file(&path).expect("remove");
        // EINVAL is tried again without the flag too, and the second answer stands.
        let mut tries = 0;
        let err = open_noatime_or_not(libc::O_DIRECT, |_| {
            tries += 1;
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        })
        .expect_err("EINVAL to O_DIRECT stands");
        assert_eq!((err.raw_os_error(), tries), (Some(libc::EINVAL), 2));
        // Any other error is the answer at once.
        let mut tries = 0;
        let err = open_noatime_or_not(0, |_| {
            tries += 1;
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        })
        .expect_err("ENOENT stands");
        assert_eq!((err.raw_os_error(), tries), (Some(libc::ENOENT), 1));
    }

    #[test]
    fn plans_widen_to_the_alignment() {
        let p = ReadPlan::new(5000, 100, 4096).expect("fits");
        assert_eq!(
            (p.read_offset, p.read_bytes, p.window_start, p.window_end),
            (4096, 4096, 904, 1004)
        );
        let p = ReadPlan::new(4000, 200, 4096).expect("fits");
        assert_eq!(
            (p.read_offset, p.read_bytes, p.window_start, p.window_end),
            (0, 8192, 4000, 4200)
        );
        let p = ReadPlan::new(8192, 4096, 512).expect("fits");
        assert_eq!(
            (p.read_offset, p.read_bytes, p.window_start, p.window_end),
            (8192, 4096, 0, 4096)
        );
        let p = ReadPlan::new(77, 0, 512).expect("fits");
        assert_eq!((p.read_offset, p.read_bytes, p.window_start, p.window_end), (0, 512, 77, 77));
        let p = ReadPlan::new(77, 0, 1).expect("fits");
        assert_eq!((p.read_offset, p.read_bytes, p.window_start, p.window_end), (77, 0, 0, 0));
        let p = ReadPlan::new(123, 456, 1).expect("fits");
        assert_eq!((p.read_offset, p.read_bytes, p.window_start, p.window_end), (123, 456, 0, 456));
        assert_eq!(ReadPlan::new(u64::MAX - 10, 100, 1), None);
        assert_eq!(ReadPlan::new(u64::MAX - 10, 5, 4096), None);
        assert_eq!(ReadPlan::new(100, u32::MAX, 4096), None);
    }

    fn progress_of(file: &FileState, offset: u64, len: u32) -> ReadProgress {
        ReadProgress::new(ReadPlan::new(offset, len, file.alignment).expect("fits"), file.direct)
    }

    #[test]
    fn steps_retry_short_reads_eagain_and_stop_at_eof() {
        let path = scratch("steps", &[7; 10000]);
        let (mut file, fallback) = FileState::open(&path, DirectIo::Prefer).expect("open");
        if fallback.is_some() {
            test_support::facility_missing(
                "disk-io::file",
                &format!("{} refuses O_DIRECT ({fallback:?})", path.display()),
            );
            return;
        }
        assert!(file.direct && file.alignment >= 512);
        let a = file.alignment;
        let mut p = progress_of(&file, 100, 2 * a);
        assert_eq!(p.plan.read_bytes, 3 * a);
        assert_eq!(p.step(&mut file, Ok(a), 3), Step::Again, "short, aligned: read the rest");
        assert_eq!(p.next_offset(), u64::from(a));
        assert_eq!(p.step(&mut file, Err(libc::EAGAIN), 3), Step::Again);
        assert_eq!(p.step(&mut file, Err(libc::EINTR), 3), Step::Again);
        assert_eq!(p.step(&mut file, Ok(2 * a), 3), Step::Complete);
        assert_eq!(p.window(), (100, 100 + 2 * a as usize));
        // Off the alignment only at end of file: done, the window cut there.
        let mut p = progress_of(&file, 9000, 3000);
        let tail = 10000 - p.plan.read_offset as u32;
        assert_eq!(p.step(&mut file, Ok(tail), 3), Step::Complete);
        assert_eq!(p.window(), (9000 - p.plan.read_offset as usize, tail as usize));
        // Zero bytes: end of file; a window past it is empty.
        let mut p = progress_of(&file, 20000, 10);
        assert_eq!(p.step(&mut file, Ok(0), 3), Step::Complete);
        assert_eq!(p.window().0, p.window().1);
        // Retries are bounded; other errors fail at once.
        let mut p = progress_of(&file, 0, 10);
        for _ in 0..3 {
            assert_eq!(p.step(&mut file, Err(libc::EAGAIN), 3), Step::Again);
        }
        assert_eq!(p.step(&mut file, Err(libc::EAGAIN), 3), Step::Fail(IoError::Os(libc::EAGAIN)));
        let mut p = progress_of(&file, 0, 10);
        assert_eq!(p.step(&mut file, Err(libc::EIO), 3), Step::Fail(IoError::Os(libc::EIO)));
        // A direct read succeeded: a later EINVAL is an error, not a refusal.
        assert!(file.direct_confirmed);
        let mut p = progress_of(&file, 0, 10);
        assert_eq!(p.step(&mut file, Err(libc::EINVAL), 3), Step::Fail(IoError::Os(libc::EINVAL)));
        std::fs::remove_file(&path).expect("rm");
    }

    #[test]
    fn einval_on_the_first_direct_read_falls_back_once() {
        let content: Vec<u8> = (0..10000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = scratch("fallback", &content);
        let (mut file, fallback) = FileState::open(&path, DirectIo::Prefer).expect("open");
        if fallback.is_some() {
            test_support::facility_missing(
                "disk-io::file",
                &format!("{} refuses O_DIRECT ({fallback:?})", path.display()),
            );
            return;
        }
        assert!(file.direct);
        let mut first = progress_of(&file, 10, 20);
        let mut second = progress_of(&file, 30, 20);
        assert_eq!(first.step(&mut file, Err(libc::EINVAL), 3), Step::FellBack);
        assert!(!file.direct && !first.direct && file.alignment == 1);
        assert_eq!(second.step(&mut file, Err(libc::EINVAL), 3), Step::Again, "counted once");
        // The fd is buffered now: unaligned reads work.
        let mut odd = [0u8; 33];
        file.file.read_exact_at(&mut odd, 3).expect("buffered read at an odd offset");
        assert_eq!(&odd[..], &content[3..36]);
        assert_eq!(first.step(&mut file, Ok(first.remaining_bytes()), 3), Step::Complete);
        std::fs::remove_file(&path).expect("rm");
    }

    #[test]
    fn procfs_refuses_o_direct_at_open() {
        let (file, fallback) =
            FileState::open(Path::new("/proc/version"), DirectIo::Prefer).expect("open");
        assert_eq!(fallback, Some(Fallback::OpenRefused));
        assert!(!file.direct);
        assert_eq!(file.alignment, 1);
    }

    #[test]
    fn statx_reports_the_alignment_of_real_files() {
        let path = scratch("statx", b"x");
        let file = File::open(&path).expect("open");
        let got = dio_alignment(&file);
        eprintln!("statx dio alignment of {}: {got:?}", path.display());
        if let DioAlignment::Known { offset_bytes, memory_bytes } = got {
            assert!(offset_bytes.is_power_of_two() && memory_bytes.is_power_of_two());
        }
        std::fs::remove_file(&path).expect("rm");
    }
}
