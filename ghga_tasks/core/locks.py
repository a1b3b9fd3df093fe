"""Locks that keep two writers away from one output directory and one ``.part`` file.

Design notes:
- **Run lock** (``<output_dir>/.ghga_tasks/run.lock``): a POSIX record lock
  (``fcntl.lockf``). Such locks belong to the *process*, so the CLI and the Snakemake
  workflow it runs in the same process can both take it, while any other process is
  refused at once. They are not inherited by child processes, so a download job never
  keeps a dead run's lock alive. The catch: closing *any* descriptor of the lock file
  drops the process's lock, so the descriptor is kept open until the process exits and
  the file is never opened anywhere else in the process while the lock is held.
- **Part lock**: the download job holds ``flock`` on its open ``.part`` for its whole life.
  A Snakemake that is SIGKILLed leaves its job running as an orphan that keeps writing;
  a new run's job for the same file is refused instead of truncating the orphan's file.
  When the holder dies the kernel drops the lock, so a ``.part`` left by a SIGKILL is
  simply taken over and truncated.
- The lock is taken *before* truncating, and we check afterwards that the path still
  names the file we locked: the previous holder may have renamed it into place (or
  removed it) between our ``open`` and our ``flock``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from pathlib import Path

from .errors import LocalStorageError, OutputLocked

log = logging.getLogger(__name__)

STATE_DIR = ".ghga_tasks"  # the same folder state.STATE_DIR names (state does not import us)
RUN_LOCK_FILE = "run.lock"
_BUSY = (errno.EACCES, errno.EAGAIN)


def run_lock_path(output_dir: Path) -> Path:
    return output_dir / STATE_DIR / RUN_LOCK_FILE


def check_output_dir(output_dir: Path) -> None:
    """Fail before anything runs, naming the path, if ``output_dir`` cannot take files:
    a file in its way, no permission, a read-only file system. (Root is refused only by
    the last; ``os.access`` sees that too.)"""
    existing = next(p for p in (output_dir, *output_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise LocalStorageError(path=str(existing), problem="is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "is on a read-only file system" if read_only else "is not writable for you"
        raise LocalStorageError(path=str(existing), problem=f"{why}; choose another output_dir")


def hold_run_lock(output_dir: Path) -> None:
    """Lock ``output_dir`` for this process until it exits, or raise :class:`OutputLocked`."""
    path = run_lock_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in _BUSY:
            os.close(fd)
            raise
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)  # holds no lock of ours: lockf would have succeeded if it did
        raise OutputLocked(
            path=str(output_dir),
            holder="another ghga-tasks run is downloading into this directory"
            + (f" (process {holder})" if holder else ""),
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    log.debug("holding the run lock %s", path)
    # ``fd`` stays open on purpose until the process exits (see the design notes).


def open_locked_part(part: Path, *, truncate: bool = True) -> int:
    """Open ``part`` for writing, exclusively ``flock``-ed and truncated (unless the caller
    resumes it: ``resume_partial``); return the fd."""
    for _attempt in range(3):
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in _BUSY and not isinstance(error, BlockingIOError):
                raise
            raise OutputLocked(
                path=str(part),
                holder="another download job is still writing this file "
                "(perhaps one left running by a killed run)",
            ) from None
        if is_current(fd, part):
            if truncate:
                os.ftruncate(fd, 0)  # a .part left by a killed run is replaced, not resumed
            return fd
        os.close(fd)  # the previous holder renamed or removed it after our open
    raise OutputLocked(path=str(part), holder="the file keeps being replaced by another job")


def is_current(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def remove_if_current(fd: int, path: Path) -> None:
    """Delete ``path`` if it is still our file (never another job's newer one)."""
    if is_current(fd, path):
        path.unlink(missing_ok=True)
