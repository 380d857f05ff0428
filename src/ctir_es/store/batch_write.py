"""Writing one batch of documents into the embedded store's SQLite tables, in bulk.

A batch is validated and turned into rows first (``prepare``: no I/O, vectors checked as one
matrix per field), then written inside the caller's transaction (``TransactionWriter``) with a handful of
set-based statements instead of a dozen statements per product:

- products: existing ids are found with one query and updated in place (same rowid, so the
  lexical triggers see an update); new ids are inserted in multi-row INSERTs of the columns as
  prepared (``_insert_many``), and SQLite numbers them after the current maximum rowid (checked);
  a missing image or market is a NULL literal in the SQL, never a bound None (``_product_rows``);
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
    """The rows of one batch, ready to write: one entry per distinct valid product id, column by
    column (``products``' columns from id on, without rowid; zip them into rows in C)."""

    ids: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # BM25 text: one "A > B" per line
    attributes: list[str] = field(default_factory=list)  # BM25 text: "Name: value ; ..."
    descriptions: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)  # JSON read back by ``get``
    images: list[str | None] = field(default_factory=list)
    markets: list[str | None] = field(default_factory=list)
    nodes: list[frozenset[str]] = field(default_factory=list)  # category node keys per product
    values: list[Sequence[tuple[str, str | None, str | None, float | None]]] = field(default_factory=list)
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # field -> (row slots, matrix)
    written: int = 0  # valid documents (a duplicate id counts each time, as row-by-row did)
    errors: dict[str, str] = field(default_factory=dict)


def vector_problems(docs: Sequence[Document], schema: IndexSchema) -> tuple[dict[int, str], dict[str, tuple[list[int], np.ndarray]]]:
    """Problems by document position, and the well-shaped vectors by field (positions, float32 matrix)."""
    fast = _stacked(docs, schema)
    if fast is not None:
        return _finite(fast, {})
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
    by_field = {name: (slots, np.concatenate(arrays).reshape(len(arrays), -1).astype(np.float32, copy=False))
                for name, (slots, arrays) in gathered.items()}
    return _finite(by_field, problems)


def _stacked(docs: Sequence[Document], schema: IndexSchema) -> dict[str, tuple[list[int], np.ndarray]] | None:
    """The vectors by field when every one is of a schema field and of its shape (the usual
    batch), checked per matrix rather than per vector; None sends the batch the slow way, which
    names each problem."""
    held = [doc.vectors for doc in docs]
    expected = sum([len(vectors) for vectors in held])
    out: dict[str, tuple[list[int], np.ndarray]] = {}
    found = 0
    for name, spec in schema.vectors.items():
        column = [vectors.get(name) for vectors in held]
        positions = [i for i, vec in enumerate(column) if vec is not None]
        if not positions:
            continue
        if len(positions) < len(column):
            column = [column[i] for i in positions]
        try:
            # one copy into a new matrix (np.stack takes twice as long: a view per vector)
            matrix = np.array(column).astype(np.float32, copy=False)
        except (ValueError, TypeError):
            return None
        if matrix.shape != (len(positions), spec.dims):
            return None
        out[name] = (positions, matrix)
        found += len(positions)
    return out if found == expected else None  # else a vector of a field the schema lacks


def _finite(by_field: dict[str, tuple[list[int], np.ndarray]], problems: dict[int, str]
            ) -> tuple[dict[int, str], dict[str, tuple[list[int], np.ndarray]]]:
    """Add the vectors holding NaN, infinity or only zeros to ``problems``."""
    for name, (slots, matrix) in by_field.items():
        nonfinite = np.asarray(~np.isfinite(matrix).all(axis=1))
        zero = np.asarray(~matrix.any(axis=1))
        for j in np.flatnonzero(nonfinite | zero).tolist():
            if slots[j] not in problems:
                why = "holds NaN or infinity" if nonfinite[j] else "is all zeros (cosine is undefined)"
                problems[slots[j]] = f"vector {name!r} {why}"
    return problems, by_field


# category lists (tuples, as Product holds them) -> (BM25 text, JSON arrays, node keys)
_COMBOS: dict[Any, tuple[str, str, frozenset[str]]] = {}
COMBOS_MAX = 16384  # distinct lists remembered at most (a few MB), then forgotten at once
_NO_VALUES: tuple[tuple[str, str | None, str | None, float | None], ...] = ()


