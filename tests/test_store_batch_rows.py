"""The rows a batch writes (store/batch_write.py), whatever path builds them: NULL image and
market written as SQL literals per pattern (mixed patterns name their rowids), typed values in
one statement per pattern, and the vectors checked per matrix when the batch is regular (else
per vector, which names each problem). Real SQLite files; correctness only, never speed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField
from ctir_es.store import batch_write
from ctir_es.store.embedded import EmbeddedStore

DIMS = 8
SCHEMA = IndexSchema({"t": VectorField(DIMS, "cosine", {"id": "x"}), "i": VectorField(DIMS, "cosine", {"id": "y"})})
N = batch_write.BULK_TRIGGER_MIN * 2
ENGINES = ["fts5"]
try:
    import tantivy  # noqa: F401

    ENGINES.append("tantivy")
except ImportError:  # pragma: no cover - part of the [test] extra
    pass


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def _doc(i: int, *, image: bool, market: bool, title: str = "item") -> Document:
    p = Product(id=f"p{i}", title=f"{title} {i}", categories=(("A", f"B{i % 3}"),), attributes={"Brand": f"b{i % 4}"},
                market=f"m{i % 2}" if market else None)
    return Document(p, {"t": _vec(i)}, f"img/{i}.jpg" if image else None)


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    s = EmbeddedStore(tmp_path / "s.db", lexical=str(request.param))
    s.setup(SCHEMA)
    yield s
    s.close()


def _rows(store: EmbeddedStore) -> list[tuple[int, str, str | None, str | None, int]]:
    return store.conn.execute("SELECT rowid, id, image, market, has_image FROM products ORDER BY rowid").fetchall()


def _expected(docs: list[Document], first: int = 1) -> list[tuple[int, str, str | None, str | None, int]]:
    return [(first + k, d.product.id, d.image, d.product.market, int(d.image is not None)) for k, d in enumerate(docs)]


@pytest.mark.parametrize("n", [N, 2 * batch_write.MULTI_ROWS + 7])  # one multi-row INSERT or more, and the rest
@pytest.mark.parametrize("pattern", ["alternating", "image only", "market only", "neither", "both"])
def test_new_rows_keep_batch_order_and_their_nulls(store: EmbeddedStore, pattern: str, n: int) -> None:
    flags = {"alternating": lambda i: (i % 2 == 0, i % 3 == 0), "image only": lambda i: (True, False),
             "market only": lambda i: (False, True), "neither": lambda i: (False, False), "both": lambda i: (True, True)}
    docs = [_doc(i, image=flags[pattern](i)[0], market=flags[pattern](i)[1]) for i in range(n)]
    assert store.upsert(docs).written == n
    assert _rows(store) == _expected(docs)
    titles = store.conn.execute("SELECT title, categories, attributes, description FROM products ORDER BY rowid")
    assert titles.fetchall() == [(d.product.title, "A > " + d.product.categories[0][1], d.product.attribute_text, "")
                                 for d in docs]
    # a small batch (per-row triggers) after the bulk one takes the next rowids, mixed too
    more = [_doc(n + i, image=i % 2 == 1, market=i % 2 == 0) for i in range(3)]
    store.upsert(more)
    assert _rows(store) == _expected(docs + more)
    got = store.get([d.product.id for d in docs + more])
    for d in docs + more:
        assert got[d.product.id].image == d.image and got[d.product.id].product.market == d.product.market
    assert store.check() == []


def test_updates_flip_the_null_patterns(store: EmbeddedStore) -> None:
    docs = [_doc(i, image=i % 2 == 0, market=i % 3 == 0) for i in range(N)]
    store.upsert(docs)
    # every product again, each with the other pattern, new titles; plus new ones in the same batch
    again = [_doc(i, image=i % 2 == 1, market=i % 3 != 0, title="renamed") for i in range(N)]
    new = [_doc(i, image=i % 2 == 0, market=True) for i in range(N, N + 5)]
    assert store.upsert(again + new).written == N + 5
    assert _rows(store) == _expected(again + new)
    titles = dict(store.conn.execute("SELECT id, title FROM products"))
    assert all(titles[d.product.id] == d.product.title for d in again + new)
    if store.lexical_engine == "fts5":  # the FTS index followed the updates (per-row update trigger)
        hits = store.conn.execute("SELECT count(*) FROM products_fts WHERE products_fts MATCH 'renamed'").fetchone()
        assert hits == (N,)
    assert store.check() == []


def test_typed_values_rows_per_kind(store: EmbeddedStore) -> None:
    values = {"brand": "Sony", "size": "xl", "price": 12.5, "stock": 3, "new": True, "old": False}
    docs = [Document(Product(id=f"v{i}", title="v", values=values if i % 2 else {"brand": "sony"}), {"t": _vec(i)})
            for i in range(N)]
    store.upsert(docs)
    rows = store.conn.execute("SELECT p.id, name, kw, label, num FROM product_values v JOIN products p "
                              "ON p.rowid = v.product WHERE p.id IN ('v0', 'v1') ORDER BY p.id, name").fetchall()
    assert rows == [("v0", "brand", "sony", None, None),
                    ("v1", "brand", "sony", "Sony", None), ("v1", "new", None, None, 1.0), ("v1", "old", None, None, 0.0),
                    ("v1", "price", None, None, 12.5), ("v1", "size", "xl", None, None), ("v1", "stock", None, None, 3.0)]
    assert store.conn.execute("SELECT count(*) FROM product_values").fetchone() == (N // 2 * 7,)
    assert dict(store.get(["v1"])["v1"].product.values) == values


def test_regular_batch_reports_bad_vectors_as_the_slow_path_does() -> None:
    """NaN and all-zero vectors in a batch whose shapes are all right (the matrix path), and the
    same batch with one vector of a field the schema lacks (the per-vector path): same problems,
    same well-formed vectors."""
    docs = [Document(Product(id=f"p{i}", title="x"), {"t": _vec(i), "i": _vec(100 + i)}) for i in range(10)]
    docs[2].vectors["t"][:] = np.nan  # type: ignore[index]
    docs[5].vectors["i"][:] = 0  # type: ignore[index]
    docs[7] = Document(docs[7].product, {"t": list(map(float, _vec(7)))})  # a list, and no "i"
    docs[8] = Document(docs[8].product, {"t": _vec(8).astype(np.float64)})
    fast_problems, fast = batch_write.vector_problems(docs, SCHEMA)
    assert batch_write._stacked(docs, SCHEMA) is not None
    slow_docs = [*docs, Document(Product(id="alien", title="x"), {"nope": _vec(1)})]
    assert batch_write._stacked(slow_docs, SCHEMA) is None
    slow_problems, slow = batch_write.vector_problems(slow_docs, SCHEMA)
    assert fast_problems == {2: "vector 't' holds NaN or infinity", 5: "vector 'i' is all zeros (cosine is undefined)"}
    assert slow_problems == {**fast_problems, 10: "vector field 'nope' is not in the index schema (call setup first)"}
    assert fast.keys() == slow.keys() == {"t", "i"}
    for name in fast:
        assert fast[name][0] == slow[name][0]
        assert fast[name][1].dtype == np.float32 and np.array_equal(fast[name][1], slow[name][1], equal_nan=True)
    assert fast["i"][0] == [0, 1, 2, 3, 4, 5, 6, 9]  # 7 and 8 hold no "i"


@pytest.mark.parametrize("bad", [np.ones((1, DIMS), np.float32), np.ones(DIMS + 1, np.float32), "text", 3.0])
def test_a_misshapen_vector_sends_the_batch_the_slow_way(bad: object) -> None:
    docs = [Document(Product(id=f"p{i}", title="x"), {"t": _vec(i)}) for i in range(5)]
    docs[3] = Document(docs[3].product, {"t": bad})  # type: ignore[dict-item]
    assert batch_write._stacked(docs, SCHEMA) is None
    problems, by_field = batch_write.vector_problems(docs, SCHEMA)
    assert list(problems) == [3] and "has shape" in problems[3]
    assert by_field["t"][0] == [0, 1, 2, 4]


def test_prepare_errors_name_the_last_bad_duplicate(tmp_path: Path) -> None:
    good = Document(Product(id="d", title="good"), {"t": _vec(1)})
    nan = Document(Product(id="d", title="nan"), {"t": np.full(DIMS, np.nan, np.float32)})
    zero = Document(Product(id="d", title="zero"), {"t": np.zeros(DIMS, np.float32)})
    batch = batch_write.prepare([nan, good, zero], SCHEMA)
    assert batch.errors == {"d": "vector 't' is all zeros (cosine is undefined)"}
    assert batch.ids == ["d"] and batch.titles == ["good"] and batch.written == 1


# -- kill -9 while batches of both row paths are written ----------------------------------------

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
from test_store_batch_rows import SCHEMA, kill_doc
from ctir_es.store.embedded import EmbeddedStore
db, n = sys.argv[1], int(sys.argv[2])
store = EmbeddedStore(db, new_lexical="fts5")
with store.exclusive_writer():
    store.setup(SCHEMA)
    start = store.checkpoint("kill") or 0
    print("ready", start, flush=True)
    for s in range(start, n, KILL_BATCH):
        store.upsert([kill_doc(i) for i in range(s, min(n, s + KILL_BATCH))], checkpoint=("kill", min(n, s + KILL_BATCH)))
    store.clear_checkpoint("kill")
store.close()
print("done", flush=True)
""".replace("KILL_BATCH", str(2 * batch_write.MULTI_ROWS + 188))
KILL_BATCH = 2 * batch_write.MULTI_ROWS + 188  # two multi-row INSERTs and the rest


