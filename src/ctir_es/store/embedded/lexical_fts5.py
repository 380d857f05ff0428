"""The FTS5 lexical engine: BM25 inside the SQLite file (the default before the native scorer).

An external-content FTS5 table over ``products``, kept in step by triggers (the pattern from the
FTS5 docs), so a batch and its text index commit together and there is nothing to catch up.
FTS5 scores the row as one document with per-column weights (``bm25()``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ...filters import Filter
from ...schema import LEXICAL_FIELDS, Hit, LexicalQuery
from ..batch_write import PreparedBatch
from .sql_filters import filter_sql

MAX_QUERY_TERMS = 64
# FTS5 writes its index in leaves of about ``pgsz`` bytes (4050 by default, sized for 4 KiB pages).
# In a file of 32 KiB pages (every store since format 2) leaves near the page size cost FTS5 8%
# fewer instructions per product at 100k (callgrind: 26.4k -> 24.2k; 185 leaf rows instead of
# 1,345). Leaves only cut the same doclists in other places: scores are the same.
LEAF_BYTES = {32768: 28672, 65536: 61440}  # page size -> pgsz (a leaf may outgrow pgsz by a term)

FTS_DDL = """
CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
    title, categories, attributes, description,
    content='products', content_rowid='rowid',
    tokenize='porter unicode61 remove_diacritics 2'
);
-- Keep the external-content FTS index in step with products (the pattern from the FTS5 docs).
CREATE TRIGGER IF NOT EXISTS products_ai AFTER INSERT ON products BEGIN
    INSERT INTO products_fts(rowid, title, categories, attributes, description)
    VALUES (new.rowid, new.title, new.categories, new.attributes, new.description);
END;
CREATE TRIGGER IF NOT EXISTS products_ad AFTER DELETE ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, title, categories, attributes, description)
    VALUES ('delete', old.rowid, old.title, old.categories, old.attributes, old.description);
END;
CREATE TRIGGER IF NOT EXISTS products_au AFTER UPDATE ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, title, categories, attributes, description)
    VALUES ('delete', old.rowid, old.title, old.categories, old.attributes, old.description);
    INSERT INTO products_fts(rowid, title, categories, attributes, description)
    VALUES (new.rowid, new.title, new.categories, new.attributes, new.description);
END;
"""


def set_leaf_size(conn: sqlite3.Connection) -> None:
    """Give the FTS5 index leaves of about the file's page size (``LEAF_BYTES``), once: a store
    whose index records a ``pgsz`` keeps it, and nothing is written then (a read first: even an
    INSERT that adds no row would take the write lock). Older stores get it on a writable open
    that finds the write lock free; their existing leaves stay as they are (FTS5 reads both)."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    leaf = LEAF_BYTES.get(int(page_size))
    if leaf is None or conn.execute("SELECT 1 FROM products_fts_config WHERE k = 'pgsz'").fetchone() is not None:
        return
    (waits,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute("PRAGMA busy_timeout = 0")  # another writer at work, read-only media: next time
    try:
        conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES ('pgsz', ?)", (leaf,))
    except sqlite3.OperationalError:
        pass  # only the leaves' size: never worth failing or delaying an open
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(waits)}")


def fts_query(text: str, fields: Iterable[str]) -> str | None:
    """Free text -> an FTS5 expression: any of the words, restricted to ``fields``.

    Words are quoted, so FTS5 operators typed by a user (AND, NEAR, *, :) are plain words.
    """
    terms = list(dict.fromkeys(t.lower() for t in re.findall(r"\w+", text)))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    cols = " ".join(fields)
    return "{" + cols + "} : (" + " OR ".join(f'"{t}"' for t in terms) + ")"


class _NoWrite:
    """FTS5's part of a write is done by its triggers, inside the same transaction."""

    def add(self, conn: sqlite3.Connection, batch: PreparedBatch, rowids: Any) -> None:
        pass

    def finish(self, conn: sqlite3.Connection, *, committed: bool) -> None:
        pass


class Fts5Lexical:
    """BM25 by SQLite's FTS5 over the store's own connection."""

    name = "fts5"
    beside_exact_scan = True

    @classmethod
    def open(cls, path: Path, conn: sqlite3.Connection, writable: bool) -> Fts5Lexical:
        if writable:
            set_leaf_size(conn)
        return cls()

    def bm25(self, conn: sqlite3.Connection, query: LexicalQuery, k: int, filters: Sequence[Filter],
             snapshot: Any) -> list[Hit]:
        fields = [f for f in LEXICAL_FIELDS if query.weights.get(f, 0) > 0]
        expr = fts_query(query.text, fields) if fields else None
        if expr is None:
            return []
        weights = [float(query.weights.get(f, 0.0)) for f in LEXICAL_FIELDS]
        where, params = filter_sql(filters, values=snapshot.values)
        if filters:
            sql = (
                "SELECT p.id, bm25(products_fts, ?, ?, ?, ?) AS s FROM products_fts "
                "JOIN products p ON p.rowid = products_fts.rowid "
                f"WHERE products_fts MATCH ? AND {where} ORDER BY s LIMIT ?"
            )
        else:  # rank first, then look up the ids of the k best only (not of every match)
            sql = (
                "SELECT p.id, f.s FROM (SELECT rowid, bm25(products_fts, ?, ?, ?, ?) AS s FROM products_fts "
                "WHERE products_fts MATCH ? ORDER BY s LIMIT ?) f JOIN products p ON p.rowid = f.rowid ORDER BY f.s"
            )
        rows = conn.execute(sql, [*weights, expr, *params, k]).fetchall()
        return [Hit(pid, -float(score)) for pid, score in rows]  # FTS5 bm25 is negated

    def begin_write(self, conn: sqlite3.Connection) -> _NoWrite:
        return _NoWrite()

    def after_commit(self, conn: sqlite3.Connection) -> None:
        pass

    def follow(self, conn: sqlite3.Connection) -> None:
        pass

    def check(self) -> None:
        pass  # inside the file: SQLite's integrity check and ``gaps`` read it

    def gaps(self, conn: sqlite3.Connection, products: int) -> list[str]:
        (docs,) = conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()
        if docs != products:
            return [f"the FTS5 text index holds {docs} documents, the products table {products} rows"]
        try:  # every indexed term against the products' text (reads the whole index)
            conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            return [f"the FTS5 text index does not match the products table ({exc})"]
        return []

    def close(self) -> None:
        pass
