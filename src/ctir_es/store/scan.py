"""Exact kNN's scan (``matrix @ query``) in chunks shared by two threads, during a hybrid query.

Why not leave the threading to the BLAS there: a hybrid query runs FTS5's BM25 in a second
thread beside the scan, and a two-thread BLAS product competing with it for two cores stalls on
its thread hand-off. At 100k x 512 (quiet 2-core box) exact hybrid with FTS5 took 8.3 ms against
kNN 4.4 ms and BM25 2.4 ms alone: the sum, not the slower source. Here the BLAS runs on one
thread per call, and the chunks are taken by the calling thread and by the store's side
thread, which first finishes the hybrid query's BM25 and then helps with the chunks left
(6.8 ms in the same setting). kNN alone keeps the BLAS's own threads: splitting the scan cost
~1 ms more there (GIL hand-offs between chunks), and nothing competes with it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

CHUNK_ROWS = 16_384  # rows per chunk: ~8 MB at 512 dims, a few microseconds of Python per chunk

_limit_lock = threading.Lock()
_limit_users = 0
_limit_ctx: Any = None


@functools.cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a dependency; without it the chunks run on the BLAS's own threads
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """The BLAS on one thread while any scan runs. The setting is process-wide, so concurrent
    scans share one limit: the first sets it, the last puts the BLAS's own setting back."""
    global _limit_users, _limit_ctx
    controller = _controller()
    if controller is None:
        yield
        return
    with _limit_lock:
        if _limit_users == 0:
            _limit_ctx = controller.limit(limits=1, user_api="blas")
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _limit_ctx.restore_original_limits()
                _limit_ctx = None


def scores(matrix: np.ndarray, query: np.ndarray, helper: concurrent.futures.Executor) -> np.ndarray:
    """``matrix @ query`` (float32), its chunks shared between this thread and ``helper``."""
    out = np.empty(matrix.shape[0], dtype=np.float32)

    def chunk(start: int, end: int) -> None:
        np.dot(matrix[start:end], query, out=out[start:end])

    _shared(matrix.shape[0], chunk, helper)
    return out


def best(matrix: np.ndarray, query: np.ndarray, k: int, helper: concurrent.futures.Executor) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the ``k`` best scores and the scores, best first (ties: lower row first).
    Each chunk keeps its own best k, so the selection is shared by the threads too."""
    out = np.empty(matrix.shape[0], dtype=np.float32)
    kept: dict[int, np.ndarray] = {}

    def chunk(start: int, end: int) -> None:
        part = out[start:end]
        np.dot(matrix[start:end], query, out=part)
        if k < end - start:
            kept[start] = start + np.sort(np.argpartition(-part, k - 1)[:k])
        else:
            kept[start] = np.arange(start, end)

    _shared(matrix.shape[0], chunk, helper)
    rows = np.concatenate([kept[start] for start in sorted(kept)])  # ascending rows
    order = np.argsort(-out[rows], kind="stable")[:k]
    return rows[order], out[rows[order]]


def _shared(rows: int, chunk: Callable[[int, int], None], helper: concurrent.futures.Executor) -> None:
    """Run ``chunk(start, end)`` over ``range(rows)`` in CHUNK_ROWS pieces, taken by this thread
    and by one task on ``helper``, with the BLAS on one thread."""
    starts = iter(range(0, rows, CHUNK_ROWS))
    take = threading.Lock()

    def work() -> None:
        while True:
            with take:
                start = next(starts, None)
            if start is None:
                return
            chunk(start, min(start + CHUNK_ROWS, rows))

    with one_blas_thread():
        helping = helper.submit(work)
        try:
            work()
        finally:
            helping.result()
