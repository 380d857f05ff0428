"""The approximate kNN indexes of an embedded store: when one is used, built, brought current,
searched, rebuilt.

The index files themselves (8-bit codes searched by faiss, a float32 copy for rescoring) are
``store/ann.py``; this module is their lifecycle beside one SQLite file.

Staying current. SQLite is the source of truth. Triggers append the rowid of every product
updated or deleted to ``vector_log``, in the same transaction as the change (``LOG_DDL``);
``write_vectors`` logs the products whose vectors it replaces (``log_products``). An index
records the log position and the highest product rowid of the snapshot it was built from. A
query uses the newest saved index and, for what changed since (the *delta*: rowids logged after
its position, plus products above its highest rowid), leaves those rows out of the index's
answer and scores their current vectors exactly (read once per change of the data, through the
store's read functions, and kept: each new write reads only its own rows), then merges both.
So a deleted product is never returned and an updated one is scored with its new vector, in
every process, the moment its write commits.

New products are appended above the highest rowid (``batch_write``), so a bulk insert logs
nothing: its rows are found by rowid. Only an insert at or below the highest rowid the log
holds is logged (SQLite reuses a rowid only after the product holding the highest one was
deleted, and that delete is in the log); a bulk batch applies that rule once for its rowid range
(``batch_write``'s bulk triggers).

Staleness rule. When the delta holds more than ``max(REBUILD_MIN_ROWS, REBUILD_SHARE of the
index)`` rows, a process that has answered ``REBUILD_AFTER_QUERIES`` queries over that bound
rebuilds the index in a background thread (one faiss thread at the lowest CPU priority, one
build at a time across processes: ``ann.rebuild_lock``), saves it atomically, and swaps it in on its next query;
other processes pick up the newer saved index on their next change of data (or within
``RECHECK_SECONDS`` while over the bound). Answers are exact with respect to changes whatever
the delta's size; only their cost grows with it. The writer's ``close`` builds nothing: it
prunes the log up to the position every saved index has applied (milliseconds).

Crash rule. A build writes a temporary directory and renames it into place; a builder killed
mid-way leaves the old index (still correct through the delta) and a temporary directory the
next builder removes. The log is pruned only up to what every saved index has applied; an
index the log no longer covers (pruned past it, or restored from an older copy) is never used:
queries are answered exactly and it is rebuilt. An index saved before the log existed is used
only at its own generation (``vectors_generation``, bumped by every write), as before.

Candidates are rescored exactly. Filtered kNN is a prefilter (k results whenever k products
pass): exact over the passing rows of the index's float32 copy when few pass, else the index
searched with the filter inside it; the delta's rows that pass are scored exactly beside.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...filters import Filter
from ...schema import Hit, VectorQuery
from .. import ann
from . import files, reads
from .file_format import meta
from .knn import VectorCache, load_field, query_vector
from .sql_filters import remembered

log = logging.getLogger("ctir_es.store")

RESCORE_FACTOR = 4  # approximate indexes fetch k * this many candidates (at least RESCORE_MIN)
RESCORE_MIN = 40
# Filtered kNN on an approximate index is exact over the passing rows up to this many of them
# (scoring 20k rows of 384 floats is ~8M multiply-adds: a few ms, the order of a graph walk),
# and below FILTER_ANN_MIN_SHARE of the index, where the index searched with the filter inside
# it loses recall: recall@10 against exact filtered kNN on 50k clustered 64-d vectors was
# ivf 0.930 at 1 % passing, hnsw 0.964 at 2 %, and at least 0.994 for every kind from 5 % to
# 50 % (docs/shop-search.md, "Filters").
FILTER_EXACT_ROWS = 20_000
FILTER_ANN_MIN_SHARE = 0.05
# The rebuild bound: scoring 2,000 changed rows of 512 floats exactly costs ~0.05 ms a query.
REBUILD_SHARE = 0.02
REBUILD_MIN_ROWS = 1000
REBUILD_AFTER_QUERIES = 8  # a one-shot query process never starts a rebuild it would not see end
RECHECK_SECONDS = 1.0  # over the bound: look for a newer index saved by another process this often
REBUILD_NICE = 19  # the build thread yields the CPU to the queries beside it
SCORE_CHUNK = 1024  # rows per matrix-vector product: BLAS stays on this thread (threads cost ms)

LOG_DDL = """
CREATE TABLE IF NOT EXISTS vector_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, product INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS vector_log_product ON vector_log(product);
CREATE TRIGGER IF NOT EXISTS vector_log_ai AFTER INSERT ON products
WHEN new.rowid <= (SELECT max(product) FROM vector_log) BEGIN
    INSERT INTO vector_log(product) VALUES (new.rowid);
