"""Vectors in append-only files beside the store (store format 4, store/embedded/vector_file.py).

The crash rule (docs/embedded-store.md): vectors are appended at the committed length and
synced before the COMMIT that records the new length and the rows' slots; a crash leaves at
most an uncommitted tail that no reader reads and the next write cuts. Tested here by SIGKILL at
random moments of a ready-vector ingest on every lexical engine and kNN option (lost 0,
duplicated 0, every vector the one written for its product), and by the tail, rollback, update,
delete and damage cases one at a time.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from store_support import kill_at_checkpoints

from ctir_es.errors import StoreError
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store import batch_write
from ctir_es.store.embedded import EmbeddedStore

DIMS = 16
FIELD = "v"
SCHEMA = IndexSchema({FIELD: VectorField(DIMS, "cosine", {"id": "test"})})


def vec(i: int, version: int = 0) -> np.ndarray:
    v = np.random.default_rng(i * 7 + version).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def doc(i: int, version: int = 0) -> Document:
    return Document(Product(id=f"p{i}", title=f"item {i} v{version}", categories=(("A", f"B{i % 5}"),)),
                    {FIELD: vec(i, version)})


def vector_file(db: Path) -> Path:
    with sqlite3.connect(db) as conn:
        (name,) = conn.execute("SELECT file FROM vector_files WHERE field = ?", (FIELD,)).fetchone()
    return Path(str(db) + ".vectors") / name


def committed_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT rows FROM vector_files WHERE field = ?", (FIELD,)).fetchone()[0])


def check_vectors(store: EmbeddedStore, n: int, version: int = 0) -> None:
    got = store.vectors([f"p{i}" for i in range(n)], FIELD)
    assert len(got) == n
    for i in range(n):
        np.testing.assert_array_equal(got[f"p{i}"], vec(i, version))


# -- kill -9 at random points ------------------------------------------------------------------


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[5])
from test_store_vector_file import SCHEMA, doc
from ctir_es.store.embedded import EmbeddedStore
db, engine, index, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = EmbeddedStore(db, vector_index=index, new_lexical=engine)
with store.exclusive_writer():
    store.setup(SCHEMA)
    start = store.checkpoint("kill") or 0
    print("ready", start, flush=True)
    for s in range(start, n, 400):
        store.upsert([doc(i) for i in range(s, min(n, s + 400))], checkpoint=("kill", min(n, s + 400)))
    store.clear_checkpoint("kill")
store.close()
print("done", flush=True)
"""

OPTIONS = [("fts5", "exact"), ("tantivy", "exact"), ("fts5", "ivf"), ("tantivy", "sq8"), ("fts5", "hnsw")]


@pytest.mark.parametrize(("engine", "index"), OPTIONS, ids=[f"{a}-{b}" for a, b in OPTIONS])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path, engine: str, index: str) -> None:
    if engine == "tantivy":
        pytest.importorskip("tantivy")
    if index != "exact":
        pytest.importorskip("faiss")
    n = 12000
    db = tmp_path / "s.db"
    rng = random.Random(engine + index)
    cmd = [sys.executable, "-c", CHILD, str(db), engine, index, str(n), str(Path(__file__).parent)]
    targets = sorted(rng.sample(range(400, n - 400, 400), 4))  # killed once this many are committed
    kills = kill_at_checkpoints(cmd, db, targets, rng, pause=0.02)  # anywhere in the next batch
    assert kills >= 3
    store = EmbeddedStore(db, vector_index=index)
    assert store.count() == n
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM products").fetchone() == (n, n)
        assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == n
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'checkpoint:%'").fetchone()[0] == 0
    check_vectors(store, n)  # every product's vector is the one written for it, none torn or zero
    assert vector_file(db).stat().st_size == committed_rows(db) * DIMS * 4  # no uncommitted tail left
    hits = store.search(None, [VectorQuery(FIELD, vec(123))], 3)[FIELD]
    assert hits[0].id == "p123" and hits[0].score > 0.999
    assert store.check() == []
    store.close()


# -- one case at a time ------------------------------------------------------------------------


def test_an_uncommitted_tail_is_never_read_and_the_next_write_cuts_it(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(300)])
    store.close()
    path = vector_file(db)
    with open(path, "ab") as fh:  # what a writer killed between its append and its COMMIT leaves
        fh.write(np.full((50, DIMS), 7.0, np.float32).tobytes())
    reader = EmbeddedStore(db)
    check_vectors(reader, 300)
    assert reader.search(None, [VectorQuery(FIELD, vec(5))], 1)[FIELD][0].id == "p5"
    reader.close()
    store = EmbeddedStore(db)
    store.upsert([doc(i) for i in range(300, 310)])  # written at the committed end, the tail cut
    assert path.stat().st_size == 310 * DIMS * 4 == committed_rows(db) * DIMS * 4
    check_vectors(store, 310)
    store.close()


