"""The exact scan shared by two threads (store/scan.py) against NumPy's own product."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import numpy as np
import pytest

from ctir_es.store import scan


@pytest.fixture
def helper() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def _blas_threads() -> list[int]:
    """Threads of the BLAS libraries the scan limits: those loaded when it first ran (NumPy's);
    one loaded later by another package (faiss's own) is not the scan's to limit."""
    return [lib["num_threads"] for lib in scan._controller().info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("rows, chunk, k", [(1000, 64, 10), (1000, 7, 100), (50, 64, 10), (130, 13, 13), (10, 3, 25)])
def test_best_equals_a_full_sort(helper: concurrent.futures.Executor, monkeypatch: pytest.MonkeyPatch,
                                 rows: int, chunk: int, k: int) -> None:
    monkeypatch.setattr(scan, "CHUNK_ROWS", chunk)
    rng = np.random.default_rng(rows + chunk)
    matrix = rng.standard_normal((rows, 16), dtype=np.float32)
    matrix[rows // 2] = matrix[rows // 3]  # a tie: the lower row comes first
    query = matrix[rows // 3].copy()
    got_rows, got_scores = scan.best(matrix, query, k, helper)
    expected = matrix @ query
    order = np.argsort(-expected, kind="stable")[:k]
    assert got_rows.tolist() == order.tolist()
    np.testing.assert_allclose(got_scores, expected[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scan.scores(matrix, query, helper), expected, rtol=1e-5, atol=1e-5)


def test_blas_setting_is_put_back_after_nested_and_concurrent_scans(helper: concurrent.futures.Executor) -> None:
    before = _blas_threads()
    with scan.one_blas_thread():
        if before:
            assert set(_blas_threads()) == {1}
        with scan.one_blas_thread():  # a second scan at the same time: one limit, shared
            pass
        if before:
            assert set(_blas_threads()) == {1}  # the first is still running
    assert _blas_threads() == before
    matrix = np.ones((100, 4), dtype=np.float32)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as callers:
        list(callers.map(lambda _: scan.best(matrix, matrix[0], 5, helper), range(8)))
    assert _blas_threads() == before


def test_an_error_in_a_chunk_reaches_the_caller(helper: concurrent.futures.Executor) -> None:
    matrix = np.ones((10, 4), dtype=np.float32)
    with pytest.raises(ValueError):
        scan.scores(matrix, np.ones(3, dtype=np.float32), helper)  # wrong width
    assert scan._limit_users == 0
