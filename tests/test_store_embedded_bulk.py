"""Bulk writes of the embedded store (issue #14, store/batch_write.py): a large batch takes the
set-based path (lexical triggers replaced by one statement per batch), and means exactly what
the row-by-row upsert meant. Correctness only, never speed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.batch_write import BULK_TRIGGER_MIN
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import LEXICAL_SOURCE

DIMS = 16
SCHEMA = IndexSchema({"t": VectorField(DIMS, "cosine", {"id": "x"}), "i": VectorField(DIMS, "cosine", {"id": "y"})})
ENGINES = ["fts5"]
try:
    import tantivy  # noqa: F401

    ENGINES.append("tantivy")
except ImportError:  # pragma: no cover - part of the [test] extra
    pass


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def _doc(i: int, title: str | None = None, fields: tuple[str, ...] = ("t", "i"), seed: int = 0) -> Document:
    cat = ("Home", f"Room {i % 3}", f"Shelf {i % 7}")
    p = Product(id=f"p{i}", title=title or f"plain item {i}", categories=(cat,), attributes={"Brand": f"b{i % 5}"})
    return Document(p, {f: _vec(i * 10 + seed + k) for k, f in enumerate(fields)}, f"img/{i}.jpg")


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    s = EmbeddedStore(tmp_path / "s.db", lexical=str(request.param))
    s.setup(SCHEMA)
    yield s
    s.close()


N = BULK_TRIGGER_MIN * 3


# (node, product rowid) pairs of the category postings, one per product in each of its nodes
PAIRS = "SELECT c.node, j.value AS product FROM category_postings c, json_each(c.products) j"


def _pairs(store: EmbeddedStore) -> list[tuple[str, int]]:
    return [(str(n), int(p)) for n, p in store.conn.execute(PAIRS)]


def _postings_sound(store: EmbeddedStore) -> None:
    """Every block holds ascending rowids inside its range [lo, next lo), with hi and n exact,
    and no product is listed twice under a node."""
    blocks = store.conn.execute("SELECT node, lo, hi, n, products FROM category_postings ORDER BY node, lo").fetchall()
    for i, (node, lo, hi, n, products) in enumerate(blocks):
        rowids = json.loads(products)
        assert rowids and rowids == sorted(set(rowids)) and rowids[0] >= lo and rowids[-1] == hi and n == len(rowids)
        if i + 1 < len(blocks) and blocks[i + 1][0] == node:
            assert hi < blocks[i + 1][1]
    pairs = _pairs(store)
    assert len(pairs) == len(set(pairs))


def _lexical_ids(store: EmbeddedStore, text: str, k: int = 1000) -> set[str]:
    return {h.id for h in store.search(LexicalQuery(text), [], k)[LEXICAL_SOURCE]}


def test_bulk_batch_is_searchable_and_consistent(store: EmbeddedStore) -> None:
    result = store.upsert([_doc(i) for i in range(N)], checkpoint=("src", N))
    assert result.written == N and not result.errors
    assert store.count() == N and store.checkpoint("src") == N
    assert _lexical_ids(store, "plain") == {f"p{i}" for i in range(N)}
    assert _lexical_ids(store, "item 17") >= {"p17"}
    hits = store.search(None, [VectorQuery("i", _vec(42 * 10 + 1))], 1)["i"]
    assert hits[0].id == "p42" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    shelf = store.search(None, [VectorQuery("t", _vec(0))], N, [Filter("category", "subtree", ("Home", "Room 1"))])["t"]
    assert {h.id for h in shelf} == {f"p{i}" for i in range(N) if i % 3 == 1}
    # the per-row triggers are back after the batch: a small later write is indexed by them
    store.upsert([_doc(N, "lonely teapot")])
    assert _lexical_ids(store, "teapot") == {f"p{N}"}
    assert store.check() == []
    if store.lexical_engine == "fts5":
        store.conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES('integrity-check', 1)")
    names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"products_ai", "lexical_log_ai"} & names


def test_bulk_update_replaces_text_categories_and_vectors(store: EmbeddedStore) -> None:
    store.upsert([_doc(i) for i in range(N)])
    rowid_before = store.conn.execute("SELECT rowid FROM products WHERE id = 'p5'").fetchone()[0]
    # half old ids (now with only the "t" vector and new titles), half new ids, in one batch
    batch = [_doc(i, f"renamed gadget {i}", fields=("t",), seed=5) for i in range(0, N, 2)]
    batch += [_doc(i) for i in range(N, N + BULK_TRIGGER_MIN)]
    assert store.upsert(batch).written == len(batch)
    assert store.count() == N + BULK_TRIGGER_MIN
    assert store.conn.execute("SELECT rowid FROM products WHERE id = 'p5'").fetchone()[0] == rowid_before
    assert _lexical_ids(store, "gadget") == {f"p{i}" for i in range(0, N, 2)}
    assert "p4" not in _lexical_ids(store, "plain") and "p5" in _lexical_ids(store, "plain")
    got = store.get(["p4", "p5"])
    assert got["p4"].vector_fields == ("t",) and got["p5"].vector_fields == ("i", "t")
    assert np.allclose(store.vectors(["p4"], "t")["p4"], _vec(4 * 10 + 5))
    assert "p4" not in store.vectors(["p4"], "i")
    assert len(_pairs(store)) == 3 * store.count()  # replaced, not added to
    _postings_sound(store)
    assert store.check() == []


def test_duplicates_in_a_batch_last_wins_and_bad_vectors_are_reported(store: EmbeddedStore) -> None:
    docs = [_doc(i) for i in range(N)]
    docs.append(_doc(3, "second version of three"))
    bad = _doc(N + 1)
    bad.vectors["t"][:] = np.nan  # type: ignore[index]
    zero = Document(Product(id="z", title="zero"), {"t": np.zeros(DIMS, np.float32)})
    short = Document(Product(id="s", title="short"), {"t": np.ones(3, np.float32)})
    alien = Document(Product(id="a", title="alien"), {"nope": _vec(1)})
    result = store.upsert([*docs, bad, zero, short, alien])
    assert result.written == N + 1
    assert result.errors == {
        f"p{N + 1}": "vector 't' holds NaN or infinity",
        "z": "vector 't' is all zeros (cosine is undefined)",
        "s": "vector 't' has shape (3,), the index expects (16,)",
        "a": "vector field 'nope' is not in the index schema (call setup first)",
    }
    assert store.count() == N
    assert store.get(["p3"])["p3"].product.title == "second version of three"
    assert _lexical_ids(store, "second version") == {"p3"}


def test_a_failed_bulk_batch_leaves_the_triggers_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = EmbeddedStore(path, lexical="fts5")
    store.setup(SCHEMA)
    store.upsert([_doc(i) for i in range(10)], checkpoint=("src", 10))
    # a unique-id clash inside SQLite, after the triggers were dropped: the batch rolls back
    store.conn.execute("CREATE TRIGGER boom BEFORE INSERT ON vectors WHEN new.product > 100 "
                       "BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(Exception, match="boom"):
        store.upsert([_doc(i) for i in range(10, 10 + N)], checkpoint=("src", 10 + N))
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 10
        assert conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()[0] == 10
        assert conn.execute("SELECT value FROM meta WHERE key = 'checkpoint:src'").fetchone()[0] == "10"
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"products_ai", "products_au", "products_ad"} <= triggers


def test_rows_hold_what_the_product_says(store: EmbeddedStore) -> None:
    """Paths shared between products (and given as lists), escaped names, non-ASCII text and a
    non-dict attribute mapping: the stored JSON, category nodes and product read back are exact."""
    from types import MappingProxyType

    shared = ("Küche", "Töpfe > Pfannen", "a\\b")
    docs = [_doc(i) for i in range(N)]
    docs.append(Document(Product(id="multi", title="pan", categories=(shared, ["Küche", "Deals"]),  # type: ignore[arg-type]
                                 attributes=MappingProxyType({"Marke": "Fissler \"Pro\""}), images=("a.jpg", "é.png")),
                         {"t": _vec(7)}))
    docs.append(Document(Product(id="bare", title="plain"), {"t": _vec(8)}))
    assert store.upsert(docs).written == N + 2
    extra = store.conn.execute("SELECT extra FROM products WHERE id = 'multi'").fetchone()[0]
    assert extra == json.dumps({"categories": [list(shared), ["Küche", "Deals"]], "attributes": {"Marke": "Fissler \"Pro\""},
                                "images": ["a.jpg", "é.png"]}, ensure_ascii=False, separators=(",", ":"))
    nodes = {r[0] for r in store.conn.execute(
        f"SELECT node FROM ({PAIRS}) JOIN products p ON p.rowid = product WHERE p.id = 'multi'")}
    assert nodes == {"Küche", "Küche\x1fTöpfe > Pfannen", "Küche\x1fTöpfe > Pfannen\x1fa\\b", "Küche\x1fDeals"}
    got = store.get(["multi", "bare"])
    assert got["multi"].product.categories == (shared, ("Küche", "Deals"))
    assert dict(got["multi"].product.attributes) == {"Marke": "Fissler \"Pro\""}
    assert got["bare"].product.categories == () and not got["bare"].product.attributes
    assert len(_pairs(store)) == 3 * N + 4
    # every product of a node (here "Home", shared by the whole batch) is there once, in one block
    assert store.conn.execute("SELECT count(*), sum(n) FROM category_postings WHERE node = 'Home'").fetchone() == (1, N)
    _postings_sound(store)
    assert store.check() == []


def test_upsert_leaves_foreign_keys_on_for_deletes(store: EmbeddedStore) -> None:
    store.upsert([_doc(i) for i in range(N)])
    assert store._wconn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.delete([f"p{i}" for i in range(0, N, 2)]) == N // 2
    orphans = store.conn.execute(f"SELECT count(*) FROM ({PAIRS}) WHERE product NOT IN (SELECT rowid FROM products)")
    assert orphans.fetchone()[0] == 0
    assert len(_pairs(store)) == 3 * (N - N // 2)
    _postings_sound(store)
    assert store.conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == 2 * (N - N // 2)

