"""Folding the embedded store's WAL into its file in a thread beside the writer.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the WAL's size limit, on the
writer's own thread: in a bulk ingest that copy of every page a second time (each vector is
written to the WAL, then into the file) cost 2.5 of the ~17 us per product at 100k x 512. Here
a second connection runs a PASSIVE checkpoint after each bulk commit instead (after every
``FOLD_AFTER_ROWS`` products written), on the other core, while the writer prepares its next
batch. A PASSIVE checkpoint never waits for the writer or for
readers, and never blocks them; a crash during one is SQLite's ordinary recovery (the WAL is
replayed on the next open). The writer keeps its own automatic checkpoint at a larger size
(``WRITER_LIMIT_BYTES``) as the bound on the WAL should this thread fall behind or be gone
(a forked child, an error).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

WRITER_LIMIT_BYTES = 256 * 2**20  # the writer checkpoints itself beyond this much WAL
# A checkpoint once this many products were written since the last one: every bulk batch, but
# not every one-product write of a service (each checkpoint syncs the WAL and the file).
FOLD_AFTER_ROWS = 1000


class Checkpointer:
    """One thread with its own connection to ``path``; ``committed`` after each write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wake = threading.Event()
        self._stopping = False
        self.runs = 0  # checkpoints done (tests, benchmarks)
        self._rows = 0  # products written since the last wake-up
        self._thread = threading.Thread(target=self._run, name="ctir-es-checkpoint", daemon=True)
        self._thread.start()

    def committed(self, rows: int) -> None:
        """A write of ``rows`` products was committed: wake the thread once enough have been."""
        self._rows += rows
        if self._rows >= FOLD_AFTER_ROWS:
            self._rows = 0
            self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # the writer's own automatic checkpoint does the work
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                with contextlib.suppress(sqlite3.Error):  # busy or failing: the writer's limit applies
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
        finally:
            conn.close()


def writer_limit_pages(conn: sqlite3.Connection) -> int:
    """``WRITER_LIMIT_BYTES`` in pages of ``conn``'s file."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return max(1000, WRITER_LIMIT_BYTES // int(page_size))
