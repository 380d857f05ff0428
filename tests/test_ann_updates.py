"""The approximate index under writes (issue 25, item 3; embedded/approximate.py): what changed
since its build reaches every answer at once, from any store object or process; a background
rebuild swaps in; the writer's close builds nothing; a rebuild killed with SIGKILL loses and
duplicates nothing. Real SQLite, real faiss; correctness only, never speed."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore, approximate

pytest.importorskip("faiss", reason="approximate indexes need the [ann] extra (faiss-cpu)")

DIMS = 24


@pytest.fixture(params=ann.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _vecs(n: int, seed: int = 0, dims: int = DIMS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((12, dims))[rng.integers(0, 12, n)] + rng.standard_normal((n, dims)) * 0.5
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def _doc(i: int, vec: np.ndarray, cat: str | None = None) -> Document:
    return Document(Product(id=f"p{i}", title=f"item {i}", categories=((cat or f"c{i % 3}",),)), {"v": vec})


def _fill(path: Path, vecs: np.ndarray) -> None:
    store = EmbeddedStore(path)
    store.setup(IndexSchema({"v": VectorField(vecs.shape[1], "cosine", {"id": "t"})}))
    for start in range(0, len(vecs), 5000):
        assert not store.upsert([_doc(i, vecs[i]) for i in range(start, min(start + 5000, len(vecs)))]).errors
    store.close()


def _hits(store: EmbeddedStore, q: np.ndarray, k: int = 5, filters: tuple[Filter, ...] = ()) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in store.search(None, [VectorQuery("v", q)], k, filters)["v"]]


def _top(store: EmbeddedStore, q: np.ndarray, k: int = 5) -> list[str]:
    return [pid for pid, _ in _hits(store, q, k)]


def _dirs(path: Path) -> list[str]:
    root = ann.ann_dir(path)
    return sorted(e.name for e in root.iterdir() if not e.name.startswith(".")) if root.exists() else []


def _log_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM vector_log").fetchone()[0])


def test_delete_update_insert_reach_answers_at_once_from_another_store_object(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(600)
    _fill(path, vecs)
    reader = EmbeddedStore(path, vector_index=kind)
    assert _top(reader, vecs[10], 1) == ["p10"]  # builds and saves the index
    writer = EmbeddedStore(path, vector_index=kind)
    far = -vecs[20]
    writer.upsert([_doc(20, far)])  # an update: p20 now points the other way
    assert writer.delete(["p10"]) == 1
    writer.upsert([_doc(9000, vecs[30])])  # an insert identical to p30
    for store in (reader, writer):
        top = _hits(store, vecs[10], 10)
        assert "p10" not in [pid for pid, _ in top]  # a deleted product is never returned
        assert "p20" not in _top(store, vecs[20], 10)
        found = dict(_hits(store, far, 3))
        assert found["p20"] == pytest.approx(1.0, abs=1e-5)  # scored with its new vector
        near = dict(_hits(store, vecs[30], 2))
        assert set(near) == {"p30", "p9000"} and all(s == pytest.approx(1.0, abs=1e-5) for s in near.values())
        assert store._vectors == {}  # the saved index and its delta, never the float32 matrix
        for pid, score in _hits(store, vecs[44], 10):  # exact scores of the current vectors
            current = far if pid == "p20" else vecs[30] if pid == "p9000" else vecs[int(pid[1:])]
            assert score == pytest.approx(float(current @ vecs[44]), abs=1e-5)
    assert _dirs(path) == [f"v.{kind}.g1"]  # nothing was rebuilt for that
    writer.close()
    reader.close()


def test_another_process_sees_changes_a_writer_has_not_closed_on(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(500)
    _fill(path, vecs)
    EmbeddedStore(path, vector_index="hnsw").build_vector_index()
    writer = EmbeddedStore(path, vector_index="hnsw")
    writer.upsert([_doc(7, -vecs[7])])
    writer.delete(["p8"])
    np.save(tmp_path / "q.npy", np.stack([vecs[7], vecs[8], -vecs[7]]))
    code = ("import sys, numpy as np; from ctir_es.store.embedded import EmbeddedStore;"
            "from ctir_es.schema import VectorQuery;"
            "s = EmbeddedStore(sys.argv[1], vector_index='hnsw'); q = np.load(sys.argv[2]);"
            "print(*[','.join(h.id for h in s.search(None, [VectorQuery('v', v)], 5)['v']) for v in q]);"
            "print(len(s._vectors), s._ann['v'].generation)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "q.npy")],
                         capture_output=True, text=True, check=True, env={**os.environ})
    first, second = out.stdout.splitlines()
    near7, near8, far7 = (line.split(",") for line in first.split())
    assert "p7" not in near7 and "p8" not in near8 and far7[0] == "p7"
    assert second == "0 1"  # answered by the index saved at generation 1 and its delta
    writer.close()


def test_write_vectors_reaches_the_index(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(400)
    _fill(path, vecs)
    store = EmbeddedStore(path, vector_index=kind)
    assert _top(store, vecs[5], 1) == ["p5"]
    store.write_vectors("v", VectorField(DIMS, "cosine", {"id": "t"}), {"p5": -vecs[5], "p6": vecs[5]})
    assert _top(store, vecs[5], 1) == ["p6"] and "p5" not in _top(store, vecs[5], 20)
    assert _hits(store, -vecs[5], 1)[0][0] == "p5"
    store.close()


@pytest.mark.parametrize("exact_rows", [approximate.FILTER_EXACT_ROWS, 0], ids=["exact-rows", "id-selector"])
def test_filters_see_the_changed_values_of_changed_rows(tmp_path: Path, kind: str, exact_rows: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(approximate, "FILTER_EXACT_ROWS", exact_rows)
    path = tmp_path / "s.db"
    vecs = _vecs(600)
    _fill(path, vecs)
    store = EmbeddedStore(path, vector_index=kind)
    in_c1 = (Filter("category", "subtree", ("c1",)),)
    before = [pid for pid, _ in _hits(store, vecs[4], 10, in_c1)]  # p4 is in c1 (4 % 3)
    assert before[0] == "p4"
    store.upsert([_doc(4, vecs[4], cat="c0"), _doc(3, vecs[3], cat="c1")])  # p4 leaves c1, p3 joins it
    after = [pid for pid, _ in _hits(store, vecs[4], 10, in_c1)]
    assert "p4" not in after
    assert _hits(store, vecs[3], 1, in_c1)[0][0] == "p3"
    assert all(int(pid[1:]) % 3 == 1 or pid == "p3" for pid in after)
    store.close()


def test_names_of_lexical_hits_never_come_from_a_changed_row(tmp_path: Path) -> None:
    """BM25 hits are named from the index's id map, which holds no rowid changed since its build:
    a rowid deleted (and taken again by a new product) is named from SQLite."""
    path = tmp_path / "s.db"
    vecs = _vecs(200)
    _fill(path, vecs)
    store = EmbeddedStore(path, vector_index="sq8")
    _top(store, vecs[0])
    names = store._approx.names()
    assert names is not None and 200 in names[0].tolist()  # p199's rowid
    store.delete(["p199", "p5"])  # the highest rowid: the next insert takes it again
    store.upsert([Document(Product(id="fresh", title="unique zebra"), {"v": vecs[1]})])
    _top(store, vecs[0])
    names = store._approx.names()
    assert names is not None
    rowids, ids = names[0].tolist(), names[1].tolist()
    assert 200 not in rowids and 6 not in rowids and rowids == sorted(rowids)
    index_rowids = store._ann["v"].rowids.tolist()
    assert all(ids[i] == f"p{r - 1}".encode() for i, r in enumerate(rowids) if r == index_rowids[i])
    from ctir_es.schema import LexicalQuery
    hits = store.search(LexicalQuery("zebra"), [VectorQuery("v", vecs[1])], 5)
    assert [h.id for h in hits["bm25"]] == ["fresh"]
    store.close()


def test_a_bulk_insert_logs_nothing_and_deletes_and_updates_log_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _fill(path, _vecs(3000))
    assert _log_rows(path) == 0  # new products are found by rowid, not logged
    store = EmbeddedStore(path)
    store.upsert([_doc(1, _vecs(1, seed=5)[0])])
    store.delete(["p2"])
    with sqlite3.connect(path) as conn:
        assert sorted(r for (r,) in conn.execute("SELECT product FROM vector_log")) == [2, 3]  # rowid = i + 1
    store.close()  # no index beside the store: the writer prunes the whole log
    assert _log_rows(path) == 0


def test_the_background_rebuild_swaps_in_and_the_log_is_pruned(tmp_path: Path, kind: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(approximate, "REBUILD_MIN_ROWS", 20)
    monkeypatch.setattr(approximate, "REBUILD_SHARE", 0.0)
    monkeypatch.setattr(approximate, "REBUILD_AFTER_QUERIES", 2)
    path = tmp_path / "s.db"
    vecs = _vecs(800)
    _fill(path, vecs)
    store = EmbeddedStore(path, vector_index=kind)
    assert _top(store, vecs[0], 1) == ["p0"]
    new = _vecs(30, seed=9)
    store.upsert([_doc(i, new[i]) for i in range(30)])  # 30 updates: over the bound of 20
    for _ in range(3):
        assert _top(store, new[3], 1) == ["p3"]
    store._approx.wait(120)
    assert _top(store, new[3], 1) == ["p3"]  # the rebuilt index swapped in
    live = store._ann_index("v")
    assert live is not None and live.index.generation == 2 and not live.delta.rows
    assert _dirs(path) == [f"v.{kind}.g2"]
    assert _log_rows(path) == 0  # every saved index has applied the whole log
    other = EmbeddedStore(path, vector_index=kind)  # another reader opens the newest one
    assert _top(other, new[5], 1) == ["p5"] and other._ann["v"].generation == 2
    other.close()
    store.close()


def test_a_reader_over_the_bound_picks_up_an_index_another_process_rebuilt(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(approximate, "REBUILD_MIN_ROWS", 5)
    monkeypatch.setattr(approximate, "REBUILD_SHARE", 0.0)
    monkeypatch.setattr(approximate, "REBUILD_AFTER_QUERIES", 10**6)  # this reader never rebuilds
    monkeypatch.setattr(approximate, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "s.db"
    vecs = _vecs(400)
    _fill(path, vecs)
    reader = EmbeddedStore(path, vector_index="sq8")
    _top(reader, vecs[0])
    writer = EmbeddedStore(path)
    writer.upsert([_doc(i, -vecs[i]) for i in range(10)])
    assert _top(reader, -vecs[2], 1) == ["p2"] and len(reader._approx.deltas["v"].rows) == 10
    writer.build_vector_index("sq8")  # another process rebuilds
    writer.close()
    _top(reader, vecs[50])  # sees the newer index over the bound...
    assert _top(reader, -vecs[2], 1) == ["p2"]  # ...and swaps it in on the next query
    assert reader._ann["v"].generation == 2 and not reader._approx.deltas["v"].rows
    reader.close()


def test_the_writer_close_takes_well_under_a_second_and_builds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(20_000, dims=64)
    _fill(path, vecs)
    EmbeddedStore(path, vector_index="hnsw").build_vector_index()
    writer = EmbeddedStore(path, vector_index="hnsw")
    changed = _vecs(4000, seed=3, dims=64)
    writer.upsert([_doc(i, changed[i]) for i in range(4000)])  # 20 % changed: far over the bound
    writer.delete([f"p{i}" for i in range(4000, 4100)])
    assert _top(writer, changed[7], 1) == ["p7"]
    built = _dirs(path)
    start = time.perf_counter()
    writer.close()
    assert time.perf_counter() - start < 1.0
    assert _dirs(path) == built == ["v.hnsw.g4"]  # (four batches of 5,000) no rebuild at close
    assert _log_rows(path) > 0  # kept: the saved index has not applied it
    reader = EmbeddedStore(path, vector_index="hnsw")
    assert _top(reader, changed[9], 1) == ["p9"] and "p4050" not in _top(reader, vecs[4050], 10)
    reader.close()


def test_an_index_the_log_no_longer_covers_is_never_used(tmp_path: Path) -> None:
    """An older index restored beside the store after the log was pruned past it: exact answers
    (and a rebuild), never its stale rows."""
    path = tmp_path / "s.db"
    vecs = _vecs(300)
    _fill(path, vecs)
    EmbeddedStore(path, vector_index="sq8").build_vector_index()
    shutil.copytree(ann.ann_dir(path) / "v.sq8.g1", tmp_path / "old")
    writer = EmbeddedStore(path)
    writer.delete(["p1"])
    writer.build_vector_index("sq8")  # g2, built after the delete
    writer.close()  # prunes the log up to g2's position
    shutil.rmtree(ann.ann_dir(path) / "v.sq8.g2")
    shutil.copytree(tmp_path / "old", ann.ann_dir(path) / "v.sq8.g1")
    reader = EmbeddedStore(path, vector_index="sq8")
    assert "p1" not in _top(reader, vecs[1], 10)
    assert reader._vectors  # answered exactly
    reader.close()


REBUILDER = """
import sys, numpy as np
from ctir_es.store.embedded import EmbeddedStore, approximate
from ctir_es.schema import VectorQuery
approximate.REBUILD_MIN_ROWS, approximate.REBUILD_SHARE, approximate.REBUILD_AFTER_QUERIES = 10, 0.0, 1
s = EmbeddedStore(sys.argv[1], vector_index="hnsw")
q = np.load(sys.argv[2])
s.search(None, [VectorQuery("v", q)], 5)
print("started", flush=True)
s._approx.wait()
print("finished", flush=True)
"""


def test_kill_9_during_the_background_rebuild_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    vecs = _vecs(30_000, dims=64)
    _fill(path, vecs)
    EmbeddedStore(path, vector_index="hnsw").build_vector_index()
    writer = EmbeddedStore(path)
    changed = _vecs(50, seed=4, dims=64)
    writer.upsert([_doc(i, changed[i]) for i in range(50)])
    writer.delete(["p60", "p61"])
    writer.close()
    np.save(tmp_path / "q.npy", vecs[100])
    proc = subprocess.Popen([sys.executable, "-c", REBUILDER, str(path), str(tmp_path / "q.npy")],
                            stdout=subprocess.PIPE, text=True, env={**os.environ})
    root = ann.ann_dir(path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    time.sleep(1.0)  # inside the faiss build (one thread: seconds for 30k x 64 hnsw)
    assert proc.poll() is None, "the rebuild ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _dirs(path) == ["v.hnsw.g6"]  # (six batches of 5,000)

    store = EmbeddedStore(path, vector_index="hnsw")
    assert store.count() == 30_000 - 2
    assert sorted(store.ids()) == sorted({f"p{i}" for i in range(30_000)} - {"p60", "p61"})
    for i in (3, 17, 49):
        assert _top(store, changed[i], 1) == [f"p{i}"]
    for i in (60, 61):
        assert f"p{i}" not in _top(store, vecs[i], 10)
    for i in (100, 5000, 29_999):
        assert _top(store, vecs[i], 1) == [f"p{i}"]
    assert store._vectors == {} and store._ann["v"].generation == 6  # the old index (g6) and its delta
    store.close()
    # a rebuild killed while saving leaves a temporary directory: the next rebuild removes it
    (root / ".build-killed").mkdir()
    s = EmbeddedStore(path, vector_index="hnsw")
    s.build_vector_index()
    assert not any(e.name.startswith(".build-") for e in root.iterdir())
    assert _dirs(path) == ["v.hnsw.g8"] and _top(s, changed[3], 1) == ["p3"]
    s.close()
