"""FTS5 index leaves sized to the store's pages (lexical_fts5.set_leaf_size): set on a new store,
on an older store's first writable open that finds the write lock free, never by a reader; and
the BM25 scores on real data are the same to the last bit with either leaf size."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ctir_es.ingest.readers import get_reader
from ctir_es.ingest.report import IngestReport
from ctir_es.schema import Document, IndexSchema, LexicalQuery
from ctir_es.store.embedded import EmbeddedStore, lexical_fts5
from ctir_es.vocabulary import LEXICAL_SOURCE


def _pgsz(path: Path) -> int | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT v FROM products_fts_config WHERE k = 'pgsz'").fetchone()
    return None if row is None else int(row[0])


def _store(path: Path) -> EmbeddedStore:
    s = EmbeddedStore(path, lexical="fts5")
    s.setup(IndexSchema())
    return s


def test_a_new_store_has_page_sized_leaves(tmp_path: Path) -> None:
    _store(tmp_path / "s.db").close()
    assert _pgsz(tmp_path / "s.db") == lexical_fts5.LEAF_BYTES[32768]


def test_an_older_store_gets_them_on_a_writable_open_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store(path).close()
    with sqlite3.connect(path) as conn:  # as a store written before the setting
        conn.execute("DELETE FROM products_fts_config WHERE k = 'pgsz'")
    reader = EmbeddedStore(path)
    assert reader.count() == 0 and reader.schema() == IndexSchema()
    reader.close()
    assert _pgsz(path) is None
    _store(path).close()
    assert _pgsz(path) == lexical_fts5.LEAF_BYTES[32768]


def test_setting_them_does_not_wait_for_another_writer(tmp_path: Path) -> None:
    """The open's own writes already wait for the write lock; the leaf size, written after them,
    gives up at once when another writer took the lock in between."""
    path = tmp_path / "s.db"
    _store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM products_fts_config WHERE k = 'pgsz'")
    mine = sqlite3.connect(path, timeout=30, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        start = time.perf_counter()
        lexical_fts5.set_leaf_size(mine)
        assert time.perf_counter() - start < 5  # not the 30 s busy timeout
        assert mine.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _pgsz(path) is None  # left for a later open
    lexical_fts5.set_leaf_size(mine)
    mine.close()
    assert _pgsz(path) == lexical_fts5.LEAF_BYTES[32768]


def test_bm25_scores_are_the_same_with_either_leaf_size(tmp_path: Path, flipkart_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    products = list(get_reader("flipkart")(flipkart_dir, IngestReport()))
    assert len(products) >= 1000
    stores = {}
    for name in ("page-sized", "default"):
        if name == "default":
            monkeypatch.setattr(lexical_fts5, "LEAF_BYTES", {})
        store = _store(tmp_path / f"{name}.db")
        for start in range(0, len(products), 100):  # many small segments, merged as they come
            assert not store.upsert([Document(p) for p in products[start : start + 100]]).errors
        stores[name] = store
    leaves = {name: s.conn.execute("SELECT count(*) FROM products_fts_data").fetchone()[0] for name, s in stores.items()}
    assert leaves["page-sized"] < leaves["default"]  # the layouts differ
    queries = sorted({" ".join(path) for p in products for path in p.categories}
                     | {p.title for p in products[::7]} | {"cotton", "steel bottle", "women's watch"})
    assert len(queries) > 200
    weights = {"title": 2.0, "categories": 1.0, "attributes": 0.5, "description": 0.25}
    for text in queries:
        got = {name: [(h.id, h.score) for h in s.search(LexicalQuery(text, weights), [], 50)[LEXICAL_SOURCE]]
               for name, s in stores.items()}
        assert got["page-sized"] == got["default"], text
    for s in stores.values():
        assert s.check() == []
        s.close()
