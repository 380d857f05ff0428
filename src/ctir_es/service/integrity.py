"""The store's pages read once in the background when ``serve`` starts, so ``/health`` reports a
damaged store as unhealthy (503 ``store_corrupted``) before any request happens to touch the
damaged page.

Cheap per-request probes (a count, one BM25 query) read only a few pages: damage in the middle
of the file goes unseen by them while every query reaching it fails. SQLite's ``quick_check``
reads every page (it skips only the index-against-table comparison of the full
``integrity_check`` that ``ctir-es stats --check`` runs). It runs on a read-only connection of
its own, so it never holds the store's lock: queries are answered meanwhile, and ``/health``
says ``integrity: checking``.

Only the embedded store has pages to read; Elasticsearch checks its own shards.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import StoreCorrupted, one_line
from ..store.embedded import REBUILD_HINT, EmbeddedStore

log = logging.getLogger("ctir_es.service")

MAX_PROBLEMS = 5  # lines of quick_check output kept in the message


def quick_check(path: Path) -> StoreCorrupted | bool:
    """``PRAGMA quick_check`` of the store file at ``path`` on a read-only connection of its own:
    True when every page reads, False when the check could not run (the file cannot be opened
    a second time, e.g. read-only media without its ``-shm``), else the ``StoreCorrupted`` a
    query on the damage would raise."""
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:  # cannot open / lock: not damage (that is a DatabaseError)
        log.warning("store integrity check could not run on %s: %s", path, one_line(exc))
        return False
    except sqlite3.DatabaseError as exc:
        return StoreCorrupted(f"store {path} is corrupted ({one_line(exc)}); {REBUILD_HINT}")
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({MAX_PROBLEMS})").fetchall()]
    except sqlite3.OperationalError as exc:
        log.warning("store integrity check could not run on %s: %s", path, one_line(exc))
        return False
    except sqlite3.DatabaseError as exc:  # a page so damaged the check itself stops
        rows = [one_line(exc)]
    finally:
        conn.close()
    if rows == ["ok"]:
        return True
    return StoreCorrupted(f"store {path} is corrupted ({'; '.join(rows)}); {REBUILD_HINT}")


class IntegrityCheck:
    """One background ``quick_check`` of an embedded store; ``state`` is ``checking``, ``ok``,
    ``corrupted`` or ``skipped`` (not an embedded store, or the check could not open the file).
    ``on_corrupted`` gets the error."""

    def __init__(self, store: object, on_corrupted: Callable[[StoreCorrupted], None]) -> None:
        self.path = store.path if isinstance(store, EmbeddedStore) else None
        self.on_corrupted = on_corrupted
        self.state = "skipped" if self.path is None else "checking"
        self._thread: threading.Thread | None = None

    def start(self) -> IntegrityCheck:
        if self.path is not None:
            self._thread = threading.Thread(target=self._run, name="ctir-es-integrity", daemon=True)
            self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        assert self.path is not None
        found = quick_check(self.path)
        if not isinstance(found, StoreCorrupted):
            self.state = "ok" if found else "skipped"
            return
        self.state = "corrupted"
        log.error("%s", found)
        self.on_corrupted(found)
