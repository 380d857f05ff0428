"""Writing one batch of documents into the embedded store's SQLite tables, in bulk.

A batch is validated and turned into rows first (``prepare``: no I/O, vectors checked as one
matrix per field), then written inside the caller's transaction (``TransactionWriter``) with a handful of
set-based statements instead of a dozen statements per product:

- products: existing ids are found with one query and updated in place (same rowid, so the
  lexical triggers see an update); new ids are inserted with one ``executemany`` of the rows as
  prepared, and SQLite numbers them after the current maximum rowid (checked);
- the per-row lexical triggers (FTS5's ``products_ai``, tantivy's ``lexical_log_ai``) cost far
  more per row than the same work done once per batch (about 38 us against 3 us per product
  for FTS5), so for a batch of many new rows they are dropped and re-created inside the same
  transaction (before its COMMIT), and their work is done by one ``INSERT ... SELECT`` over the
  new rowid range. DDL is
  transactional in SQLite: a crash rolls the batch back with the triggers in place, and other
  connections never see the store without them;
- category postings (store format 2): one row per (node, block) holding the block's ascending
  product rowids as a JSON array (SQL expands it with ``json_each``), so a batch writes one row
  per distinct node instead of one per (product, node) - format 1's ``category_nodes`` table
  rewrote a leaf page of every node's key range on each batch. A node's blocks split its rowids
  into ranges: the block keyed ``lo`` holds those from ``lo`` up to the next block's ``lo``, so
  the block holding any rowid is found from the keys alone. New products (rowids above every
  block) are appended to the node's last block while it is small (a one-product write rewrites
  at most ``SMALL_BLOCK`` rowids per node), else start a new block; an update or delete removes
  the product from the blocks of its old nodes, read from its stored row;
- vectors (store format 4): the batch's matrix of each field appended to the field's file
  beside the store (``store/vector_file.py``: written and fdatasynced by a thread while SQLite
  writes the rest of the batch, joined by ``sync`` before the COMMIT), and one ``INSERT ... SELECT`` per
  field of the (product, field, slot) rows that point to them;
- typed values (store format 3): the product's ``values`` go into ``extra`` (read back exactly)
  and one ``product_values`` row each (``value_rows``), the rows an update replaces.

The meaning is the old row-by-row upsert's: a later duplicate id in a batch wins, a product
with a bad vector is reported by id and not written, an update replaces the product's
categories and vectors (a field absent from the update is removed).
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..products import format_category_path
from ..schema import Document, IndexSchema
from ..values import Value
from . import vector_file

NODE_SEP = "\x1f"  # the embedded store's category node separator (never inside a name)
BULK_TRIGGER_MIN = 64  # fewer new rows than this: the per-row triggers are cheaper than DDL
BLOCK_MAX = 2048  # rowids per postings block at most (~16 KB of JSON at 7-digit rowids)
SMALL_BLOCK = 128  # a node's last block holding fewer rowids than this takes new ones in place
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept. orjson takes ~0.3 us for a product's attributes where the
    standard library's encoder takes ~2 us, mostly the call itself; what orjson refuses (keys
    that are not strings, lone surrogates) goes the standard library's way."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _json_dumps(value)


# Per-row insert triggers and the one statement that does their work for a range of new rowids.
_BULK_TRIGGERS = {
    "products_ai": (
        "INSERT INTO products_fts(rowid, title, categories, attributes, description) "
        "SELECT rowid, title, categories, attributes, description FROM products WHERE rowid BETWEEN ? AND ?"
    ),
    "lexical_log_ai": "INSERT INTO lexical_log(product) SELECT rowid FROM products WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
    # embedded/approximate.py's LOG_DDL: a new rowid at or below the highest one its log holds is
    # logged. The log's maximum does not move during this statement (it adds only rowids below it).
    "vector_log_ai": "INSERT INTO vector_log(product) SELECT rowid FROM products WHERE rowid BETWEEN ? AND ? "
                     "AND rowid <= (SELECT max(product) FROM vector_log) ORDER BY rowid",
}


@dataclass
class PreparedBatch:
    """The rows of one batch, ready to write: one entry per distinct valid product id."""

    ids: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # products columns from id on (no rowid)
    nodes: list[frozenset[str]] = field(default_factory=list)  # category node keys per product
    values: list[list[tuple[str, str | None, str | None, float | None]]] = field(default_factory=list)
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
        matrix = np.concatenate(arrays).reshape(len(arrays), -1).astype(np.float32, copy=False)
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
    slot_of = [-1] * len(docs)
    # A catalogue repeats few distinct category lists: each is formatted, split into nodes and
    # encoded once per batch. The extra JSON is put together from encoded parts (the bytes
    # ``_dumps({"categories": ..., "attributes": ..., "images": ...})`` gives).
    combos: dict[Any, tuple[str, str, frozenset[str]]] = {}
    ids, rows, nodes, values = batch.ids, batch.rows, batch.nodes, batch.values
    for slot, (pid, i) in enumerate(latest.items()):
        slot_of[i] = slot
        doc = docs[i]
        p, image = doc.product, doc.image
        try:
            text, encoded, held = combos[p.categories]
        except KeyError:
            text, encoded, held = combos[p.categories] = _categories(p.categories)
        except TypeError:  # unhashable (lists): not remembered
            text, encoded, held = _categories(p.categories)
        attrs = _dumps(p.attributes if type(p.attributes) is dict else dict(p.attributes)) if p.attributes else "{}"
        images = _dumps(p.images) if p.images else "[]"
        typed = _dumps(p.values if type(p.values) is dict else dict(p.values)) if p.values else ""
        extra = ('{"categories":[' + encoded + '],"attributes":' + attrs + ',"images":' + images
                 + (',"values":' + typed + "}" if typed else "}"))
        ids.append(pid)
        rows.append((pid, p.title, text, p.attribute_text, p.description, extra, image, p.market,
                     int(image is not None)))
        nodes.append(held)
        values.append(value_rows(p.values) if p.values else [])
    where = np.asarray(slot_of, dtype=np.int64)
    for name, (positions, matrix) in by_field.items():
        slots = where[np.asarray(positions, dtype=np.int64)]
        keep = slots >= 0  # dropped: invalid documents and earlier duplicates
        if keep.all():
            batch.vectors[name] = (slots, matrix)
        elif keep.any():
            batch.vectors[name] = (slots[keep], np.ascontiguousarray(matrix[keep]))
    return batch


def _categories(paths: Iterable[Sequence[str]]) -> tuple[str, str, frozenset[str]]:
    """A product's category paths as its row has them: the BM25 text ("A > B", one per line),
    the JSON arrays (comma-joined, without the outer brackets) and the node keys."""
    keys = [path if type(path) is tuple else tuple(path) for path in paths]
    return ("\n".join(format_category_path(key) for key in keys), ",".join(_dumps(key) for key in keys),
            frozenset(NODE_SEP.join(key[:d]) for key in keys for d in range(1, len(key) + 1)))


def fold_keyword(text: str) -> str:
    """A keyword as it is matched and grouped: lower case (``str.lower``, what Elasticsearch's
    ``lowercase`` normaliser does too), so ``Sony`` and ``SONY`` are one value."""
    return text.lower()


def value_rows(values: Mapping[str, Value]) -> list[tuple[str, str | None, str | None, float | None]]:
    """A product's typed values as ``product_values`` rows without the product: (name, kw, label,
    num). A keyword is ``kw`` folded, ``label`` as written when that differs; a number is ``num``;
    a boolean is ``num`` 1 / 0 (so ``eq true`` and facets need no third column)."""
    out: list[tuple[str, str | None, str | None, float | None]] = []
    for name, value in values.items():
        if isinstance(value, bool):
            out.append((name, None, None, 1.0 if value else 0.0))
        elif isinstance(value, (int, float)):
            out.append((name, None, None, float(value)))
        else:
            text = str(value)
            kw = fold_keyword(text)
            out.append((name, kw, text if text != kw else None, None))
    return out


def category_nodes(paths: Iterable[Sequence[str]]) -> set[str]:
    """Every ancestor prefix of every path, as node keys (the names joined with ``NODE_SEP``)."""
    return {NODE_SEP.join(path[:d]) for path in paths for d in range(1, len(path) + 1)}


def stored_nodes(extra: str) -> set[str]:
    """The category nodes of a stored product, from its ``extra`` JSON."""
    return category_nodes(json.loads(extra).get("categories", []))


@dataclass
class NodeChanges:
    """The category postings changes of a transaction, applied once at its end: a rowid added
    then removed (or removed then added back) in one transaction is no change."""

    adds: dict[str, set[int]] = field(default_factory=dict)
    removes: dict[str, set[int]] = field(default_factory=dict)

    def add(self, node: str, rowid: int) -> None:
        _record(node, rowid, into=self.adds, cancels=self.removes)

    def add_all(self, grouped: dict[str, list[int]]) -> None:
        """``add`` for every (node, rowids) pair, a set update where no removal is pending."""
        for node, rowids in grouped.items():
            if self.removes.get(node):
                for rowid in rowids:
                    self.add(node, rowid)
            else:
                self.adds.setdefault(node, set()).update(rowids)

    def remove(self, node: str, rowid: int) -> None:
        _record(node, rowid, into=self.removes, cancels=self.adds)


def _record(node: str, rowid: int, *, into: dict[str, set[int]], cancels: dict[str, set[int]]) -> None:
    """One posting change of ``NodeChanges``: it cancels the opposite change still pending for
    the same (node, rowid), else it is recorded ``into`` its own kind."""
    pending = cancels.get(node)
    if pending is not None and rowid in pending:
        pending.discard(rowid)
    else:
        into.setdefault(node, set()).add(rowid)


class TransactionWriter:
    """Writes prepared batches inside the caller's open transaction; ``finish`` before the
    COMMIT applies their category changes and puts back the per-row insert triggers (dropped
    once, by the first batch with many new rows)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.changes = NodeChanges()
        self.dropped: list[tuple[str, str]] | None = None  # (name, sql) of the triggers taken out
        self.appends = vector_file.Appends(conn)  # the vectors' file writes, joined by finish()

    def write(self, batch: PreparedBatch) -> np.ndarray:
        """Write one batch; returns the rowid of each of its products."""
        return write(self.conn, batch, self)

    def drop_triggers(self) -> list[tuple[str, str]]:
        if self.dropped is None:
            marks = ",".join("?" * len(_BULK_TRIGGERS))
            self.dropped = self.conn.execute(
                f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", list(_BULK_TRIGGERS)
            ).fetchall()
            for name, _sql in self.dropped:
                self.conn.execute(f"DROP TRIGGER {name}")
        return self.dropped

    def finish(self) -> None:
        """After the batches: their category postings, and the triggers put back."""
        update_postings(self.conn, self.changes)
        for _name, sql in self.dropped or ():
            self.conn.execute(sql)
        self.dropped = None

    def sync(self) -> None:
        """Last thing before the COMMIT, and on the way out of a failed transaction too (no
        append may outlive its transaction): join the vector appends, their bytes on disk; an
        error raises, and the caller's transaction rolls back."""
        self.appends.wait()