def prepare(docs: Sequence[Document], schema: IndexSchema) -> PreparedBatch:
    """Validate ``docs`` and build their rows (no I/O). Column by column, with what a product
    costs per row kept to what varies: ~1 us of Python per product here is 10% of an ingest."""
    problems, by_field = vector_problems(docs, schema)
    batch = PreparedBatch()
    if problems:
        for i in sorted(problems):  # a later document of the same id has the last word
            batch.errors[docs[i].product.id] = problems[i]
        kept = [(i, doc) for i, doc in enumerate(docs) if i not in problems]
    else:
        kept = list(enumerate(docs))
    batch.written = len(kept)
    # id -> position of its last valid document, in first-seen order
    latest = {doc.product.id: i for i, doc in kept}
    order = list(latest.values())
    chosen = docs if len(order) == len(docs) else [docs[i] for i in order]
    products = [doc.product for doc in chosen]
    batch.ids = list(latest)
    batch.titles = [p.title for p in products]
    batch.descriptions = [p.description for p in products]
    batch.images = [doc.image for doc in chosen]
    batch.markets = [p.market for p in products]
    # A catalogue repeats few distinct category lists: each is formatted, split into nodes and
    # encoded once per process (a batch of 5,000 synthetic products holds ~640: 0.4 us a product
    # when done per batch). The extra JSON is put together from encoded parts (the bytes
    # ``_dumps({"categories": ..., "attributes": ..., "images": ...})`` gives).
    combos = _COMBOS
    if len(combos) > COMBOS_MAX:
        combos.clear()
    cats, attrs, extras, nodes, values = batch.categories, batch.attributes, batch.extras, batch.nodes, batch.values
    for p in products:
        try:
            text, encoded, held = combos[p.categories]
        except KeyError:
            text, encoded, held = combos[p.categories] = _categories(p.categories)
        except TypeError:  # unhashable (lists): not remembered
            text, encoded, held = _categories(p.categories)
        cats.append(text)
        nodes.append(held)
        if p.attributes:
            attrs.append(p.attribute_text)
            attributes = _dumps(p.attributes if type(p.attributes) is dict else dict(p.attributes))
        else:
            attrs.append("")
            attributes = "{}"
        images = _dumps(p.images) if p.images else "[]"
        if p.values:
            extras.append(f'{{"categories":[{encoded}],"attributes":{attributes},"images":{images},"values":'
                          f'{_dumps(p.values if type(p.values) is dict else dict(p.values))}}}')
            values.append(value_rows(p.values))
        else:
            extras.append(f'{{"categories":[{encoded}],"attributes":{attributes},"images":{images}}}')
            values.append(_NO_VALUES)
    slot_of = np.full(len(docs), -1, dtype=np.int64)
    slot_of[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int64)
    for name, (positions, matrix) in by_field.items():
        slots = slot_of[np.asarray(positions, dtype=np.int64)]
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
        _product_rows(conn, batch, np.flatnonzero(existing).tolist(), rowids, update=True)
        conn.executemany("DELETE FROM vectors WHERE product = ?", [(r,) for r in old])
        conn.executemany("DELETE FROM product_values WHERE product = ?", [(r,) for r in old])
    if len(new_slots):
        _insert_products(conn, batch, new_slots.tolist(), rowids, owner)
    grouped: dict[str, list[int]] = {}
    fresh: dict[frozenset[str], list[int]] = {}  # new products by node set: a batch repeats few
    for slot, (rowid, nodes) in enumerate(zip(rowids.tolist(), batch.nodes, strict=True)):
        before = old_nodes.get(slot)
        if before is None:
            fresh.setdefault(nodes, []).append(rowid)
            continue
        for node in before - nodes:  # an update changes only the nodes it gains or loses
            changes.remove(node, rowid)
        for node in nodes - before:
            grouped.setdefault(node, []).append(rowid)
    for nodes, members in fresh.items():
        for node in nodes:
            grouped.setdefault(node, []).extend(members)
    changes.add_all(grouped)
    _insert_values(conn, rowids, batch.values)
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
    return list(zip(rowids.tolist(), batch.ids, batch.titles, batch.categories, batch.attributes, batch.descriptions,
                    batch.markets, [int(image is not None) for image in batch.images], batch.nodes, strict=True))


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


def _insert_products(conn: sqlite3.Connection, batch: PreparedBatch, slots: list[int], rowids: np.ndarray,
                     owner: TransactionWriter) -> None:
    first, last = int(rowids[slots[0]]), int(rowids[slots[-1]])  # consecutive, from max(rowid) + 1
    triggers: list[tuple[str, str]] = []
    if owner.dropped is not None or len(slots) >= BULK_TRIGGER_MIN:
        triggers = owner.drop_triggers()  # once per transaction; put back by owner.finish()
    _product_rows(conn, batch, slots, rowids, update=False)
    (top,) = conn.execute("SELECT max(rowid) FROM products").fetchone()
    if top != last:  # cannot happen in a rowid table without AUTOINCREMENT; never write past it
        raise sqlite3.DatabaseError(f"products: new rows ended at rowid {top}, expected {last}")
    for name, _sql in triggers:
        conn.execute(_BULK_TRIGGERS[name], (first, last))


