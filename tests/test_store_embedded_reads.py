"""Reads of the embedded store that one damaged value must not break (issue 24 leftover)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ctir_es.config import load_settings
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.store.embedded import EmbeddedStore


def _store_with_a_flipped_image_byte(path: Path) -> None:
    store = EmbeddedStore(path)
    store.setup(IndexSchema())
    store.upsert([Document(Product(id=f"p{i}", title=f"steel pan {i}", categories=(("Kitchen", "Pans"),)),
                           image=f"/srv/images/pan-{i}-é.jpg") for i in range(3)])
    store.close()
    with sqlite3.connect(path) as conn:  # one byte of one stored path flipped: no longer UTF-8
        raw = bytearray(conn.execute("SELECT CAST(image AS BLOB) FROM products WHERE id = 'p1'").fetchone()[0])
        raw[raw.index("é".encode()[0])] ^= 0x40
        conn.execute("UPDATE products SET image = CAST(? AS TEXT) WHERE id = 'p1'", (bytes(raw),))
        with pytest.raises(sqlite3.OperationalError, match="UTF-8"):  # what a plain read meets
            conn.execute("SELECT image FROM products WHERE id = 'p1'").fetchone()
    conn.close()


def test_a_stored_image_path_that_is_not_utf8_does_not_break_reads_of_its_product(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    _store_with_a_flipped_image_byte(path)
    store = EmbeddedStore(path)
    with caplog.at_level(logging.WARNING, logger="ctir_es.store"):
        got = store.get(["p0", "p1", "p2"])
    assert sorted(got) == ["p0", "p1", "p2"]
    assert got["p0"].image == "/srv/images/pan-0-é.jpg" and got["p2"].image == "/srv/images/pan-2-é.jpg"
    bad = got["p1"].image
    assert bad is not None and "\ufffd" in bad and bad.startswith("/srv/images/pan-1-")
    assert got["p1"].product.title == "steel pan 1"
    assert any("'p1'" in r.getMessage() and "not UTF-8" in r.getMessage() for r in caplog.records)
    hits = store.search(LexicalQuery("pan"), [], 3)["bm25"]
    assert {h.id for h in hits} == {"p0", "p1", "p2"}
    store.close()


def test_the_api_serves_that_product(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store_with_a_flipped_image_byte(path)
    search = Search.open(load_settings(env={"CTIR_ES_STORE": str(path), "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"),
                                            "CTIR_ES_CACHE_DIR": str(tmp_path / "cache")}))
    with TestClient(create_app(search)) as client:
        resp = client.get("/products/p1")
        assert resp.status_code == 200, resp.text
        assert resp.json()["title"] == "steel pan 1" and resp.json()["image_url"]
        assert client.get("/products/p1/image").status_code == 404  # that image does not load
