"""Writing one batch of documents into the embedded store's SQLite tables, in bulk.

A batch is validated and turned into rows first (``prepare``: no I/O, vectors checked as one
matrix per field), then written inside the caller's transaction (``write``) with a handful of
set-based statements instead of a dozen statements per product:

- products: existing ids are found with one query and updated in place (same rowid, so the
  lexical triggers see an update); new ids are inserted with one ``executemany`` of the rows as
  prepared, and SQLite numbers them after the current maximum rowid (checked);
- the per-row lexical triggers (FTS5's ``products_ai``, tantivy's ``lexical_log_ai``) cost far
  more per row than the same work done once per batch (about 38 us against 3 us per product
  for FTS5), so for a large batch they are dropped and re-created inside the same transaction
  and their work is done by one ``INSERT ... SELECT`` over the new rowid range. DDL is
  transactional in SQLite: a crash rolls the batch back with the triggers in place, and other
  connections never see the store without them;
- category nodes: one ``INSERT ... SELECT`` per distinct node of the batch, its products a JSON
  array of ascending rowids, so a node's text is bound once and the primary key (node, product)
  is filled in order; most of what is left is SQLite's B-tree work (two entries per row);
- vectors: one ``INSERT ... SELECT`` per field slicing one float32 blob of the whole batch
  (``substr`` on a BLOB slices bytes), instead of binding a Python object per row.

The meaning is the old row-by-row upsert's: a later duplicate id in a batch wins, a product
with a bad vector is reported by id and not written, an update replaces the product's
categories and vectors (a field absent from the update is removed).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..products import format_category_path
from ..schema import Document, IndexSchema

NODE_SEP = "\x1f"  # the embedded store's category node separator (never inside a name)
BULK_TRIGGER_MIN = 64  # fewer new rows than this: the per-row triggers are cheaper than DDL
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# Per-row insert triggers and the one statement that does their work for a range of new rowids.
_BULK_TRIGGERS = {
    "products_ai": (
        "INSERT INTO products_fts(rowid, title, categories, attributes, description) "
        "SELECT rowid, title, categories, attributes, description FROM products WHERE rowid BETWEEN ? AND ?"
    ),
    "lexical_log_ai": "INSERT INTO lexical_log(product) SELECT rowid FROM products WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
}


@dataclass
class PreparedBatch:
    """The rows of one batch, ready to write: one entry per distinct valid product id."""

    ids: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # products columns from id on (no rowid)
    nodes: list[set[str]] = field(default_factory=list)  # category node keys per product
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # field -> (row slots, matrix)
    written: int = 0  # valid documents (a duplicate id counts each time, as row-by-row did)
    errors: dict[str, str] = field(default_factory=dict)


def vector_problems(docs: Sequence[Document], schema: IndexSchema) -> tuple[dict[int, str], dict[str, tuple[list[int], np.ndarray]]]:
    """Problems by document position, and the well-shaped vectors by field (positions, float32 matrix)."""
    problems: dict[int, str] = {}
    gathered: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    for i, doc in enumerate(docs):
        for name, vec in doc.vectors.items():
            spec = schema.vectors.get(name)
            if spec is None:
                problems[i] = f"vector field {name!r} is not in the index schema (call setup first)"
                break
            arr = vec if type(vec) is np.ndarray else np.asarray(vec)
            if arr.shape != (spec.dims,):
                problems[i] = f"vector {name!r} has shape {arr.shape}, the index expects ({spec.dims},)"
                break
            slots, arrays = gathered.setdefault(name, ([], []))
            slots.append(i)
            arrays.append(arr)
    by_field: dict[str, tuple[list[int], np.ndarray]] = {}
    for name, (slots, arrays) in gathered.items():
        matrix = np.asarray(arrays, dtype=np.float32)
        by_field[name] = (slots, matrix)
        nonfinite = np.asarray(~np.isfinite(matrix).all(axis=1))
        zero = np.asarray(~matrix.any(axis=1))
        for j in np.flatnonzero(nonfinite | zero).tolist():
            if slots[j] not in problems:
                why = "holds NaN or infinity" if nonfinite[j] else "is all zeros (cosine is undefined)"
                problems[slots[j]] = f"vector {name!r} {why}"
    return problems, by_field


def prepare(docs: Sequence[Document], schema: IndexSchema) -> PreparedBatch:
    """Validate ``docs`` and build their rows (no I/O)."""
    problems, by_field = vector_problems(docs, schema)
    batch = PreparedBatch()
    latest: dict[str, int] = {}  # id -> position of its last valid document (first-seen order)
    for i, doc in enumerate(docs):
        if i in problems:
            batch.errors[doc.product.id] = problems[i]
            continue
        latest[doc.product.id] = i
        batch.written += 1
    slot_of = np.full(len(docs), -1, dtype=np.int64)
    # A catalogue repeats few distinct paths: each is formatted, split into nodes and encoded
    # once per batch. The extra JSON is put together from encoded parts (the bytes
    # ``_dumps({"categories": ..., "attributes": ..., "images": ...})`` gives; one encoder call
    # per product costs ~2.5 us, most of it the call itself).
    paths: dict[tuple[str, ...], tuple[str, tuple[str, ...], str]] = {}
    for slot, (pid, i) in enumerate(latest.items()):
        slot_of[i] = slot
        p = docs[i].product
        image = docs[i].image
        texts: list[str] = []
        encoded: list[str] = []
        nodes: set[str] = set()
        for path in p.categories:
            key = path if type(path) is tuple else tuple(path)
            known = paths.get(key)
            if known is None:
                known = paths[key] = (format_category_path(key),
                                      tuple(NODE_SEP.join(key[:d]) for d in range(1, len(key) + 1)), _dumps(key))
            texts.append(known[0])
            encoded.append(known[2])
            nodes.update(known[1])
        attrs = _dumps(p.attributes if type(p.attributes) is dict else dict(p.attributes)) if p.attributes else "{}"
        images = _dumps(p.images) if p.images else "[]"
        extra = '{"categories":[' + ",".join(encoded) + '],"attributes":' + attrs + ',"images":' + images + "}"
        batch.ids.append(pid)
        batch.rows.append((pid, p.title, "\n".join(texts), p.attribute_text, p.description,
                           extra, image, p.market, int(image is not None)))
        batch.nodes.append(nodes)
    for name, (positions, matrix) in by_field.items():
        slots = slot_of[np.asarray(positions, dtype=np.int64)]
        keep = slots >= 0  # dropped: invalid documents and earlier duplicates
        if keep.any():
            batch.vectors[name] = (slots[keep], np.ascontiguousarray(matrix[keep]))
    return batch


def write(conn: sqlite3.Connection, batch: PreparedBatch) -> None:
    """Write ``batch`` inside the caller's open transaction."""
    if not batch.ids:
        return
    found = conn.execute(
        "SELECT j.key, p.rowid FROM json_each(?) j JOIN products p ON p.id = j.value", (_dumps(batch.ids),)
    ).fetchall()
    rowids = np.zeros(len(batch.ids), dtype=np.int64)
    existing = np.zeros(len(batch.ids), dtype=bool)
    for slot, rowid in found:
        rowids[slot], existing[slot] = rowid, True
    (top,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM products").fetchone()
    new_slots = np.flatnonzero(~existing)
    rowids[new_slots] = np.arange(top + 1, top + 1 + len(new_slots), dtype=np.int64)
    old = [int(r) for r in rowids[existing]]
    if old:
        conn.executemany(
            "UPDATE products SET title = ?, categories = ?, attributes = ?, description = ?, extra = ?, image = ?, "
            "market = ?, has_image = ? WHERE rowid = ?",
            [(*batch.rows[s][1:], int(rowids[s])) for s in np.flatnonzero(existing).tolist()],
        )
        conn.executemany("DELETE FROM category_nodes WHERE product = ?", [(r,) for r in old])
        conn.executemany("DELETE FROM vectors WHERE product = ?", [(r,) for r in old])
    if len(new_slots):
        _insert_products(conn, batch, new_slots.tolist(), int(top) + 1, int(top) + len(new_slots))
    products_of: dict[str, list[int]] = {}
    for rowid, nodes in zip(rowids.tolist(), batch.nodes, strict=True):
        for node in nodes:
            products_of.setdefault(node, []).append(rowid)
    conn.executemany(
        "INSERT INTO category_nodes (node, product) SELECT ?, value FROM json_each(?)",
        [(node, _dumps(sorted(products_of[node]))) for node in sorted(products_of)],
    )
    for name, (slots, matrix) in batch.vectors.items():
        width = matrix.shape[1] * 4
        conn.execute(
            f"INSERT INTO vectors (field, product, vec) SELECT ?, j.value, substr(?, j.key * {width} + 1, {width}) "
            "FROM json_each(?) j",
            (name, matrix.tobytes(), json.dumps(rowids[slots].tolist())),
        )


def _insert_products(conn: sqlite3.Connection, batch: PreparedBatch, slots: list[int], first: int, last: int) -> None:
    # No rowid is bound: a rowid table gives each new row max(rowid) + 1, which is first..last in
    # slot order (checked below), so the rows of a batch of new products go in as prepared.
    rows = batch.rows if len(slots) == len(batch.rows) else [batch.rows[s] for s in slots]
    triggers: list[tuple[str, str]] = []
    if len(rows) >= BULK_TRIGGER_MIN:
        marks = ",".join("?" * len(_BULK_TRIGGERS))
        triggers = conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", list(_BULK_TRIGGERS)
        ).fetchall()
        for name, _sql in triggers:
            conn.execute(f"DROP TRIGGER {name}")
    conn.executemany(
        "INSERT INTO products (id, title, categories, attributes, description, extra, image, market, has_image) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    (top,) = conn.execute("SELECT max(rowid) FROM products").fetchone()
    if top != last:  # cannot happen in a rowid table without AUTOINCREMENT; never write past it
        raise sqlite3.DatabaseError(f"products: new rows ended at rowid {top}, expected {last}")
    for name, sql in triggers:
        conn.execute(_BULK_TRIGGERS[name], (first, last))
        conn.execute(sql)