def write(conn: sqlite3.Connection, batch: PreparedBatch, owner: TransactionWriter) -> np.ndarray:
    """Write ``batch`` inside ``owner``'s transaction, its category changes into ``owner.changes``."""
    changes = owner.changes
    rowids = np.zeros(len(batch.ids), dtype=np.int64)
    if not batch.ids:
        return rowids
    # the vectors first: their file writes and sync (a thread) overlap all the SQL below
    first_slots: dict[str, int] = {}
    for name, (_slots, matrix) in batch.vectors.items():
        ff, first = owner.appends.reserve(name, matrix.shape[1], matrix.shape[0])
        owner.appends.append(ff, first, matrix)
        first_slots[name] = first
    found = conn.execute(
        "SELECT j.key, p.rowid, p.extra FROM json_each(?) j JOIN products p ON p.id = j.value", (_dumps(batch.ids),)
    ).fetchall()
    existing = np.zeros(len(batch.ids), dtype=bool)
    old_nodes: dict[int, set[str]] = {}
    for slot, rowid, extra in found:
        rowids[slot], existing[slot] = rowid, True
        old_nodes[slot] = stored_nodes(extra)
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
        conn.executemany("DELETE FROM vectors WHERE product = ?", [(r,) for r in old])
        conn.executemany("DELETE FROM product_values WHERE product = ?", [(r,) for r in old])
    if len(new_slots):
        _insert_products(conn, batch, new_slots.tolist(), int(top) + 1, int(top) + len(new_slots), owner)
    grouped: dict[str, list[int]] = {}
    for slot, (rowid, nodes) in enumerate(zip(rowids.tolist(), batch.nodes, strict=True)):
        before = old_nodes.get(slot)
        if before is not None:  # an update changes only the nodes it gains or loses
            for node in before - nodes:
                changes.remove(node, rowid)
            nodes = nodes - before
        for node in nodes:
            grouped.setdefault(node, []).append(rowid)
    changes.add_all(grouped)
    typed = [(rowid, *row) for rowid, rows in zip(rowids.tolist(), batch.values, strict=True) for row in rows]
    if typed:
        conn.executemany("INSERT INTO product_values (product, name, kw, label, num) VALUES (?, ?, ?, ?, ?)",
                         typed)
    for name, (slots, _matrix) in batch.vectors.items():
        conn.execute("INSERT INTO vectors (product, field, slot) SELECT j.value, ?, ? + j.key FROM json_each(?) j",
                     (name, first_slots[name], _dumps(rowids[slots].tolist())))
    return rowids


