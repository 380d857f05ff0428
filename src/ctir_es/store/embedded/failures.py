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


def describe(path: Path, exc: BaseException) -> StoreError:
    """A SQLite / OS failure as a ``StoreError`` that names the cause and what to do."""
    text = str(exc)
    low = text.lower()
    err = getattr(exc, "errno", None)
    if any(word in low for word in ("malformed", "not a database", "corrupt", "vtable constructor failed")):
        return StoreCorrupted(f"store {path} is corrupted ({text}); {REBUILD_HINT}")
    if "full" in low or err == errno.ENOSPC:
        return StoreError(f"the disk holding store {path} is full ({text}): the batch being written was rolled "
                          "back and every batch committed before is kept; free some space and re-run the same "
                          "command to resume")
    if "readonly" in low or "read-only" in low or err in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"store {path} cannot be written ({text}): read-only media or permissions; "
                          "ingest into a writable --store (queries work on read-only media)")
    if "i/o error" in low or err == errno.EIO:
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
