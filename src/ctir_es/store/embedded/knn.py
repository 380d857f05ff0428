"""Exact kNN: the float32 matrix of a vector field, scored with NumPy.

Why exact by default: at catalogue sizes (up to a few 100k products) a matrix product is a few
milliseconds and has recall 1; approximate indexes are an option (``approximate.py``). The
matrix of each field is read once and kept until the data changes. Filtered kNN is a prefilter:
k results whenever k products pass.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import SchemaMismatch
from ...schema import Hit, VectorQuery
from .. import scan, vector_file

PARALLEL_MIN_ROWS = 20_000  # from this many vectors: hybrid sources in two threads (store/scan.py)


class VectorCache:
    """The float32 matrix of one vector field, the product rowids and ids of its rows (so a
    query needs no SQL to name its hits), and filter masks over those rows. Dropped as a whole
    when the data changes."""

    def __init__(self, rowids: np.ndarray, ids: np.ndarray, matrix: np.ndarray) -> None:
        self.rowids = rowids
        self.ids = ids
        self.matrix = matrix
        self.masks: dict[tuple[Any, ...], np.ndarray] = {}


def load_field(conn: sqlite3.Connection, name: str) -> VectorCache:
    """Read one field's vectors (and their product ids) in rowid order: the rows and slots in one
    SQL snapshot, then the field's file (store format 4: every slot a committed row names is in
    the file before the row is; vector_file.py) or, in a format-3 store read as it is, the blobs."""
    files = vector_file.in_files(conn)
    ff = vector_file.field_file(conn, name) if files else None
    if files and ff is None:
        return _empty()
    rowids, ids, values = _field_rows(conn, name, "slot" if files else "vec")
    if not rowids:
        return _empty()
    if ff is not None:
        matrix = vector_file.load_matrix(conn, ff, np.asarray(values, dtype=np.int64))
    else:
        matrix = np.frombuffer(b"".join(values), dtype=np.float32).reshape(len(rowids), -1)
    return VectorCache(np.asarray(rowids, dtype=np.int64), np.asarray(ids, dtype=object), matrix)


def _field_rows(conn: sqlite3.Connection, name: str, column: str) -> tuple[list[int], list[str], list[Any]]:
    """(product rowids, ids, ``column`` of ``vectors``: the slot, or a format-3 blob) in rowid order."""
    rowids: list[int] = []
    ids: list[str] = []
    values: list[Any] = []
    cur = conn.execute(
        f"SELECT v.product, p.id, v.{column} FROM vectors v JOIN products p ON p.rowid = v.product "
        "WHERE v.field = ? ORDER BY v.product",
        (name,),
    )
    while chunk := cur.fetchmany(10_000):
        for rowid, pid, value in chunk:
            rowids.append(rowid)
            ids.append(pid)
            values.append(value)
    return rowids, ids, values


def _empty() -> VectorCache:
    return VectorCache(np.zeros(0, np.int64), np.zeros(0, object), np.zeros((0, 0), np.float32))


def query_vector(vq: VectorQuery, dims: int) -> np.ndarray:
    """The query as float32, refused when its dims are not the store's."""
    query = np.asarray(vq.vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dims:
        raise SchemaMismatch(f"query vector for {vq.field!r} has {query.shape[0]} dims, the store holds {dims}")
    return query


def search(cache: VectorCache, vq: VectorQuery, k: int, mask_of: Callable[[VectorCache], np.ndarray] | None,
           helper: concurrent.futures.Executor | None = None) -> list[Hit]:
    """The ``k`` best rows of ``cache`` for ``vq``; ``mask_of``: which rows pass the filters
    (None: no filter). ``helper``: a thread busy with BM25 that takes chunks of the scan when done."""
    if cache.matrix.shape[0] == 0:
        return []
    query = query_vector(vq, cache.matrix.shape[1])
    matrix = cache.matrix
    if mask_of is not None:
        mask = mask_of(cache)
        rows = np.flatnonzero(mask)
        if rows.shape[0] == 0:
            return []
        if rows.shape[0] * 4 < matrix.shape[0]:  # selective: score only the allowed rows
            scores = _scores(matrix[rows], query, helper)
            top = top_k(scores, k)
            rows, scores = rows[top], scores[top]
        else:  # broad: one full product, rejected rows pushed to the bottom
            scores = _scores(matrix, query, helper)
            scores[~mask] = -np.inf
            top = top_k(scores, min(k, rows.shape[0]))
            rows, scores = top, scores[top]
    elif helper is not None and matrix.shape[0] >= PARALLEL_MIN_ROWS:
        rows, scores = scan.best(matrix, query, k, helper)
    else:
        scores = matrix @ query
        rows = top_k(scores, k)
        scores = scores[rows]
    return [Hit(pid, s) for pid, s in zip(cache.ids[rows].tolist(), scores.tolist(), strict=True)]


def _scores(matrix: np.ndarray, query: np.ndarray, helper: concurrent.futures.Executor | None) -> np.ndarray:
    """Exact scores: shared with ``helper`` (store/scan.py) for large matrices, else the BLAS's own threads."""
    if helper is None or matrix.shape[0] < PARALLEL_MIN_ROWS:
        return matrix @ query
    return scan.scores(matrix, query, helper)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first (argpartition, then sort only those k)."""
    n = scores.shape[0]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