def replace_field_vectors(conn: sqlite3.Connection, field: str, ids: Sequence[str], matrix: np.ndarray) -> int:
    """Inside the caller's transaction: set ``field``'s vector of the stored products among
    ``ids`` (row ``i`` of the float32 ``matrix`` is ``ids[i]``'s), replacing the one they hold;
    ids not stored are skipped. One query finds the rowids; the vectors are appended to the
    field's file (synced before this returns) and one ``INSERT OR REPLACE ... SELECT`` points the
    rows to them (as ``write`` does). Returns how many were written."""
    if not len(ids):
        return 0
    found = conn.execute(
        "SELECT j.key, p.rowid FROM json_each(?) j JOIN products p ON p.id = j.value", (_dumps(list(ids)),)
    ).fetchall()
    if not found:
        return 0
    slots = np.fromiter((slot for slot, _ in found), dtype=np.int64, count=len(found))
    rowids = [rowid for _, rowid in found]
    part = np.ascontiguousarray(matrix[slots], dtype=np.float32)  # in the order of ``rowids``
    appends = vector_file.Appends(conn)
    ff, first = appends.reserve(field, part.shape[1], part.shape[0])
    appends.append(ff, first, part, wait=True)
    conn.execute("INSERT OR REPLACE INTO vectors (product, field, slot) SELECT j.value, ?, ? + j.key FROM json_each(?) j",
                 (field, first, _dumps(rowids)))
    return len(found)