def test_a_rolled_back_batch_leaves_no_vector_a_reader_sees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(400)])
    finish = batch_write.TransactionWriter.finish

    def failing(self: batch_write.TransactionWriter) -> None:
        finish(self)  # the vectors are appended and synced, then the transaction fails
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(batch_write.TransactionWriter, "finish", failing)
    with pytest.raises(StoreError):
        store.upsert([doc(i, version=1) for i in range(200, 700)])
    monkeypatch.undo()
    assert committed_rows(db) == 400 and store.count() == 400
    check_vectors(store, 400)  # the old vectors, not the rolled-back ones
    store.upsert([doc(i) for i in range(400, 500)])
    check_vectors(store, 500)
    assert vector_file(db).stat().st_size == 500 * DIMS * 4
    store.close()


def test_updates_append_and_point_to_the_newest_deletes_and_write_vectors_follow(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(100)])
    store.upsert([doc(i, version=1) for i in range(0, 100, 2)])  # updates: new slots
    assert committed_rows(db) == 150
    got = store.vectors([f"p{i}" for i in range(100)], FIELD)
    for i in range(100):
        np.testing.assert_array_equal(got[f"p{i}"], vec(i, 1 if i % 2 == 0 else 0))
    assert store.search(None, [VectorQuery(FIELD, vec(4, 1))], 1)[FIELD][0].id == "p4"
    assert store.delete(["p4", "p5"]) == 2
    assert "p4" not in store.vectors(["p4"], FIELD)
    assert store.search(None, [VectorQuery(FIELD, vec(4, 1))], 1)[FIELD][0].id != "p4"
    ids = [f"p{i}" for i in range(10)]
    written = store.write_vectors(FIELD, SCHEMA.vectors[FIELD], {pid: vec(i, 2) for i, pid in enumerate(ids)})
    assert written == 8  # p4 and p5 are gone
    got = store.vectors(ids, FIELD)
    assert set(got) == set(ids) - {"p4", "p5"}
    for i, pid in enumerate(ids):
        if pid in got:
            np.testing.assert_array_equal(got[pid], vec(i, 2))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == 98
    store.close()


def test_a_second_field_gets_its_own_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(20)])
    other = VectorField(4, "cosine", {"id": "other"})
    store.set_vector_field("w", other)
    unit = np.eye(4, dtype=np.float32)
    assert store.write_vectors("w", other, {f"p{i}": unit[i % 4] for i in range(20)}) == 20
    assert store.search(None, [VectorQuery("w", unit[1])], 1)["w"][0].score == pytest.approx(1.0)
    check_vectors(store, 20)
    assert sorted(p.name for p in (tmp_path / "s.db.vectors").iterdir()) == ["1.f32", "2.f32"]
    store.close()


def test_a_missing_or_short_vector_file_is_a_store_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(50)])
    store.close()
    path = vector_file(db)
    os.truncate(path, 10 * DIMS * 4)
    reader = EmbeddedStore(db)
    (problem,) = reader.check()  # stats --check names it before any query meets it
    assert problem.startswith(f"vector field {FIELD}: the vector file {path}") and "committed" in problem
    with pytest.raises(StoreError, match="vector file"):
        reader.search(None, [VectorQuery(FIELD, vec(1))], 1)
    reader.close()
    path.unlink()
    reader = EmbeddedStore(db)
    with pytest.raises(StoreError, match="vector file"):
        reader.vectors(["p1"], FIELD)
    reader.close()


def test_a_bulk_insert_of_reused_rowids_is_logged_as_the_per_row_trigger_would(tmp_path: Path) -> None:
    """A batch of many new rows drops the per-row insert triggers and does their work once
    (batch_write._BULK_TRIGGERS); for the approximate index's change log that is: a new rowid at
    or below the highest rowid the log holds is logged, one above it is not."""
    store = EmbeddedStore(tmp_path / "s.db")
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(300)])
    store.delete([f"p{i}" for i in range(200, 300)])  # rowids 201-300 logged; SQLite reuses them
    conn = store._wconn
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'vector_log'").fetchone() is None:
        pytest.skip("no vector_log in this store")
    (seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM vector_log").fetchone()
    store.upsert([doc(i) for i in range(1000, 1200)])  # rowids 201-400
    added = [r for (r,) in conn.execute("SELECT product FROM vector_log WHERE seq > ? ORDER BY seq", (seq,))]
    assert added == list(range(201, 301))  # logged up to the log's maximum, not above
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'vector_log_ai'").fetchone()[0] == 1
    check_vectors(store, 200)
    store.close()
