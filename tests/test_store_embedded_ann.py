"""Persisted approximate indexes of the embedded store (issue #14, store/ann.py): saved beside
the store, opened memory-mapped by the next process, never used when stale, rebuilt by the
writer. Correctness only, never speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctir_es.errors import StoreError
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore

pytest.importorskip("faiss", reason="approximate indexes need the [ann] extra (faiss-cpu)")

DIMS = 24


@pytest.fixture(params=ann.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((12, DIMS))[rng.integers(0, 12, n)] + rng.standard_normal((n, DIMS)) * 0.5
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def _fill(path: Path, vecs: np.ndarray, start: int = 0) -> None:
    store = EmbeddedStore(path)
    store.setup(IndexSchema({"v": VectorField(DIMS, "cosine", {"id": "t"})}))
    docs = [Document(Product(id=f"p{start + i}", title=f"item {i}"), {"v": v}) for i, v in enumerate(vecs)]
    assert not store.upsert(docs).errors
    store.close()


def _top(store: EmbeddedStore, q: np.ndarray, k: int = 5) -> list[str]:
    return [h.id for h in store.search(None, [VectorQuery("v", q)], k)["v"]]


def _dirs(path: Path) -> list[str]:
    root = ann.ann_dir(path)
    return sorted(e.name for e in root.iterdir() if not e.name.startswith(".")) if root.exists() else []


def test_built_once_then_opened_memory_mapped_without_the_float32_matrix(tmp_path: Path, kind: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(800)
    _fill(path, vecs)
    first = EmbeddedStore(path, vector_index=kind)
    assert _top(first, vecs[5], 1) == ["p5"]
    assert _dirs(path) == [f"v.{kind}.g1"]
    first.close()

    def no_build(*_a: object, **_k: object) -> None:
        raise AssertionError("the saved index should have been opened, not rebuilt")

    monkeypatch.setattr(ann, "build", no_build)
    second = EmbeddedStore(path, vector_index=kind)
    got = second.search(None, [VectorQuery("v", vecs[9])], 10)["v"]
    assert got[0].id == "p9" and got[0].score == pytest.approx(1.0, abs=1e-5)
    for h in got:  # exact float32 scores (rescored from SQLite), best first
        assert h.score == pytest.approx(float(vecs[int(h.id[1:])] @ vecs[9]), abs=1e-5)
    assert second._vectors == {}  # no float32 matrix was loaded
    index = second._ann["v"].index
    assert "SQ" in type(index).__name__ or "ScalarQuantizer" in type(index).__name__  # 8-bit codes
    second.close()


@pytest.mark.parametrize("mapped_max", [0, 2**40], ids=["pread", "mapped"])
def test_rescoring_reads_the_same_rows_mapped_or_with_pread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            mapped_max: int) -> None:
    """A large float32 copy is read row by row (RowFile), a small one through the memory map:
    the same exact scores either way, and the large one is never mapped for reading rows."""
    monkeypatch.setattr(ann, "MAPPED_MAX_BYTES", mapped_max)
    path = tmp_path / "s.db"
    vecs = _vecs(600, seed=3)
    _fill(path, vecs)
    EmbeddedStore(path).build_vector_index("sq8")
    store = EmbeddedStore(path, vector_index="sq8")
    for q in (3, 77, 599):
        got = store.search(None, [VectorQuery("v", vecs[q])], 20)["v"]
        assert got[0].id == f"p{q}"
        for h in got:
            assert h.score == pytest.approx(float(vecs[int(h.id[1:])] @ vecs[q]), abs=1e-5)
    assert isinstance(store._ann["v"].vectors, ann.RowFile) == (mapped_max == 0)
    store.close()


def test_a_truncated_vectors_file_is_an_error_not_wrong_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann, "MAPPED_MAX_BYTES", 0)
    path = tmp_path / "s.db"
    vecs = _vecs(300, seed=4)
    _fill(path, vecs)
    EmbeddedStore(path).build_vector_index("sq8")
    store = EmbeddedStore(path, vector_index="sq8")
    assert _top(store, vecs[1], 1) == ["p1"]
    (folder,) = ann.ann_dir(path).glob("v.sq8.g*")
    os.truncate(folder / "vectors.npy", 1024)  # shortened under an open reader
    with pytest.raises(OSError, match="short read"):
        store._ann["v"].vectors.take(np.arange(250, 260))  # type: ignore[union-attr]
    store.close()


def test_another_process_opens_the_saved_index(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(600)
    _fill(path, vecs)
    EmbeddedStore(path, vector_index="ivf").build_vector_index()
    code = ("import sys, numpy as np; from ctir_es.store import ann; from ctir_es.store.embedded import EmbeddedStore;"
            "from ctir_es.store.base import VectorQuery;"
            "ann.build = None;"  # a rebuild would fail
            "s = EmbeddedStore(sys.argv[1], vector_index='ivf'); q = np.load(sys.argv[2]);"
            "print(s.search(None, [VectorQuery('v', q)], 1)['v'][0].id, type(s._ann['v'].index).__name__)")
    np.save(tmp_path / "q.npy", vecs[42])
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "q.npy")],
                         capture_output=True, text=True, check=True, env={**os.environ})
    assert out.stdout.split() == ["p42", "IndexIVFScalarQuantizer"]


def test_changes_reach_a_saved_index_at_once_and_the_writer_close_rebuilds_nothing(tmp_path: Path, kind: str) -> None:
    """A write after the build: answered by the index with the changed rows left out and scored
    exactly (tests/test_ann_updates.py has the rest); the writer's close builds nothing."""
    path = tmp_path / "s.db"
    vecs = _vecs(500)
    _fill(path, vecs)
    reader = EmbeddedStore(path, vector_index=kind)
    assert _top(reader, vecs[3], 1) == ["p3"]
    # another process adds a product identical to the query and deletes p3
    writer = EmbeddedStore(path)
    writer.upsert([Document(Product(id="new", title="new"), {"v": vecs[3]})])
    assert writer.delete(["p3"]) == 1
    top = _top(reader, vecs[3], 2)
    assert top[0] == "new" and "p3" not in top
    assert reader._vectors == {}  # the index and its delta, not the float32 matrix
    writer.close()
    assert _dirs(path) == [f"v.{kind}.g1"]  # nothing rebuilt at close
    fresh = EmbeddedStore(path, vector_index=kind)
    assert _top(fresh, vecs[3], 2)[0] == "new" and "p3" not in _top(fresh, vecs[3], 5)
    assert fresh._vectors == {}
    assert _top(reader, vecs[3], 1) == ["new"]
    fresh.close()
    reader.close()


