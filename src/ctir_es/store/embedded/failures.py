"""SQLite and OS failures of the embedded store as ``StoreError``s that name the cause and the fix.

Why one place: every public method of the store goes through ``guarded``, so a full disk, a
read-only file or a damaged page reads the same whichever call met it (docs/reliability.md).
"""

from __future__ import annotations

import errno
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ...errors import StoreCorrupted, StoreError

T = TypeVar("T")
REBUILD_HINT = ("to rebuild it, move the file aside and run the same `ctir-es ingest` into it again "
                "(the catalogue is the source of truth); `ctir-es stats --check` runs SQLite's full integrity check")


class NoStore(StoreError):
    """There is no store file at the path (reads never create one)."""


# SQLite's primary result codes (sqlite.org/rescode.html): an extended code carries one of these
# in its low byte (SQLITE_CORRUPT_VTAB, a damaged FTS5 index, is 267 = CORRUPT | 1 << 8).
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 8, 10, 11, 13, 26


def sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` (None for an error that is not SQLite's)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_corrupt(exc: BaseException) -> bool:
    return sqlite_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def is_read_only(exc: BaseException) -> bool:
    return sqlite_code(exc) == SQLITE_READONLY or getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES,
                                                                                    errno.EPERM)


def describe(path: Path, exc: BaseException) -> StoreError:
    """A SQLite / OS failure as a ``StoreError`` that names the cause and what to do: by SQLite's
    result code or the OS errno, never by the message's words."""
    text = str(exc)
    code = sqlite_code(exc)
    err = getattr(exc, "errno", None)
    if is_corrupt(exc):
        return StoreCorrupted(f"store {path} is corrupted ({text}); {REBUILD_HINT}")
    if code == SQLITE_FULL or err == errno.ENOSPC:
        return StoreError(f"the disk holding store {path} is full ({text}): the batch being written was rolled "
                          "back and every batch committed before is kept; free some space and re-run the same "
                          "command to resume")
    if is_read_only(exc):
        return StoreError(f"store {path} cannot be written ({text}): read-only media or permissions; "
                          "ingest into a writable --store (queries work on read-only media)")
    if code == SQLITE_IOERR or err == errno.EIO:
        return StoreError(f"I/O error on store {path} ({text}); nothing after the last committed batch was "
                          "written: check the disk, then re-run to resume")
    return StoreError(f"store {path}: {text}")


def guarded(empty: Callable[[], Any] | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """SQLite / OS errors of a store method become ``StoreError``s that name the cause; with
    ``empty``, a store that does not exist reads as ``empty()`` instead of ``NoStore``. The
    store's ``-wal`` file is checked first (``_watch_wal``): a lost one fails every call."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
            try:
                self._watch_wal()
                return fn(self, *args, **kwargs)
            except NoStore:
                if empty is None:
                    raise
                return empty()  # type: ignore[no-any-return]
            except (sqlite3.DatabaseError, OSError) as exc:
                raise describe(self.path, exc) from exc

        return wrapper

    return decorate
