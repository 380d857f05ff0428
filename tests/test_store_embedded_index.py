"""EmbeddedStore options added for speed and size (issue #7): approximate vector indexes
(faiss), the vector table layout, filter masks. Correctness only, never speed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from store_contract import CATALOGUE, SCHEMA, StoreContract, unit

from ctir_es.errors import StoreError
from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store.embedded import EmbeddedStore

pytest.importorskip("faiss", reason="approximate indexes need the [ann] extra (faiss-cpu)")

INDEXES = ("sq8", "ivf", "hnsw")


@pytest.fixture(params=INDEXES)
def index_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestApproximateStoresMeetTheContract(StoreContract):
    """On a small catalogue the candidates cover every product, so results are exact."""

    @pytest.fixture
    def store(self, tmp_path: Path, index_kind: str):
        s = EmbeddedStore(tmp_path / "store.db", vector_index=index_kind)
        yield s
        s.close()


def test_unknown_index_is_refused_without_io(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="supported: exact, sq8, ivf, hnsw"):
        EmbeddedStore(tmp_path / "x" / "store.db", vector_index="lsh")
    assert not (tmp_path / "x").exists()


def _clustered(n: int, dims: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dims))
    m = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, dims)) * 0.7
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def _fill(store: EmbeddedStore, vecs: np.ndarray) -> None:
    store.setup(IndexSchema({"v": VectorField(vecs.shape[1], "cosine", {"id": "t"})}))
    docs = [Document(Product(id=f"p{i}", title=f"item {i}", categories=((f"c{i % 3}",),)), {"v": vecs[i]})
            for i in range(len(vecs))]
    assert not store.upsert(docs).errors


def test_approximate_recall_and_scores_against_exact(tmp_path: Path, index_kind: str) -> None:
    vecs = _clustered(3000, 32)
    queries = _clustered(30, 32, seed=1)
    exact = EmbeddedStore(tmp_path / "s.db")
    _fill(exact, vecs)
    approx = EmbeddedStore(tmp_path / "s.db", vector_index=index_kind)
    recalls = []
    for q in queries:
        want = exact.search(None, [VectorQuery("v", q)], 10)["v"]
        got = approx.search(None, [VectorQuery("v", q)], 10)["v"]
        assert len(got) == 10
        # scores are exact float32 cosines (rescored), best first
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
        for h in got:
            assert h.score == pytest.approx(float(vecs[int(h.id[1:])] @ q), abs=1e-5)
        recalls.append(len({h.id for h in want} & {h.id for h in got}) / 10)
    assert np.mean(recalls) >= 0.9
    exact.close()
    approx.close()


def test_approximate_index_sees_new_writes_and_filters_stay_exact(tmp_path: Path, index_kind: str) -> None:
    store = EmbeddedStore(tmp_path / "s.db", vector_index=index_kind)
    vecs = _clustered(500, 16)
    _fill(store, vecs)
    q = vecs[7]
    assert store.search(None, [VectorQuery("v", q)], 1)["v"][0].id == "p7"
    # a write through the same store drops the index: the new product is found
    new = Document(Product(id="new", title="new"), {"v": q})
    store.upsert([new])
    top = store.search(None, [VectorQuery("v", q)], 2)["v"]
    assert {h.id for h in top} == {"p7", "new"}
    # filtered kNN: only allowed products, best first, even when fewer than k pass
    hits = store.search(None, [VectorQuery("v", q)], 1000, [Filter("category", "subtree", ("c1",))])["v"]
    assert {h.id for h in hits} == {f"p{i}" for i in range(500) if i % 3 == 1}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    store.close()


def test_filtered_knn_broad_and_selective_masks_match_brute_force(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    vecs = _clustered(400, 16)
    _fill(store, vecs)
    q = vecs[3]
    for flt, allowed in (
        ([Filter("category", "subtree", ("c0",))], [i for i in range(400) if i % 3 == 0]),           # broad path
        ([Filter("id", "in", ("p1", "p2", "p5"))], [1, 2, 5]),                                 # selective path
        ([Filter("id", "not_in", ("p3",))], [i for i in range(400) if i != 3]),
    ):
        for _ in range(2):  # the second time the cached mask answers
            hits = store.search(None, [VectorQuery("v", q)], 10, flt)["v"]
            want = sorted(allowed, key=lambda i: -float(vecs[i] @ q))[:10]
            assert [h.id for h in hits] == [f"p{i}" for i in want]
    # the mask cache is dropped when the data changes
    store.delete(["p1"])
    hits = store.search(None, [VectorQuery("v", q)], 10, [Filter("id", "in", ("p1", "p2", "p5"))])["v"]
    assert [h.id for h in hits] == [f"p{i}" for i in sorted([2, 5], key=lambda i: -float(vecs[i] @ q))]
    store.close()


def test_new_files_use_large_pages_and_keep_vectors_in_a_file_beside(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    assert store.conn.execute("PRAGMA page_size").fetchone()[0] >= 16384
    (file, dims, rows), = store.conn.execute("SELECT file, dims, rows FROM vector_files").fetchall()
    assert rows == len(CATALOGUE)
    assert (tmp_path / "s.db.vectors" / file).stat().st_size == rows * dims * 4
    store.close()


def test_a_store_with_the_old_vector_layout_still_works(tmp_path: Path) -> None:
    """A format-3 store whose vectors table is the old WITHOUT ROWID blob layout: the upgrade
    moves its vectors to the file and the store answers as before."""
    path = tmp_path / "old.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    assert not store.upsert(CATALOGUE).errors
    store.close()
    conn = sqlite3.connect(path)
    vecs = {r: np.frombuffer(v, np.float32) for r, v in [
        (r, (tmp_path / "old.db.vectors" / "1.f32").read_bytes()[s * 4 * SCHEMA.vectors["title_vector"].dims:(s + 1) * 4 * SCHEMA.vectors["title_vector"].dims])
        for r, s in conn.execute("SELECT product, slot FROM vectors")]}
    conn.executescript(
        "DROP TABLE vectors; DROP TABLE vector_files;"
        "CREATE TABLE vectors (field TEXT NOT NULL, product INTEGER NOT NULL, vec BLOB NOT NULL,"
        " PRIMARY KEY (field, product)) WITHOUT ROWID;"
        "UPDATE meta SET value = '3' WHERE key = 'store_version';"
    )
    conn.executemany("INSERT INTO vectors VALUES ('title_vector', ?, ?)", [(r, v.tobytes()) for r, v in vecs.items()])
    conn.commit()
    conn.close()
    (tmp_path / "old.db.vectors" / "1.f32").unlink()
    store = EmbeddedStore(path)
    assert store.search(None, [VectorQuery("title_vector", unit(5))], 1)["title_vector"][0].id == "p4"
    store.upsert([CATALOGUE[3]])  # re-upsert replaces the vector row, never duplicates
    assert store.conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == len(CATALOGUE)
    assert store.conn.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()[0] == "4"
    store.close()
