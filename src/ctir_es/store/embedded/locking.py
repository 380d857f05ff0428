"""One writer per store file: an advisory ``flock`` on the file itself, and the holder's pid
beside it for the message a second writer gets.

Why the file and not a name: the lock belongs to the inode, so two names of one file (a hard
link, a bind mount, a symlink) are one store; the kernel releases it when the holder dies, so a
killed ingest never leaves a stale lock. ``<real path>.lock`` only names the holder (an older
ctir-es, which locked that file alone, is refused too); it is opened without following a
symlink, and one that is not a plain file of its own is refused rather than written to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ...errors import StoreError, StoreLocked
from .failures import describe


def acquire(path: Path, fd: int) -> None:
    """Take the writer's flock on the store file's descriptor, or raise ``StoreLocked`` naming
    who holds it (readers are never blocked)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who, via = _holder(path, fd)
        raise StoreLocked(
            f"another ingest ({who}) is writing to {path}{via}; wait for it to finish "
            "(queries keep working meanwhile)"
        ) from None
    except OSError as exc:
        raise describe(path, exc) from None


def release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(path: Path, fd: int) -> tuple[str, str]:
    """Who holds the flock on the store file: its pid from /proc/locks (Linux), and which
    name it writes through when that is not ours."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pid = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "FLOCK" in fields and "WRITE" in fields and key in fields and "->" not in fields:
                pid = fields[fields.index(key) - 1]
                break
    real = path.resolve()
    ours = real.with_name(real.name + ".lock")
    written = None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        written = ours.read_text().strip()
    via = " through another name of this file (a hard link or a bind mount)" if pid and written != pid else ""
    return (f"pid {pid}" if pid else "another process"), via


@contextlib.contextmanager
def pid_file(path: Path) -> Iterator[None]:
    """Our pid in ``<real path>.lock`` while the writer holds the store (locked too: an older
    ctir-es locks this file only)."""
    real = path.resolve()
    lock_path = real.with_name(real.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"the lock file {lock_path} is a symlink: refusing to follow it (remove it; "
                             "ctir-es creates its own)") from None
        raise describe(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise StoreError(f"the lock file {lock_path} is not a plain file of its own (a hard link or a "
                             "special file): refusing to write to it (remove it; ctir-es creates its own)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # an older ctir-es, which locks this file only
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise StoreLocked(
                f"another ingest (pid {holder}) is writing to {path}; wait for it to finish "
                "(queries keep working meanwhile)"
            ) from None
        try:
            os.ftruncate(fd, 0)  # our own lock file (checked above)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:
            raise describe(path, exc) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