def lexical_rows(batch: PreparedBatch, rowids: np.ndarray) -> list[tuple[Any, ...]]:
    """The batch as the tantivy engine indexes it: (rowid, id, title, categories, attributes,
    description, market, has_image, nodes), the columns its catch-up would read back from SQLite."""
    return [(rowid, pid, title, cats, attrs, desc, market, has_image, nodes)
            for rowid, (pid, title, cats, attrs, desc, _extra, _image, market, has_image), nodes
            in zip(rowids.tolist(), batch.rows, batch.nodes, strict=True)]


# -- category postings -----------------------------------------------------------------------


def postings_blocks(node: str, rowids: list[int], first_lo: int | None = None) -> list[tuple[str, int, int, int, str]]:
    """``rowids`` (ascending) as postings rows of at most BLOCK_MAX: (node, lo, hi, n, products).
    The first block is keyed ``first_lo`` when given (a rewritten block keeps its range)."""
    out = []
    for start in range(0, len(rowids), BLOCK_MAX):
        part = rowids[start : start + BLOCK_MAX]
        lo = first_lo if start == 0 and first_lo is not None else part[0]
        out.append((node, lo, part[-1], len(part), _dumps(part)))
    return out


def insert_postings(conn: sqlite3.Connection, rows: list[tuple[str, int, int, int, str]]) -> None:
    conn.executemany("INSERT INTO category_postings (node, lo, hi, n, products) VALUES (?, ?, ?, ?, ?)", rows)


