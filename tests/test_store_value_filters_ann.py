"""Filtered kNN on the embedded store's approximate indexes (issue 23): a prefilter, so k
results whenever k products pass, exact when few pass, and the index searched with the filter
inside it when many do, with recall@10 of at least 0.95 against exact filtered kNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore, approximate

pytest.importorskip("faiss", reason="approximate indexes need the [ann] extra (faiss-cpu)")

N, DIMS = 3000, 32


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((20, DIMS))
    m = centres[rng.integers(0, 20, N)] + rng.standard_normal((N, DIMS)) * 0.7
    vecs = (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    path = tmp_path_factory.mktemp("ann-filters") / "store.db"
    store = EmbeddedStore(path)
    store.setup(IndexSchema({"v": VectorField(DIMS, "cosine", {"id": "t"})}))
    # "share" spreads the products evenly over 0..1: "share <= x" passes x of the catalogue
    docs = [Document(Product(id=f"p{i}", title=f"item {i}", values={"share": (i * 7919 % N) / N}), {"v": vecs[i]})
            for i in range(N)]
    assert not store.upsert(docs).errors
    store.close()
    return path, vecs


@pytest.mark.parametrize("kind", ["sq8", "ivf", "hnsw"])
def test_filtered_knn_on_approximate_indexes(built: tuple[Path, np.ndarray], kind: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path, vecs = built
    exact = EmbeddedStore(path)
    approx = EmbeddedStore(path, vector_index=kind)
    queries = vecs[::150] + 0.0
    try:
        # few pass (0.5 %: 15 products): the passing rows scored exactly, the same answer as exact
        few = [Filter("share", "range", (None, 0.005))]
        for q in queries:
            want = exact.search(None, [VectorQuery("v", q)], 10, few)["v"]
            got = approx.search(None, [VectorQuery("v", q)], 10, few)["v"]
            assert [h.id for h in got] == [h.id for h in want] and len(got) == 10
        # many pass: searched inside the index (FILTER_EXACT_ROWS scaled to this small catalogue:
        # 1000 of 3000), k results each; the calls of the index with a mask are counted
        monkeypatch.setattr(approximate, "FILTER_EXACT_ROWS", 1000)
        inside = []
        search = ann.AnnIndex.search

        def counted(self: ann.AnnIndex, query: np.ndarray, k: int, fetch: int, mask: np.ndarray | None = None):
            inside.append(mask is not None)
            return search(self, query, k, fetch, mask)

        monkeypatch.setattr(ann.AnnIndex, "search", counted)
        for share, searched_inside in ((0.2, False), (0.5, True)):
            broad = [Filter("share", "range", (None, share))]
            recall = []
            inside.clear()
            for q in queries:
                want = {h.id for h in exact.search(None, [VectorQuery("v", q)], 10, broad)["v"]}
                got = approx.search(None, [VectorQuery("v", q)], 10, broad)["v"]
                assert len(got) == 10
                assert all(int(h.id[1:]) * 7919 % N / N <= share for h in got)  # only passing products
                recall.append(len(want & {h.id for h in got}) / 10)
            assert inside == [True] * len(queries) if searched_inside else inside == []
            assert np.mean(recall) >= (0.95 if searched_inside else 1.0), (share, np.mean(recall))
    finally:
        exact.close()
        approx.close()
