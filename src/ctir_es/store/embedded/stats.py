"""What an embedded store holds (``stats``) and whether its parts agree (``stats --check``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ...schema import LEXICAL_FIELDS, IndexSchema
from .. import vector_file
from ..batch_write import NODE_SEP
from .lexical import LexicalEngine


def summary(conn: sqlite3.Connection, path: Path, schema: IndexSchema | None, products: int,
            lexical_engine: str | None) -> dict[str, Any]:
    vector_counts = dict(conn.execute("SELECT field, count(*) FROM vectors GROUP BY field").fetchall())
    top = conn.execute(
        f"SELECT node, sum(n) AS total FROM category_postings WHERE instr(node, '{NODE_SEP}') = 0 "
        "GROUP BY node ORDER BY total DESC"
    ).fetchall()
    return {
        "backend": "embedded",
        "path": str(path),
        "file_bytes": path.stat().st_size if path.exists() else 0,
        "products": products,
        "with_image": conn.execute("SELECT count(*) FROM products WHERE has_image = 1").fetchone()[0],
        "category_nodes": conn.execute("SELECT count(DISTINCT node) FROM category_postings").fetchone()[0],
        "top_categories": dict(top),
        "markets": dict(
            conn.execute("SELECT coalesce(market, '-'), count(*) FROM products GROUP BY market").fetchall()
        ),
        "lexical_engine": lexical_engine,
        "lexical_fields": list(LEXICAL_FIELDS),
        "vector_fields": {
            name: {**f.to_json(), "count": vector_counts.get(name, 0)}
            for name, f in (schema.vectors.items() if schema else [])
        },
    }


def check(conn: sqlite3.Connection, lexical: LexicalEngine, values: bool) -> list[str]:
    """SQLite's full integrity check (reads every page): an empty list when the file is sound.
    A sound file has its lexical index checked too (``LexicalEngine.check``: damage raises the
    ``StoreError`` a query would), then the tables that must agree with ``products``."""
    rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
    problems = [str(r[0]) for r in rows]
    if problems != ["ok"]:
        return problems
    lexical.check()
    return gaps(conn, lexical, values)


def gaps(conn: sqlite3.Connection, lexical: LexicalEngine, values: bool) -> list[str]:
    """The tables that must agree with ``products``, each gap named: the lexical index, and the
    rows of vectors, typed values and category postings that name no product."""
    conn.execute("BEGIN")  # one snapshot
    try:
        (products,) = conn.execute("SELECT count(*) FROM products").fetchone()
        found = lexical.gaps(conn, products)
        orphans = {
            "vectors": "SELECT count(*) FROM vectors WHERE product NOT IN (SELECT rowid FROM products)",
            "category postings": "SELECT count(*) FROM category_postings c, json_each(c.products) j "
                                 "WHERE j.value NOT IN (SELECT rowid FROM products)",
        }
        if values:
            orphans["typed values"] = ("SELECT count(*) FROM product_values "
                                       "WHERE product NOT IN (SELECT rowid FROM products)")
        for what, sql in orphans.items():
            (n,) = conn.execute(sql).fetchone()
            if n:
                found.append(f"{n} rows of {what} name no product")
        for field, n in conn.execute("SELECT field, count(*) FROM vectors GROUP BY field"):
            if n > products:
                found.append(f"vector field {field} holds {n} vectors for {products} products")
        found += vector_file.short_files(conn)
    finally:
        conn.execute("COMMIT")
    return found
