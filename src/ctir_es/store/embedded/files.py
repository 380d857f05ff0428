"""The store file itself: refusing what is not a regular file, the cheap damage check on open,
and the ways a reader opens it (never creating anything).

Why before SQLite: a FIFO or a device given as ``--store`` would block or be written to, and a
truncated file is better named at once than met later as "malformed" by some query.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from ...errors import StoreCorrupted, StoreError
from .failures import REBUILD_HINT, describe, is_corrupt

SQLITE_MAGIC = b"SQLite format 3\x00"


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def exists(path: Path) -> bool:
    """Whether the store file exists; what is not a regular file (a FIFO, a device, a
    directory) is refused here, by its ``stat``, before anything opens it or creates a file
    beside it."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise describe(path, exc) from exc
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is {file_kind(st.st_mode)}, not a store file: check --store "
                         "(a store is a regular file, created by `ctir-es ingest`)")
    return True


def open_descriptor(path: Path) -> int:
    """A read-only descriptor of the store file (it must exist), refusing a file replaced by
    something else since ``exists`` looked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise describe(path, exc) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StoreError(f"{path} is {file_kind(st.st_mode)}, not a store file: check --store")
    return fd


def check_header(path: Path, fd: int) -> None:
    """The cheap corruption check on open: the header, the page size, whole pages."""
    try:
        header = os.pread(fd, 100, 0)
        size = os.fstat(fd).st_size
    except OSError as exc:
        raise describe(path, exc) from exc
    if size == 0:
        return  # a new file SQLite has not written yet
    if header[:16] != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a ctir-es store (not a SQLite file, or its header is damaged); "
                         f"check --store; if it was a store, {REBUILD_HINT}")
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    # A checkpoint cut short (a full disk) can leave part of a page at the end of the file:
    # the WAL beside it still holds that page, and SQLite writes it again from there.
    wal = Path(f"{path}-wal")
    part_page_ok = wal.exists() and wal.stat().st_size > 0
    if len(header) < 100 or page < 512 or page & (page - 1) or (size % page and not part_page_ok):
        raise StoreCorrupted(f"store {path} is corrupted (truncated or damaged header: {size:,} bytes, "
                             f"page size {page}); {REBUILD_HINT}")


def open_for_reading(path: Path) -> tuple[sqlite3.Connection, str]:
    """Read-write when possible (WAL readers share memory with the writer), else read-only,
    else immutable (read-only media where SQLite cannot create its ``-shm`` file); returns the
    connection and the mode that opened it."""
    uri = path.resolve().as_uri()
    last: sqlite3.Error | None = None
    for mode in ("mode=rw", "mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=30, check_same_thread=False,
                               isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn, mode
        except sqlite3.OperationalError as exc:  # cannot open / lock / create -shm: try the next mode
            conn.close()
            last = exc
            if is_corrupt(exc):
                raise
    assert last is not None
    raise last
