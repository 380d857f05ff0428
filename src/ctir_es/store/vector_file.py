"""Vectors outside SQLite (store format 4): one append-only float32 file per vector field.

The files live beside the store (``<store>.vectors/<n>.f32``, row ``slot`` at byte
``slot * dims * 4``). SQLite keeps what makes them consistent: ``vector_files`` records each
field's file, dims and committed length in rows (``rows``), and ``vectors`` maps (product,
field) to the slot of the product's current vector. A vector is written once, by ``pwrite``
into the page cache; SQLite's WAL carries ~20 bytes per vector instead of the 2 KiB blob twice
(WAL, then the checkpoint into the file), which was a third of SQLite's time per product.

Crash rule (docs/embedded-store.md): a transaction that writes vectors appends them at the
committed length it reads after ``BEGIN IMMEDIATE`` (so appends of two processes are serialised by
SQLite's write lock), writes and fdatasyncs them before its COMMIT, and the COMMIT records the
new length and the slots. So every slot a committed row names is on disk before that row is;
a crash (kill -9, power loss) before the COMMIT leaves at most an uncommitted tail past the
recorded length, which no reader reads and the next write overwrites and cuts. An update appends
the new vector and points the row to it (the old slot becomes dead space, as a deleted
product's); nothing is ever rewritten in place, so a reader's snapshot reads stable bytes.

``load_matrix`` and ``read_vectors`` are the only readers of the files (knn.load_field, reads).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import StoreError

SUFFIX = ".vectors"
THREAD_MIN = 256  # vectors written beside SQLite in a thread from this many (fewer: in line)

VECTORS_DDL = (
    # The product's current vector of each field: a slot of the field's file. WITHOUT ROWID,
    # keyed by product first: bulk inserts append, and deletes (the cascade) find a product's rows.
    """CREATE TABLE IF NOT EXISTS vectors (
    product INTEGER NOT NULL REFERENCES products(rowid) ON DELETE CASCADE,
    field TEXT NOT NULL,
    slot INTEGER NOT NULL,      -- row of the field's file in vector_files
    PRIMARY KEY (product, field)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS vector_files (
    field TEXT PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,  -- name inside <store>.vectors/
    dims INTEGER NOT NULL,
    rows INTEGER NOT NULL       -- committed length in vectors: bytes past rows * dims * 4 are no one's
)""",
)


class FieldFile(NamedTuple):
    field: str
    file: str
    dims: int
    rows: int


def folder(store_path: Path) -> Path:
    return Path(str(store_path) + SUFFIX)


def store_path(conn: sqlite3.Connection) -> Path:
    """The store file a connection has open (its ``main`` database)."""
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file)
    raise StoreError("the store connection has no main database")


def in_files(conn: sqlite3.Connection) -> bool:
    """Whether the store keeps its vectors in files (format 4), not as SQLite blobs (format <= 3)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'vector_files'").fetchone() is not None


def field_file(conn: sqlite3.Connection, field: str) -> FieldFile | None:
    row = conn.execute("SELECT field, file, dims, rows FROM vector_files WHERE field = ?", (field,)).fetchone()
    return None if row is None else FieldFile(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


def _damaged(path: Path, detail: str) -> StoreError:
    return StoreError(f"the vector file {path} of the store is missing or damaged ({detail}): a store is its file "
                      f"together with the {SUFFIX}/ folder beside it; copy or move them together, or re-run the "
                      "ingest into a new --store")


# -- writing (inside the writer's transaction) -------------------------------------------------


class Appends:
    """The vector appends of one write transaction. ``reserve`` (in SQL, inside the transaction)
    takes slots at the committed end and records the new length; ``append`` writes and
    fdatasyncs the rows in a thread while SQLite does the rest of the batch; ``wait`` (before
    the COMMIT) joins it and raises what failed, which rolls the transaction back."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.dir = folder(store_path(conn))
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._checked: set[str] = set()

    def reserve(self, field: str, dims: int, n: int) -> tuple[FieldFile, int]:
        """``n`` slots of ``field`` (``dims``); returns its file and the first slot."""
        row = self.conn.execute("UPDATE vector_files SET rows = rows + ? WHERE field = ? AND dims = ? "
                                "RETURNING file, rows", (n, field, dims)).fetchone()
        if row is not None:
            ff = FieldFile(field, str(row[0]), dims, int(row[1]) - n)
        else:
            # a new field, or one set again with other dims while it holds no vector (the store
            # refuses other dims for a field that holds some): a new file
            (number,) = self.conn.execute("SELECT coalesce(max(rowid), 0) + 1 FROM vector_files").fetchone()
            ff = FieldFile(field, f"{number}.f32", dims, 0)
            self.conn.execute("INSERT OR REPLACE INTO vector_files (field, file, dims, rows) VALUES (?, ?, ?, ?)",
                              (field, ff.file, dims, n))
        if field not in self._checked:  # the file's first use in this transaction: its uncommitted tail cut
            _check_length(self.dir / ff.file, ff, cut=True)
            self._checked.add(field)
        return ff, ff.rows

    def append(self, ff: FieldFile, first: int, matrix: np.ndarray, *, wait: bool = False) -> None:
        """Write ``matrix`` (float32 rows of ``ff.dims``) at slot ``first`` and fdatasync it."""
        data = np.ascontiguousarray(matrix, dtype=np.float32)
        if wait or data.shape[0] < THREAD_MIN:
            _write(self.dir, ff, first, data)
            return
        thread = threading.Thread(target=self._run, args=(ff, first, data), name="ctir-es-vectors", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self, ff: FieldFile, first: int, data: np.ndarray) -> None:
        try:
            _write(self.dir, ff, first, data)
        except BaseException as exc:  # noqa: BLE001 - raised in the writer's thread by wait()
            self._errors.append(exc)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error


def short_files(conn: sqlite3.Connection) -> list[str]:
    """The vector files shorter than their committed length, each named (``stats --check``):
    the damage a reader would otherwise meet only when it reads that field."""
    if not in_files(conn):
        return []
    directory = folder(store_path(conn))
    found = []
    for row in conn.execute("SELECT field, file, dims, rows FROM vector_files"):
        ff = FieldFile(str(row[0]), str(row[1]), int(row[2]), int(row[3]))
        try:
            _check_length(directory / ff.file, ff, cut=False)
        except StoreError as exc:
            found.append(f"vector field {ff.field}: {exc}")
    return found


def _check_length(path: Path, ff: FieldFile, *, cut: bool) -> None:
    """A file shorter than its committed length is damage; a longer one holds an uncommitted tail
    (a crash or a rollback after the append: no committed row names it), cut when ``cut`` (the
    caller holds SQLite's write lock, so no other process is appending)."""
    committed = ff.rows * ff.dims * 4
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size < committed:
        raise _damaged(path, f"{size} bytes, the store has committed {committed}")
    if size > committed and cut:
        os.truncate(path, committed)


def _write(directory: Path, ff: FieldFile, first: int, data: np.ndarray) -> None:
    """pwrite + fdatasync ``data`` at slot ``first`` (a new file: its folder synced too, so its
    name is as durable as its bytes)."""
    width = ff.dims * 4
    new_dir = not directory.exists()
    if new_dir:
        directory.mkdir(parents=True, exist_ok=True)
    path = directory / ff.file
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        view = data.data.cast("B")  # (C-contiguous: Appends.append made it so)
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], first * width + done)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if new_dir or first == 0:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# -- reading ---------------------------------------------------------------------------------


def load_matrix(conn: sqlite3.Connection, ff: FieldFile, slots: np.ndarray) -> np.ndarray:
    """The rows ``slots`` (committed in the caller's snapshot) of ``ff``'s file, as a float32
    matrix: one read of the range they span, gathered when they are not that range in order."""
    if slots.shape[0] == 0:
        return np.zeros((0, ff.dims), np.float32)
    path = folder(store_path(conn)) / ff.file
    lo, hi = int(slots.min()), int(slots.max()) + 1
    width = ff.dims * 4
    try:
        with open(path, "rb") as fh:
            data = np.fromfile(fh, dtype=np.float32, count=(hi - lo) * ff.dims, offset=lo * width)
    except OSError as exc:
        raise _damaged(path, str(exc)) from exc
    if data.shape[0] != (hi - lo) * ff.dims:
        raise _damaged(path, f"holds {lo + data.shape[0] // ff.dims} vectors, the store names slot {hi - 1}")
    matrix = data.reshape(hi - lo, ff.dims)
    if hi - lo == slots.shape[0] and bool((np.diff(slots) == 1).all()):
        return matrix
    return matrix[slots - lo]


def read_vectors(conn: sqlite3.Connection, ff: FieldFile, slots: Sequence[int]) -> list[np.ndarray]:
    """Rows of ``ff``'s file in the order of ``slots``: one read of their span when they are many
    and close together (e.g. a batch just written), else one pread each."""
    if len(slots) >= 64:
        wanted = np.asarray(slots, dtype=np.int64)
        if int(wanted.max()) - int(wanted.min()) < 4 * len(wanted):
            return list(load_matrix(conn, ff, wanted).copy())
    path = folder(store_path(conn)) / ff.file
    width = ff.dims * 4
    out: list[np.ndarray] = []
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _damaged(path, str(exc)) from exc
    try:
        for slot in slots:
            raw = os.pread(fd, width, int(slot) * width)
            if len(raw) != width:
                raise _damaged(path, f"slot {slot} is past its end")
            out.append(np.frombuffer(raw, dtype=np.float32).copy())
    finally:
        os.close(fd)
    return out


def stored_dims(conn: sqlite3.Connection, field: str) -> int | None:
    """The dims of the vectors ``field`` holds (None when no product holds one)."""
    row = conn.execute("SELECT dims FROM vector_files f WHERE field = ? AND EXISTS "
                       "(SELECT 1 FROM vectors v WHERE v.field = f.field)", (field,)).fetchone()
    return None if row is None else int(row[0])


# -- format 3 -> 4 -----------------------------------------------------------------------------


def move_blobs(conn: sqlite3.Connection, path: Path) -> None:
    """Inside the upgrade's transaction: every vector blob of a format-3 ``vectors`` table into
    the field's file (written and synced before the caller's COMMIT), and the table replaced by
    format 4's. A crash before the COMMIT leaves format 3 as it was and files no row names."""
    directory = folder(path)
    for statement in VECTORS_DDL[1:]:
        conn.execute(statement)
    fields = [str(f) for (f,) in conn.execute("SELECT DISTINCT field FROM vectors ORDER BY field").fetchall()]
    conn.execute("ALTER TABLE vectors RENAME TO vectors_v3")
    conn.execute(VECTORS_DDL[0])
    for number, field in enumerate(fields, start=1):
        cur = conn.execute("SELECT product, vec FROM vectors_v3 WHERE field = ? ORDER BY product", (field,))
        ff: FieldFile | None = None
        slot = 0
        while chunk := cur.fetchmany(20_000):
            products = [p for p, _ in chunk]
            data = b"".join(v for _, v in chunk)
            if ff is None:
                ff = FieldFile(field, f"{number}.f32", len(chunk[0][1]) // 4, 0)
            matrix = np.frombuffer(data, dtype=np.float32).reshape(len(chunk), ff.dims)
            _write(directory, ff, slot, matrix)
            conn.executemany("INSERT INTO vectors (product, field, slot) VALUES (?, ?, ?)",
                             [(p, field, slot + i) for i, p in enumerate(products)])
            slot += len(chunk)
        if ff is not None:
            conn.execute("INSERT INTO vector_files (field, file, dims, rows) VALUES (?, ?, ?, ?)",
                         (field, ff.file, ff.dims, slot))
    conn.execute("DROP TABLE vectors_v3")
