#!/usr/bin/env python3
"""faultfs: a read-only FUSE passthrough with injected read faults, for the fault tests.

Usage (as root):
    faultfs.py --source DIR --mountpoint DIR --mode-file FILE [--log FILE] [--page-cache]

Mirrors DIR at the mount point, read-only. Every read() first reads the mode file (outside the
mount) and acts on its first line:

    ok          pass the read through
    eio         fail the read with EIO
    hang        block until the mode file says something else, then act on that
    delay:MS    sleep MS milliseconds, then pass the read through

A missing or empty mode file means ok. Only reads are faulted: lookups, getattr and readdir
keep working, so the plots stay listed while their reads fail. Killing this process (SIGKILL)
makes the mount a "vanished disk": every access fails with ENOTCONN until it is unmounted
(`umount -l MOUNTPOINT` or `fusermount3 -u -z MOUNTPOINT`).

The mount uses FUSE direct_io, so the kernel page cache never answers a read on its own: every
read of a plot reaches read() here and meets the current mode (mergerfs' `cache.files=off`
mounts the same way). --page-cache mounts without it: the kernel may then answer repeated
reads from its cache, and io_uring reads go through the page-cache path. The filesystem is
multithreaded, so a hung read does not hold back other reads or a change of mode.

With --log, each read is logged as one line: "<mode> <path> <offset> <length>" (a hung read
twice: "hang ..." when it starts to wait, then the mode it ends with), so a test can check
that its faults really reached the reads.

Needs fusepy (Debian: python3-fusepy, module `fusepy`; PyPI: fusepy, module `fuse`).
"""

import argparse
import errno
import os
import sys
import threading
import time

try:
    import fusepy as fuse  # Debian's python3-fusepy
except ImportError:  # pragma: no cover - depends on the installation
    import fuse  # fusepy from PyPI

HANG_POLL_SECONDS = 0.02


def read_mode(mode_file):
    try:
        with open(mode_file, encoding="ascii") as f:
            line = f.readline().strip()
    except FileNotFoundError:
        return "ok"
    return line or "ok"


class FaultFs(fuse.Operations):
    def __init__(self, source, mode_file, log_file):
        self.source = os.path.realpath(source)
        self.mode_file = mode_file
        self.log = open(log_file, "a", buffering=1, encoding="utf-8") if log_file else None
        self.log_lock = threading.Lock()

    def _path(self, path):
        return os.path.join(self.source, path.lstrip("/"))

    def _note(self, mode, path, offset, size):
        if self.log is not None:
            with self.log_lock:
                self.log.write(f"{mode} {path} {offset} {size}\n")

    # ---- metadata: passed through, never faulted ----

    def getattr(self, path, fh=None):
        try:
            st = os.stat(self._path(path))  # follows links: a linked plot looks like a file
        except OSError as e:
            raise fuse.FuseOSError(e.errno)
        keys = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size",
                "st_atime", "st_mtime", "st_ctime")
        attrs = {k: getattr(st, k) for k in keys}
        attrs["st_mode"] &= ~0o222  # read-only
        return attrs

    def readdir(self, path, fh):
        try:
            names = os.listdir(self._path(path))
        except OSError as e:
            raise fuse.FuseOSError(e.errno)
        return [".", ".."] + names

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise fuse.FuseOSError(errno.EROFS)
        try:
            return os.open(self._path(path), os.O_RDONLY)
        except OSError as e:
            raise fuse.FuseOSError(e.errno)

    def release(self, path, fh):
        os.close(fh)
        return 0

    # ---- data: faulted by the mode file ----

    def read(self, path, size, offset, fh):
        mode = read_mode(self.mode_file)
        if mode == "hang":
            self._note(mode, path, offset, size)  # logged when it starts to hang
            while mode == "hang":
                time.sleep(HANG_POLL_SECONDS)
                mode = read_mode(self.mode_file)
        self._note(mode, path, offset, size)
        if mode == "eio":
            raise fuse.FuseOSError(errno.EIO)
        if mode.startswith("delay:"):
            time.sleep(int(mode[len("delay:"):]) / 1000.0)
        elif mode != "ok":
            print(f"faultfs: unknown mode {mode!r}, reading as ok", file=sys.stderr)
        return os.pread(fh, size, offset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="folder mirrored at the mount point")
    parser.add_argument("--mountpoint", required=True)
    parser.add_argument("--mode-file", required=True, help="read on every read(): ok, eio, "
                        "hang or delay:MS")
    parser.add_argument("--log", help="append one line per read: mode path offset length")
    parser.add_argument("--page-cache", action="store_true",
                        help="mount without FUSE direct_io (the kernel may cache reads)")
    args = parser.parse_args()
    ops = FaultFs(args.source, args.mode_file, args.log)
    fuse.FUSE(
        ops,
        args.mountpoint,
        foreground=True,
        nothreads=False,  # a hung read must not block other reads or the unmount
        ro=True,
        direct_io=not args.page_cache,  # no page cache: every read reaches read() above
        fsname="faultfs",
    )


if __name__ == "__main__":
    main()