def kill_doc(i: int) -> Document:
    """Batches alternate: every product with image and market (multi-row INSERTs, rowids from
    SQLite), then mixed (rowids named), so a kill lands in either path."""
    if (i // KILL_BATCH) % 2 == 0:
        return _doc(i, image=True, market=True)
    return _doc(i, image=i % 3 != 0, market=i % 2 == 0)


def test_sigkill_in_either_row_path_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    import random
    import sys

    from store_support import kill_at_checkpoints

    n = KILL_BATCH * 10
    db = tmp_path / "s.db"
    rng = random.Random(25)
    cmd = [sys.executable, "-c", CHILD, str(db), str(n), str(Path(__file__).parent)]
    targets = sorted(rng.sample(range(KILL_BATCH, n - KILL_BATCH, KILL_BATCH), 4))
    kills = kill_at_checkpoints(cmd, db, targets, rng, pause=0.03)
    assert kills >= 3
    store = EmbeddedStore(db)
    docs = [kill_doc(i) for i in range(n)]
    assert _rows(store) == _expected(docs)  # rowids 1..n in order: nothing lost, nothing twice
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone() == (n,)
        conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES ('integrity-check', 1)")
        assert conn.execute("SELECT count(*) FROM vectors").fetchone() == (n,)
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'checkpoint:%'").fetchone() == (0,)
    assert store.check() == []
    store.close()