END;
CREATE TRIGGER IF NOT EXISTS vector_log_au AFTER UPDATE ON products BEGIN
    INSERT INTO vector_log(product) VALUES (new.rowid);
END;
CREATE TRIGGER IF NOT EXISTS vector_log_ad AFTER DELETE ON products BEGIN
    INSERT INTO vector_log(product) VALUES (old.rowid);
END;
"""


def create_log(conn: sqlite3.Connection) -> None:
    """The change log and its triggers (a writer's open; an existing store gets them then)."""
    conn.executescript(LOG_DDL)


def has_log(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'vector_log'").fetchone() is not None


def log_bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """(first, last): the first position the log still holds (last + 1 when empty) and the last
    one ever written (AUTOINCREMENT's high-water mark, which pruning does not lower)."""
    first, top = conn.execute("SELECT min(seq), coalesce(max(seq), 0) FROM vector_log").fetchone()
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'").fetchone()
    last = max(int(top), int(row[0]) if row is not None else 0)
    return (int(first) if first is not None else last + 1), last


def log_products(conn: sqlite3.Connection, ids: Iterable[str]) -> None:
    """Inside a write transaction that changes stored products' vectors without writing their
    rows (``write_vectors``): log them."""
    if has_log(conn):
        conn.execute("INSERT INTO vector_log(product) SELECT p.rowid FROM json_each(?) j "
                     "JOIN products p ON p.id = j.value", (json.dumps(list(ids)),))


def bump_generation(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: the data changed (what changed is in ``vector_log``)."""
    conn.execute(
        "INSERT INTO meta VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (ann.GENERATION_KEY,),
    )


@dataclass
class Delta:
    """What changed since ``index`` was built, as of ``generation``: ``rows`` maps each changed
    rowid to its current (id, vector), or None when it is gone or has no vector of the field."""

    index: ann.AnnIndex
    generation: int
    log: int | None  # the log position applied
    top: int | None  # the highest product rowid seen
    rows: dict[int, tuple[str, np.ndarray] | None] = field(default_factory=dict)
    drop: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # index positions left out
    rowids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # changed rows holding a vector
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    masks: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict)  # filter -> delta rows passing
    _names: np.ndarray | None = None
    _dead: np.ndarray | None = None

    def dead(self) -> np.ndarray | None:
        """A bool per index position: changed since the build (None when none is)."""
        if self._dead is None and len(self.drop):
            self._dead = np.zeros(len(self.index.rowids), dtype=bool)
            self._dead[self.drop] = True
        return self._dead

    def names(self) -> np.ndarray:
        """The index's rowids, each dropped one replaced by the last kept one before it (0 at
        the start): still ascending, and holding no changed rowid."""
        if self._names is None:
            rowids = self.index.rowids
            if not len(self.drop):
                self._names = rowids
            else:
                keep = np.ones(len(rowids), dtype=bool)
                keep[self.drop] = False
                last = np.maximum.accumulate(np.where(keep, np.arange(len(rowids)), -1))
                self._names = np.where(last >= 0, np.asarray(rowids)[np.maximum(last, 0)], 0)
        return self._names

    def arrange(self) -> Delta:
        keys = np.fromiter(sorted(self.rows), dtype=np.int64, count=len(self.rows))
        rowids = self.index.rowids
        pos = np.searchsorted(rowids, keys)
        inside = pos < len(rowids)
        pos, keys_in = pos[inside], keys[inside]
        self.drop = pos[np.asarray(rowids[pos]) == keys_in] if len(pos) else np.zeros(0, np.int64)
        live = [(r, v) for r, v in sorted(self.rows.items()) if v is not None]
        self.rowids = np.fromiter((r for r, _ in live), dtype=np.int64, count=len(live))
        self.ids = np.asarray([v[0] for _, v in live], dtype=object)
        self.matrix = (np.stack([v[1] for _, v in live]).astype(np.float32, copy=False) if live
                       else np.zeros((0, self.index.dims), np.float32))
        return self

    def best(self, query: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[list[str], list[float]]:
        """The ``k`` best changed rows (among ``rows``, positions in the delta), exact."""
        if rows is None:
            rows = np.arange(self.matrix.shape[0])
        if not len(rows) or not k:
            return [], []
        part = self.matrix[rows] if len(rows) != self.matrix.shape[0] else self.matrix
        scores = (part @ query if part.shape[0] <= SCORE_CHUNK
                  else np.concatenate([part[i:i + SCORE_CHUNK] @ query for i in range(0, part.shape[0], SCORE_CHUNK)]))
        n = min(k, len(scores))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.ids[rows[top]].tolist(), scores[top].tolist()


@dataclass(frozen=True)
class Live:
    """An index and what changed since it was built: what a query searches."""

    index: ann.AnnIndex
    delta: Delta


def _bound(index: ann.AnnIndex) -> int:
    return max(REBUILD_MIN_ROWS, int(REBUILD_SHARE * len(index.rowids)))


class ApproximateIndexes:
    """The approximate indexes of one store (memory-mapped once loaded), the delta of each, and
    the store's generation as last read. ``forget`` when the data changes: the indexes are kept
    and their deltas brought up to date on the next query."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind  # this store's option: the kind queries use
        self.loaded: dict[str, ann.AnnIndex] = {}
        self.deltas: dict[str, Delta] = {}
        self._generation: int | None = None
        self._uuid = ""
        self._ready: dict[str, ann.AnnIndex] = {}  # built in the background, swapped in by the next query
        self._thread: threading.Thread | None = None
        self._over: dict[str, int] = {}  # queries answered over the bound since the last rebuild began
        self._looked: dict[str, float] = {}  # when a newer saved index was last looked for
        self.prune_due = False  # a newer index was swapped in: the writer may prune the log

    def forget(self) -> None:
        self._generation = None

    def close(self) -> None:
        """Drop everything (a running background build finishes on its own and is not waited for)."""
        self.loaded.clear()
        self.deltas.clear()
        self._ready.clear()
        self._generation = None

    def generation(self, conn: sqlite3.Connection) -> int:
        if self._generation is None:
            raw = meta(conn, ann.GENERATION_KEY)
            uuid = meta(conn, "store_uuid") or ""
            if uuid != self._uuid:  # another store at this path: nothing loaded is its
                self.loaded.clear()
                self.deltas.clear()
                self._ready.clear()
                self._uuid = uuid
            self._generation = int(raw) if raw is not None else 0
        return self._generation

    def names(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(ascending rowids, ids) naming every product of the current snapshot the index holds
        unchanged (BM25 hits named without SQL): the index's map with each changed row's rowid
        replaced by its predecessor's, so a lookup of it misses and goes to SQLite."""
        for name, delta in list(self.deltas.items()):
            index = self.loaded.get(name)
            if index is delta.index and self._generation is not None and delta.generation == self._generation:
                return delta.names(), index.ids
        return None

    def current(self, conn: sqlite3.Connection, field: str, load: Callable[[str], VectorCache]) -> Live | None:
        """The index of ``field`` and its delta, or None for an exact answer (the rules above)."""
        generation = self.generation(conn)
        index = self.loaded.get(field)
        ready = self._ready.pop(field, None)
        if ready is not None and ready.store == self._uuid and (index is None or ready.generation > index.generation):
            index = self._swap(field, ready)
        delta = self.deltas.get(field)
        if index is None or delta is None or delta.index is not index or delta.generation != generation:
            if index is None:
                index = self._open(conn, field, load)
                if index is None:
                    return None
            delta = self._delta(conn, index, generation, field)
            if delta is None:  # the log does not cover it: a newer saved one, else exact and rebuild
                newer = ann.load_newest(ann.ann_dir(self.path), field, self.kind, self._uuid)
                if newer is not None and newer.generation != index.generation:
                    index = self._swap(field, newer)
                    delta = self._delta(conn, index, generation, field)
            if delta is None:
                self.loaded.pop(field, None)
                self.deltas.pop(field, None)
                self._want_rebuild(field, force=True)
                return None
            self.loaded[field] = index
            self.deltas[field] = delta
        if len(delta.rows) > _bound(index):
            self._over_bound(field, index)
        return Live(index, delta)

    def _swap(self, field: str, index: ann.AnnIndex) -> ann.AnnIndex:
        self.loaded[field] = index
        self.deltas.pop(field, None)
        self._over.pop(field, None)
        self.prune_due = True
        return index

    def _open(self, conn: sqlite3.Connection, field: str, load: Callable[[str], VectorCache]) -> ann.AnnIndex | None:
        """The newest saved index of ``field``; built and saved now when none loads (never
        built, damaged, or another store's)."""
        root = ann.ann_dir(self.path)
        found = ann.load_newest(root, field, self.kind, self._uuid)
        return found if found is not None else self.build(conn, field, self.kind, load)

    def _delta(self, conn: sqlite3.Connection, index: ann.AnnIndex, generation: int, name: str) -> Delta | None:
        """What changed since ``index`` was built, in one snapshot; None when the log cannot say."""
        if index.generation == generation:  # no write since the build
            return Delta(index, generation, index.log, index.max_rowid).arrange()
        if index.log is None or index.max_rowid is None:
            return None
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # the log, the rows and their vectors in one snapshot
        try:
            if not has_log(conn):
                return None
            first, last = log_bounds(conn)
            if not first - 1 <= index.log <= last:  # pruned past it, or an index ahead of this store
                return None
            previous = self.deltas.get(name)
            if previous is not None and previous.index is index and previous.log is not None and previous.top is not None:
                since, above, rows = previous.log, previous.top, dict(previous.rows)
            else:
                since, above, rows = index.log, index.max_rowid, {}
            changed = {r for (r,) in conn.execute("SELECT DISTINCT product FROM vector_log WHERE seq > ? AND seq <= ?",
                                                  (since, last))}
            changed.update(r for (r,) in conn.execute("SELECT rowid FROM products WHERE rowid > ?", (above,)))
            (top,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM products").fetchone()
            touched = np.fromiter(sorted(changed), dtype=np.int64, count=len(changed))
            named: dict[int, str] = {}
            for start in range(0, len(touched), reads.CHUNK):
                named.update(reads.ids_for_rowids(conn, touched[start:start + reads.CHUNK]))
            vectors = reads.vectors(conn, list(named.values()), index.field)
        finally:
            if own:
                conn.execute("COMMIT")
        for rowid in touched.tolist():
            pid = named.get(rowid)
            vec = vectors.get(pid) if pid is not None else None
            rows[rowid] = (pid, vec) if pid is not None and vec is not None else None
        return Delta(index, generation, last, int(top), rows).arrange()

    # -- rebuilds ---------------------------------------------------------------------------

    def _over_bound(self, field: str, index: ann.AnnIndex) -> None:
        now = time.monotonic()
        if now - self._looked.get(field, 0.0) >= RECHECK_SECONDS:  # another process may have rebuilt it
            self._looked[field] = now
            newest = ann.generations(ann.ann_dir(self.path), field, self.kind)
            if newest and newest[0] > index.generation:
                found = ann.load(ann.ann_dir(self.path), field, self.kind, newest[0], self._uuid)
                if found is not None:
                    self._ready[field] = found  # swapped in by the next query
                    return
        self._want_rebuild(field)

    def _want_rebuild(self, field: str, force: bool = False) -> None:
        self._over[field] = self._over.get(field, 0) + (REBUILD_AFTER_QUERIES if force else 1)
        if self._over[field] < REBUILD_AFTER_QUERIES or (self._thread is not None and self._thread.is_alive()):
            return
        self._over[field] = 0
        self._thread = threading.Thread(target=self._rebuild, args=(field,), daemon=True,
                                        name="ctir-es-ann-rebuild")
        self._thread.start()

    def _rebuild(self, field: str) -> None:
        """In a background thread: build ``field``'s index from a connection of its own (one
        faiss thread: the other core keeps answering queries) and hand it to the next query."""
        try:
            faiss = ann.faiss_module()
            faiss.omp_set_num_threads(1)  # this thread's setting
            with contextlib.suppress(OSError, AttributeError):  # Linux: niceness is per thread
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REBUILD_NICE)
            with ann.rebuild_lock(ann.ann_dir(self.path)) as mine:
                if not mine:
                    return  # another process is building it
                conn, _mode = files.open_for_reading(self.path)
                try:
                    built = self.build(conn, field, self.kind, lambda name: load_field(conn, name), locked=True)
                finally:
                    conn.close()
            if built is not None:
                self._ready[field] = built
        except Exception:  # a background build never takes the store down: queries stay exact-correct
            log.warning("rebuilding the approximate index of %s failed", field, exc_info=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background build to end (tests and benchmarks)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def build(self, conn: sqlite3.Connection, field: str, kind: str,
              load: Callable[[str], VectorCache], locked: bool = False) -> ann.AnnIndex | None:
        """Build ``kind`` over ``field`` from one snapshot of SQLite and save it beside the store."""
        root = ann.ann_dir(self.path)
        with contextlib.ExitStack() as stack:
            if not locked:  # another build may run meanwhile: then this one builds anyway
                stack.enter_context(ann.rebuild_lock(root))
            own = not conn.in_transaction
            if own:
                conn.execute("BEGIN")  # the vectors, the generation and the log position, in one snapshot
            try:
                raw = meta(conn, ann.GENERATION_KEY)
                generation = int(raw) if raw is not None else 0
                position = log_bounds(conn)[1] if has_log(conn) else None
                (top,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM products").fetchone()
                cache = load(field)
                uuid = meta(conn, "store_uuid") or ""
            finally:
                if own:
                    conn.execute("COMMIT")
            if cache.matrix.shape[0] == 0:
                return None
            index = ann.build(kind, cache.matrix)
            ids = ann.encode_ids(cache.ids)
            saved = ann.save(root, field, kind, generation, uuid, index, cache.rowids, cache.matrix, ids,
                             log=position, max_rowid=int(top))
        reopened = ann.load(root, field, kind, generation, uuid) if saved is not None else None
        # memory-mapped when it could be saved; in memory (read-only media) otherwise
        return reopened or ann.AnnIndex(kind, field, generation, index, cache.rowids, cache.matrix.shape[1],
                                        cache.matrix, ids, log=position, max_rowid=int(top), store=uuid)

    def refresh(self, conn: sqlite3.Connection, fields: Iterable[str], load: Callable[[str], VectorCache]) -> None:
        """Rebuild the persisted indexes this store has (any kind) that are not current."""
        root = ann.ann_dir(self.path)
        generation = self.generation(conn)
        for field_name in fields:
            for kind in sorted(ann.kinds_present(root, field_name)):
                if ann.load(root, field_name, kind, generation, self._uuid) is None:
                    self.build(conn, field_name, kind, load)

    def prune_log(self, conn: sqlite3.Connection) -> None:
        """The writer drops the log entries every saved index has applied (none saved: all of
        them). Skipped while a build runs anywhere (its position is not saved yet)."""
        self.prune_due = False
        if conn.in_transaction or not has_log(conn):
            return
        root = ann.ann_dir(self.path)
        if (self._thread is not None and self._thread.is_alive()) or (root.exists() and not _lock_free(root)):
            return
        positions = [p for p in ann.applied_positions(root) if p is not None]
        upto = min(positions) if positions else log_bounds(conn)[1]
        conn.execute("DELETE FROM vector_log WHERE seq <= ?", (upto,))


def _lock_free(root: Path) -> bool:
    with ann.rebuild_lock(root, create=False) as free:
        return free


def _merge(a: tuple[list[str], list[float]], b: tuple[list[str], list[float]], k: int) -> list[Hit]:
    """Two best-first lists as one, best first (stable: the index's first on ties)."""
    ids, scores = a[0] + b[0], a[1] + b[1]
    if b[0] and a[0] and b[1][0] > a[1][min(k, len(a[1])) - 1]:  # some changed row makes the top k
        order = np.argsort(-np.asarray(scores), kind="stable")[:k].tolist()
        return [Hit(ids[i], scores[i]) for i in order]
    return [Hit(pid, s) for pid, s in zip(ids[:k], scores[:k], strict=True)]


def _fetch(live: Live, k: int) -> int:
    """Candidates to fetch: the usual number, plus the changed rows' expected share of them."""
    fetch = max(k * RESCORE_FACTOR, RESCORE_MIN)
    return fetch + -(-fetch * len(live.delta.drop) // max(len(live.index.rowids), 1))


def search(live: Live, vq: VectorQuery, k: int) -> list[Hit]:
    """Candidates from the approximate index (changed rows left out), rescored exactly, merged
    with the changed rows scored exactly."""
    index, delta = live.index, live.delta
    query = query_vector(vq, index.dims)
    found = index.search(query, k, _fetch(live, k), dead=delta.dead())
    return _merge(found, delta.best(query, k), k)


def search_filtered(live: Live, vq: VectorQuery, k: int, filters: Sequence[Filter], values: bool,
                    passing: Callable[[], np.ndarray]) -> list[Hit]:
    """Filtered kNN on an approximate index, a prefilter: k results whenever k products pass.

    Few products pass (at most FILTER_EXACT_ROWS, or under FILTER_ANN_MIN_SHARE of the index):
    their rows are scored exactly from the index's float32 copy (recall 1). Else the index is
    searched with the filter inside it (faiss's ID selector, so every candidate passes) and the
    candidates rescored; fewer than k back falls to the exact path. ``passing``: the ascending
    rowids passing ``filters``. Rows changed since the build are left out of the index (their
    filter values may have changed too) and those passing are scored exactly."""
    index, delta = live.index, live.delta
    query = query_vector(vq, index.dims)
    known: list[np.ndarray] = []

    def allowed() -> np.ndarray:  # one SQL query for both masks
        if not known:
            known.append(passing())
        return known[0]

    mask = remembered(index.masks, filters, values,
                      lambda: np.isin(np.asarray(index.rowids), allowed(), assume_unique=True))
    if len(delta.drop):
        mask = mask.copy()
        mask[delta.drop] = False
    extra = delta.best(query, k, np.flatnonzero(
        remembered(delta.masks, filters, values, lambda: np.isin(delta.rowids, allowed(), assume_unique=True))))
    rows = np.flatnonzero(mask)
    wanted = min(k, len(rows))
    if wanted and len(rows) > FILTER_EXACT_ROWS and len(rows) >= FILTER_ANN_MIN_SHARE * len(mask):
        found = index.search(query, k, max(k * RESCORE_FACTOR, RESCORE_MIN), mask)
        if len(found[0]) >= wanted:
            return _merge(found, extra, k)
    return _merge(index.rescore(query, k, rows), extra, k)