def update_postings(conn: sqlite3.Connection, changes: NodeChanges) -> None:
    """Add and remove product rowids in the nodes' postings blocks (inside the caller's transaction)."""
    adds = {node: rowids for node, rowids in changes.adds.items() if rowids}
    removes = {node: rowids for node, rowids in changes.removes.items() if rowids}
    if not adds and not removes:
        return
    nodes = sorted(set(adds) | set(removes))
    last = {node: (key, lo, hi, n) for node, key, lo, hi, n in conn.execute(
        "SELECT j.value, c.rowid, c.lo, c.hi, c.n FROM json_each(?) j JOIN category_postings c ON c.rowid = "
        "(SELECT rowid FROM category_postings WHERE node = j.value ORDER BY lo DESC LIMIT 1)", (_dumps(nodes),))}
    new_rows: list[tuple[str, int, int, int, str]] = []
    appends: list[tuple[int, int, str, int]] = []  # (hi, count, JSON array, block rowid) for small last blocks
    for node in nodes:
        added = sorted(adds.get(node, ()))
        block = last.get(node)
        if block is None and not removes.get(node):
            new_rows += postings_blocks(node, added)
        elif block is not None and not removes.get(node) and added[0] > block[2]:  # all after the last block
            key, _lo, _hi, n = block
            if n < SMALL_BLOCK:  # appended in SQL, without reading the block: the rest starts new ones
                head, added = added[: BLOCK_MAX - n], added[BLOCK_MAX - n :]
                appends.append((head[-1], len(head), _dumps(head), key))
            new_rows += postings_blocks(node, added)
        else:  # an update or delete, or rowids inside the node's ranges: the general path
            _rewrite_node(conn, node, added, removes.get(node, set()))
    # "[1,2]" + [3,4] -> "[1,2,3,4]": the rowids appended are above every rowid of the block
    conn.executemany("UPDATE category_postings SET hi = ?, n = n + ?, "
                     "products = substr(products, 1, length(products) - 1) || ',' || substr(?, 2) WHERE rowid = ?",
                     appends)
    insert_postings(conn, new_rows)


def _rewrite_node(conn: sqlite3.Connection, node: str, added: list[int], removed: set[int]) -> None:
    """Rewrite the blocks of ``node`` whose ranges hold the rowids added or removed."""
    keys = conn.execute("SELECT lo, rowid FROM category_postings WHERE node = ? ORDER BY lo", (node,)).fetchall()
    if not keys:
        insert_postings(conn, postings_blocks(node, added))
        return
    los = [lo for lo, _ in keys]
    touched: dict[int, tuple[list[int], set[int]]] = {}
    for rowids, side in ((added, 0), (sorted(removed), 1)):
        for r in rowids:
            i = max(bisect.bisect_right(los, r) - 1, 0)  # below the first range: the first block
            entry = touched.setdefault(i, ([], set()))
            entry[0].append(r) if side == 0 else entry[1].add(r)
    for i, (more, less) in sorted(touched.items()):
        lo, key = keys[i]
        (held,) = conn.execute("SELECT products FROM category_postings WHERE rowid = ?", (key,)).fetchone()
        rowids = sorted((set(json.loads(held)) - less) | set(more))
        if not rowids:
            conn.execute("DELETE FROM category_postings WHERE rowid = ?", (key,))
            continue
        first, *rest = postings_blocks(node, rowids, min(lo, rowids[0]))
        conn.execute("UPDATE category_postings SET lo = ?, hi = ?, n = ?, products = ? WHERE rowid = ?",
                     (*first[1:], key))
        insert_postings(conn, rest)


def remove_products(conn: sqlite3.Connection, stored: Iterable[tuple[int, str]]) -> None:
    """Take deleted products, given as (rowid, extra JSON) of their stored rows, out of the postings."""
    changes = NodeChanges()
    for rowid, extra in stored:
        for node in stored_nodes(extra):
            changes.remove(node, rowid)
    update_postings(conn, changes)


def _insert_products(conn: sqlite3.Connection, batch: PreparedBatch, slots: list[int], first: int, last: int,
                     owner: TransactionWriter) -> None:
    # No rowid is bound: a rowid table gives each new row max(rowid) + 1, which is first..last in
    # slot order (checked below), so the rows of a batch of new products go in as prepared.
    rows = batch.rows if len(slots) == len(batch.rows) else [batch.rows[s] for s in slots]
    triggers: list[tuple[str, str]] = []
    if owner.dropped is not None or len(rows) >= BULK_TRIGGER_MIN:
        triggers = owner.drop_triggers()  # once per transaction; put back by owner.finish()
    conn.executemany(
        "INSERT INTO products (id, title, categories, attributes, description, extra, image, market, has_image) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    (top,) = conn.execute("SELECT max(rowid) FROM products").fetchone()
    if top != last:  # cannot happen in a rowid table without AUTOINCREMENT; never write past it
        raise sqlite3.DatabaseError(f"products: new rows ended at rowid {top}, expected {last}")
    for name, _sql in triggers:
        conn.execute(_BULK_TRIGGERS[name], (first, last))
