"""Is someone writing to an embedded store file, and could this process write to it? Asked by
commands that read the whole catalogue and then store a result (``ctir-es calibrate``), before
they spend minutes measuring a partial catalogue or a store they cannot write.

- ``active_writer``: an ingest holds an advisory ``flock`` on the store file while it writes
  (``EmbeddedStore.exclusive_writer``). On Linux it is read from ``/proc/locks`` by the file's
  (device, inode), which opens nothing: closing a descriptor of the store file would drop this
  process's SQLite (POSIX) locks on it, and a probe lock could make an ingest starting at that
  moment refuse. Elsewhere, a shared ``flock`` tried and released at once; call it only before
  this process opens the store.
- ``unwritable``: why the file cannot be written (a read-only file system, permissions), from
  ``statvfs`` and ``access``; SQLite alone says "unable to open database file".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..errors import StoreError, StoreLocked


def active_writer(path: Path, *, store_open: bool = False) -> str | None:
    """``"pid N"`` (or ``"another process"``) when an ingest is writing to the store file at
    ``path`` now; None when none is, or the file does not exist. With ``store_open`` (this
    process has the store open) only ``/proc/locks`` is read: None where there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None if store_open else _probe_with_flock(path)
    for line in table.splitlines():
        fields = line.split()
        if "FLOCK" in fields and "WRITE" in fields and key in fields and "->" not in fields:
            pid = fields[fields.index(key) - 1]
            return f"pid {pid}" if pid.isdigit() and int(pid) != os.getpid() else None
    return None


def _probe_with_flock(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "another process"
    except OSError:
        return None
    finally:
        os.close(fd)  # releases the shared lock too
    return None


def unwritable(path: Path) -> str | None:
    """Why the store at ``path`` cannot be written (``"is on a read-only file system"``,
    ``"is not writable by this user"``, the same for its folder), or None when it can."""
    folder = path.parent
    for target, what in ((path, ""), (folder, f"its folder {folder} ")):
        if not target.exists():
            continue
        with contextlib.suppress(OSError):
            if os.statvfs(target).f_flag & os.ST_RDONLY:
                return f"{what}is on a read-only file system"
        if not os.access(target, os.W_OK):
            return f"{what}is not writable by this user"
    return None


def check_quiet_store(path: Path, *, command: str, will_write: bool) -> None:
    """Refuse (``StoreLocked``) while an ingest writes to ``path``: ``command`` would measure a
    partial catalogue; and (``StoreError``) when ``will_write`` and the file cannot be written.
    Call it before the store is opened. A missing store is left to the open to report."""
    if not path.exists():
        return
    writer = active_writer(path)
    if writer is not None:
        raise StoreLocked(
            f"an ingest ({writer}) is writing to {path}: {command} now would measure a partial catalogue; "
            f"wait for the ingest to finish, then run `ctir-es {command}` again"
        )
    if will_write:
        reason = unwritable(path)
        if reason is not None:
            raise StoreError(
                f"store {path} {reason}: `ctir-es {command}` stores its result in the store; copy the store to "
                f"writable media and pass that copy to --store, or add --dry-run to measure without storing"
            )