def _product_rows(conn: sqlite3.Connection, batch: PreparedBatch, slots: list[int], rowids: np.ndarray, *,
                  update: bool) -> None:
    """Insert or update the products of ``slots``, image and market written as NULL literals
    where they are None: Python's sqlite3 binds None through its adapter lookup (two failed
    attribute lookups, ~0.35 us a value), a third of the cost of a product's row. Rows of one
    pattern (the usual batch) are inserted in slot order without a rowid: the table numbers
    them from max(rowid) + 1, its cheapest append. Mixed patterns name their rowids."""
    every = len(slots) == len(batch.ids)
    cols: list[list[Any]] = [batch.ids, batch.titles, batch.categories, batch.attributes, batch.descriptions,
                             batch.extras, batch.images, batch.markets]
    if not every:
        cols = [[col[s] for s in slots] for col in cols]
    images, markets = cols[6], cols[7]
    no_image, no_market = images.count(None), markets.count(None)
    numbered = update or no_image not in (0, len(slots)) or no_market not in (0, len(slots))
    keys = rowids[slots].tolist() if numbered else []
    if not numbered:
        patterns = [(no_image > 0, no_market > 0, list(range(len(slots))))]
    else:
        split: dict[tuple[bool, bool], list[int]] = {}
        for j, (image, market) in enumerate(zip(images, markets, strict=True)):
            split.setdefault((image is None, market is None), []).append(j)
        patterns = [(a, b, js) for (a, b), js in split.items()]
    for image_null, market_null, js in patterns:
        picked = cols[:6] + ([] if image_null else [images]) + ([] if market_null else [markets])
        if len(js) != len(slots):
            picked = [[col[j] for j in js] for col in picked]
        image_sql, market_sql = ("NULL" if image_null else "?"), ("NULL" if market_null else "?")
        has_image = "0" if image_null else "1"
        numbers = ([keys[j] for j in js] if len(js) != len(slots) else keys) if numbered else []
        if update:
            conn.executemany(f"UPDATE products SET title = ?, categories = ?, attributes = ?, description = ?, extra = ?, "
                             f"image = {image_sql}, market = {market_sql}, has_image = {has_image} WHERE rowid = ?",
                             zip(*picked[1:], numbers, strict=True))
        elif numbered:
            _insert_many(conn, "products (rowid, id, title, categories, attributes, description, extra, image, market, "
                         "has_image)", f"(?, ?, ?, ?, ?, ?, ?, {image_sql}, {market_sql}, {has_image})", [numbers, *picked])
        else:
            _insert_many(conn, "products (id, title, categories, attributes, description, extra, image, market, has_image)",
                         f"(?, ?, ?, ?, ?, ?, {image_sql}, {market_sql}, {has_image})", picked)


MULTI_ROWS = 256  # rows per multi-row INSERT (x columns: under SQLite's 32,766 variables)


def _insert_many(conn: sqlite3.Connection, table: str, row: str, columns: list[list[Any]]) -> None:
    """INSERT INTO ``table`` VALUES ``row`` for each row of ``columns`` (one list per column),
    MULTI_ROWS rows to a statement: a quarter fewer instructions per row than ``executemany``
    (one statement step per row), the values laid out flat without a tuple per row."""
    width, n = len(columns), len(columns[0])
    flat: list[Any] = [None] * (width * n)
    for c, column in enumerate(columns):
        flat[c::width] = column
    full = n - n % MULTI_ROWS
    if full:
        sql = f"INSERT INTO {table} VALUES " + ", ".join([row] * MULTI_ROWS)
        step = width * MULTI_ROWS
        for start in range(0, full * width, step):
            conn.execute(sql, flat[start : start + step])
    if full < n:
        conn.executemany(f"INSERT INTO {table} VALUES {row}", zip(*(column[full:] for column in columns), strict=True))


def _insert_values(conn: sqlite3.Connection, rowids: np.ndarray, values: list[Sequence[tuple[str, str | None, str | None, float | None]]]) -> None:
    """The typed values' rows, in three statements by which columns are NULL (see _product_rows)."""
    numbers: list[tuple[int, str, float | None]] = []
    labelled: list[tuple[int, str, str | None, str | None]] = []
    keywords: list[tuple[int, str, str | None]] = []
    for rowid, rows in zip(rowids.tolist(), values, strict=True):
        for name, kw, label, num in rows:
            if kw is None:
                numbers.append((rowid, name, num))
            elif label is None:
                keywords.append((rowid, name, kw))
            else:
                labelled.append((rowid, name, kw, label))
    if numbers:
        conn.executemany("INSERT INTO product_values (product, name, kw, label, num) VALUES (?, ?, NULL, NULL, ?)",
                         numbers)
    if keywords:
        conn.executemany("INSERT INTO product_values (product, name, kw, label, num) VALUES (?, ?, ?, NULL, NULL)",
                         keywords)
    if labelled:
        conn.executemany("INSERT INTO product_values (product, name, kw, label, num) VALUES (?, ?, ?, ?, NULL)",
                         labelled)
