"""The approximate kNN indexes of an embedded store: when one is used, built, rebuilt, searched.

The index files themselves (8-bit codes searched by faiss, a float32 copy for rescoring) are
``store/ann.py``; this module is their lifecycle beside one SQLite file. Every write bumps the
store's generation (``meta``), and an index records the generation it was built at:

- an index of the current generation is used as it is;
- when only an older one exists (the store changed since), queries are answered exactly and
  the writer rebuilds it when it closes (or ``build_vector_index``);
- when none was ever built, the first query builds and saves it.

Candidates are rescored exactly. Filtered kNN is a prefilter (k results whenever k products
pass): exact over the passing rows of the index's float32 copy when few pass, else the index
searched with the filter inside it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ...filters import Filter
from ...schema import Hit, VectorQuery
from .. import ann
from .file_format import meta
from .knn import VectorCache, query_vector
from .sql_filters import remembered

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


def bump_generation(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: persisted approximate indexes built before are stale."""
    conn.execute(
        "INSERT INTO meta VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (ann.GENERATION_KEY,),
    )


class ApproximateIndexes:
    """The persisted approximate indexes of one store (memory-mapped once loaded), and the
    store's generation as last read. ``forget`` when the data changes."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind  # this store's option: the kind queries use
        self.loaded: dict[str, ann.AnnIndex] = {}
        self._generation: int | None = None

    def forget(self) -> None:
        self.loaded.clear()
        self._generation = None

    def generation(self, conn: sqlite3.Connection) -> int:
        if self._generation is None:
            raw = meta(conn, ann.GENERATION_KEY)
            self._generation = int(raw) if raw is not None else 0
        return self._generation

    def current(self, conn: sqlite3.Connection, field: str, load: Callable[[str], VectorCache]) -> ann.AnnIndex | None:
        """The current index of ``field``, or None for an exact answer (the staleness rule above)."""
        found = self.loaded.get(field)
        generation = self.generation(conn)
        if found is not None and found.generation == generation:
            return found
        root = ann.ann_dir(self.path)
        loaded = ann.load(root, field, self.kind, generation, meta(conn, "store_uuid") or "")
        if loaded is None:
            current = (root / ann.index_name(field, self.kind, generation)).exists()
            if not current and self.kind in ann.kinds_present(root, field):
                return None  # stale: exact until the writer rebuilds it
            loaded = self.build(conn, field, self.kind, load)  # never built, or damaged: (re)build
        if loaded is not None:
            self.loaded[field] = loaded
        return loaded

    def build(self, conn: sqlite3.Connection, field: str, kind: str,
              load: Callable[[str], VectorCache]) -> ann.AnnIndex | None:
        """Build ``kind`` over ``field`` from one snapshot of SQLite and save it beside the store."""
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # the vectors and the generation they are, in one snapshot
        try:
            raw = meta(conn, ann.GENERATION_KEY)
            generation = int(raw) if raw is not None else 0
            cache = load(field)
        finally:
            if own:
                conn.execute("COMMIT")
        if cache.matrix.shape[0] == 0:
            return None
        index = ann.build(kind, cache.matrix)
        root = ann.ann_dir(self.path)
        ids = ann.encode_ids(cache.ids)
        uuid = meta(conn, "store_uuid") or ""
        saved = ann.save(root, field, kind, generation, uuid, index, cache.rowids, cache.matrix, ids)
        reopened = ann.load(root, field, kind, generation, uuid) if saved is not None else None
        # memory-mapped when it could be saved; in memory (read-only media) otherwise
        return reopened or ann.AnnIndex(kind, field, generation, index, cache.rowids, cache.matrix.shape[1],
                                        cache.matrix, ids)

    def refresh(self, conn: sqlite3.Connection, fields: Iterable[str], load: Callable[[str], VectorCache]) -> None:
        """Rebuild the persisted indexes this store has (any kind) that are not current."""
        root = ann.ann_dir(self.path)
        generation = self.generation(conn)
        uuid = meta(conn, "store_uuid") or ""
        for field in fields:
            for kind in sorted(ann.kinds_present(root, field)):
                if ann.load(root, field, kind, generation, uuid) is None:
                    self.build(conn, field, kind, load)


def search(index: ann.AnnIndex, vq: VectorQuery, k: int) -> list[Hit]:
    """Candidates from the approximate index, rescored exactly (float32 rows read from its copy)."""
    query = query_vector(vq, index.dims)
    ids, scores = index.search(query, k, max(k * RESCORE_FACTOR, RESCORE_MIN))
    return [Hit(pid, s) for pid, s in zip(ids, scores, strict=True)]


def search_filtered(index: ann.AnnIndex, vq: VectorQuery, k: int, filters: Sequence[Filter], values: bool,
                    passing: Callable[[], np.ndarray]) -> list[Hit]:
    """Filtered kNN on an approximate index, a prefilter: k results whenever k products pass.

    Few products pass (at most FILTER_EXACT_ROWS, or under FILTER_ANN_MIN_SHARE of the index):
    their rows are scored exactly from the index's float32 copy (recall 1). Else the index is
    searched with the filter inside it (faiss's ID selector, so every candidate passes) and the
    candidates rescored; fewer than k back falls to the exact path. ``passing``: the ascending
    rowids passing ``filters``."""
    query = query_vector(vq, index.dims)
    mask = remembered(index.masks, filters, values,
                      lambda: np.isin(np.asarray(index.rowids), passing(), assume_unique=True))
    rows = np.flatnonzero(mask)
    wanted = min(k, len(rows))
    if wanted and len(rows) > FILTER_EXACT_ROWS and len(rows) >= FILTER_ANN_MIN_SHARE * len(mask):
        ids, scores = index.search(query, k, max(k * RESCORE_FACTOR, RESCORE_MIN), mask)
        if len(ids) >= wanted:
            return [Hit(pid, s) for pid, s in zip(ids, scores, strict=True)]
    ids, scores = index.rescore(query, k, rows)
    return [Hit(pid, s) for pid, s in zip(ids, scores, strict=True)]