def test_a_store_recreated_at_the_same_path_ignores_the_old_index(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    old = _vecs(300, seed=1)
    _fill(path, old)
    s = EmbeddedStore(path, vector_index="sq8")
    _top(s, old[0])
    s.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    new = _vecs(300, seed=2)
    _fill(path, new, start=1000)  # same generation number (1), another store
    s = EmbeddedStore(path, vector_index="sq8")
    assert _top(s, new[7], 1) == ["p1007"]
    s.close()


def test_a_damaged_index_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(300)
    _fill(path, vecs)
    EmbeddedStore(path, vector_index="hnsw").build_vector_index()
    (ann.ann_dir(path) / "v.hnsw.g1" / "index.faiss").write_bytes(b"garbage")
    s = EmbeddedStore(path, vector_index="hnsw")
    assert _top(s, vecs[11], 1) == ["p11"]
    assert s._ann["v"].index.ntotal == 300
    s.close()


def test_an_index_that_cannot_be_saved_lives_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(200)
    _fill(path, vecs)
    ann.ann_dir(path).write_text("not a folder")  # (root ignores read-only modes; this fails for all)
    s = EmbeddedStore(path, vector_index="sq8")
    assert _top(s, vecs[1], 1) == ["p1"]
    assert s._ann["v"].index.ntotal == 200 and s._vectors == {}
    s.close()


def test_build_vector_index_refuses_an_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _fill(path, _vecs(50))
    with pytest.raises(StoreError, match="supported: sq8, ivf, hnsw"):
        EmbeddedStore(path).build_vector_index("lsh")
    timings = EmbeddedStore(path).build_vector_index("sq8")
    assert set(timings) == {"v"} and _dirs(path) == ["v.sq8.g1"]
