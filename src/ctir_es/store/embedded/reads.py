"""Products, vectors and category counts read back from the store's tables.

Lists of ids go in chunks of 500: SQLite's parameter limit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ...products import Product
from ...schema import StoredProduct
from .. import vector_file
from ..batch_write import NODE_SEP

CHUNK = 500  # ids per statement: under SQLite's parameter limit
log = logging.getLogger("ctir_es.store")


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def products(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, StoredProduct]:
    out: dict[str, StoredProduct] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT p.rowid, p.id, p.title, p.description, p.extra, CAST(p.image AS BLOB), p.market, "
            "(SELECT group_concat(field) FROM vectors v WHERE v.product = p.rowid) "
            f"FROM products p WHERE p.id IN ({marks})",
            chunk,
        ).fetchall()
        for _rowid, pid, title, description, extra, image, market, fields in rows:
            out[pid] = StoredProduct(
                product_from_row(pid, title, description, extra, market),
                _image_path(pid, image),
                tuple(sorted(fields.split(","))) if fields else (),
            )
    return out


def _image_path(pid: str, raw: bytes | None) -> str | None:
    """The stored image path, read as bytes: one that is not UTF-8 (a flipped byte on disk)
    would make SQLite refuse the whole row, so the product's reads would fail. It is decoded
    with U+FFFD for the bad bytes instead (that image does not load) and reported in the log."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        path = raw.decode("utf-8", errors="replace")
        log.warning("product %r: its stored image path is not UTF-8 (%s); read as %r, the image will not "
                    "load: re-run the ingest to store it again", pid, exc.reason, path)
        return path


def product_from_row(pid: str, title: str, description: str, extra: str, market: str | None) -> Product:
    data = json.loads(extra)
    return Product(
        id=pid,
        title=title,
        categories=tuple(tuple(c) for c in data.get("categories", [])),
        attributes=data.get("attributes", {}),
        description=description,
        images=tuple(data.get("images", [])),
        market=market,
        values=data.get("values") or {},
    )


def vectors(conn: sqlite3.Connection, ids: Sequence[str], field: str) -> dict[str, np.ndarray]:
    """The stored ``field`` vectors of ``ids`` (an id without one is absent): slots in one SQL
    snapshot, then the field's file (format 4) or the blobs (format 3 read as it is)."""
    out: dict[str, np.ndarray] = {}
    in_files = vector_file.in_files(conn)
    ff = vector_file.field_file(conn, field) if in_files else None
    if in_files and ff is None:
        return out
    column = "v.slot" if in_files else "v.vec"
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT p.id, {column} FROM vectors v JOIN products p ON p.rowid = v.product "
            f"WHERE v.field = ? AND p.id IN ({marks})",
            [field, *chunk],
        ).fetchall()
        if ff is not None:
            found = vector_file.read_vectors(conn, ff, [slot for _, slot in rows])
            out.update((pid, vec) for (pid, _), vec in zip(rows, found, strict=True))
        else:
            out.update((pid, np.frombuffer(vec, dtype=np.float32).copy()) for pid, vec in rows)
    return out


def ids(conn: sqlite3.Connection) -> list[str]:
    """Every product id, sorted."""
    return [str(pid) for (pid,) in conn.execute("SELECT id FROM products ORDER BY id")]


def ids_for_rowids(conn: sqlite3.Connection, rowids: np.ndarray) -> dict[int, str]:
    values = rowids.tolist()
    if not values:
        return {}
    marks = ",".join("?" * len(values))
    return dict(conn.execute(f"SELECT rowid, id FROM products WHERE rowid IN ({marks})", values).fetchall())


def category_counts(conn: sqlite3.Connection) -> dict[tuple[str, ...], int]:
    """Products per category node (every level)."""
    rows = conn.execute("SELECT node, sum(n) FROM category_postings GROUP BY node").fetchall()
    return {tuple(node.split(NODE_SEP)): n for node, n in rows}


def image_dirs(conn: sqlite3.Connection) -> list[str]:
    """Distinct directories of the local image files the products refer to (URLs left out)."""
    rows = conn.execute("SELECT DISTINCT image FROM products WHERE image IS NOT NULL").fetchall()
    dirs = {str(Path(ref).parent) for (ref,) in rows if "://" not in ref and Path(ref).is_absolute()}
    return sorted(dirs)
