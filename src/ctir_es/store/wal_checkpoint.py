"""Folding the embedded store's WAL into its file in a thread beside the connection.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the WAL's size limit, on the
writer's own thread: in a bulk ingest that copy of every page a second time (each vector is
written to the WAL, then into the file) cost 2.5 of the ~17 us per product at 100k x 512. Here
a second connection runs a PASSIVE checkpoint instead, on the other core, while the writer
prepares its next batch: at once after every ``FOLD_AFTER_ROWS`` products written, and in any
case within ``FOLD_WITHIN_SECONDS`` of any commit (a small ingest, a service's one-product
writes, a writer killed before its close). Readers (``serve``, a query) run the same thread, so
a process holding the store folds in what another one committed: nothing committed lives only
in the ``-wal`` file for more than a few seconds while anyone has the store open. A PASSIVE
checkpoint never waits for the writer or for readers, and never blocks them; a crash during one
is SQLite's ordinary recovery (the WAL is replayed on the next open). The writer keeps its own
automatic checkpoint at a larger size (``WRITER_LIMIT_BYTES``) as the bound on the WAL should
this thread fall behind or be gone (a forked child, an error), and truncates the WAL when it
closes (``EmbeddedStore.close``).

The thread's connection reads the same ``-wal`` file as the store's (opened at its start): when
that file is deleted or replaced under the process, the thread notices within one period, folds
in what the old file still holds (through its open descriptor) and records it (``lost``); the
store reports it as a ``StoreError`` on its next call.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path

from ..errors import StoreError

WRITER_LIMIT_BYTES = 256 * 2**20  # the writer checkpoints itself beyond this much WAL
# A checkpoint at once when this many products were written since the last one: every bulk
# batch, but not every one-product write of a service (each checkpoint syncs the WAL and the file).
FOLD_AFTER_ROWS = 1000
# And in any case this long after a commit at most (the thread's period, readers included).
FOLD_WITHIN_SECONDS = 2.0
CLOSE_BUSY_MS = 5000  # the writer's closing TRUNCATE checkpoint waits this long for readers at most


def wal_path(path: Path) -> Path:
    return Path(f"{path}-wal")


def identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path`` (not following a symlink), None when absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class Checkpointer:
    """One thread with its own connection to ``path``; ``committed`` after each write of ours."""

    def __init__(self, path: Path, *, writer: bool = True) -> None:
        self.path = path
        self.writer = writer
        self.wal = wal_path(path)
        self._wake = threading.Event()
        self._stopping = False
        self.runs = 0  # checkpoints done (tests, benchmarks)
        self.lost = False  # the -wal file was deleted or replaced under the process
        self.rescued = False  # ... and what the old file held was folded into the store file
        self._rows = 0  # products written since the last wake-up
        self._folded: int | None = None  # data_version at the last complete fold
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ctir-es-checkpoint", daemon=True)
        self._thread.start()

    def committed(self, rows: int) -> None:
        """A write of ``rows`` products was committed: wake the thread at once when enough
        have been (else its period folds it in)."""
        self._rows += rows
        if self._rows >= FOLD_AFTER_ROWS:
            self._rows = 0
            self._wake.set()

    def wait_ready(self, seconds: float = 5.0) -> bool:
        """The thread's connection is open (tests)."""
        return self._ready.wait(seconds)

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=rw"  # never creates the file
            conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            self._ready.set()
            return  # the writer's own automatic checkpoint (and its close) do the work
        try:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the -wal file now
            known = identity(self.wal)
            self._ready.set()
            while not self._stopping:
                self._wake.wait(FOLD_WITHIN_SECONDS)
                self._wake.clear()
                if self._stopping:
                    return
                now = identity(self.wal)
                if known is None:
                    known = now
                elif now != known:  # deleted or replaced: fold in what our descriptor still reads
                    self.rescued = self._fold(conn, force=True)
                    self.lost = True
                    return
                self._fold(conn, force=False)
        finally:
            self._ready.set()
            conn.close()

    def _fold(self, conn: sqlite3.Connection, *, force: bool) -> bool:
        """A PASSIVE checkpoint when something was committed since the last complete one;
        True when the WAL is wholly in the file afterwards."""
        try:
            (version,) = conn.execute("PRAGMA data_version").fetchone()
            if version == self._folded and not force:
                return True
            busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:  # busy or failing: the next period (or the writer's limit) applies
            return False
        self.runs += 1
        complete = busy == 0 and log == done
        if complete:
            self._folded = version  # a commit after reading it changes it again: folded next time
        return complete


def writer_limit_pages(conn: sqlite3.Connection) -> int:
    """``WRITER_LIMIT_BYTES`` in pages of ``conn``'s file."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return max(1000, WRITER_LIMIT_BYTES // int(page_size))


def truncate(conn: sqlite3.Connection) -> bool:
    """Fold the whole WAL into the file and empty it (a closing writer): True when done."""
    try:
        conn.execute(f"PRAGMA busy_timeout={CLOSE_BUSY_MS}")
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return bool(busy == 0 and log == done)


def lost_error(path: Path, conn: sqlite3.Connection | None, checkpointer: Checkpointer | None, *,
               missing: bool) -> StoreError:
    """The ``-wal`` file of ``path`` was deleted (``missing``) or replaced while ``conn`` had it
    open: fold what the old file held (the connection still reads it) into the store file,
    unless the checkpointer did, and say what happened."""
    rescued = checkpointer is not None and checkpointer.rescued
    if conn is not None and not rescued:
        rescued = truncate(conn)
    wal = wal_path(path)
    outcome = ("the changes it held were copied into the store file first" if rescued
               else "changes committed since the last checkpoint may be lost")
    return StoreError(f"the write-ahead log {wal} of store {path} was "
                      f"{'deleted' if missing else 'replaced by another file'} while this process had the "
                      f"store open: {outcome}; stop every process using the store, then run "
                      f"`ctir-es stats --check --store {path}` (re-run the ingest to restore what is missing)")
