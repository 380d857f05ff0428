"""The store file's format: its tables, the format record, and the upgrade of older formats.

Format 2 keeps category nodes as postings blocks (store/batch_write.py) instead of format 1's
category_nodes table of one row per (node, product). Format 3 adds the typed values table
(product_values); a version of ctir-es that does not know it would update products without
their values, hence a new format. Format 4 keeps the vectors in append-only files beside the
store (store/vector_file.py: ``vectors`` holds each product's slot, ``vector_files`` each field's
committed length) instead of blobs in SQLite. A writable store of format 1, 2 or 3 is upgraded on
open; a format-2 or 3 store that cannot be written is read as it is (format 2 holds no values;
the readers of vectors read blobs where the store has no ``vector_files`` table).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from ...errors import StoreError
from .. import batch_write, vector_file
from .failures import is_read_only

SCHEMA_VERSION = 4
# New files use large pages: a 512-d float32 vector (2 KiB) does not fit twice in a 4 KiB page,
# so small pages waste half the file. Existing files keep their page size.
PAGE_SIZE = 32768

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    categories TEXT NOT NULL,   -- paths as "A > B > C", one per line (BM25 column)
    attributes TEXT NOT NULL,   -- "Name: value ; ..." (BM25 column)
    description TEXT NOT NULL,
    extra TEXT NOT NULL,        -- JSON: category lists, attribute dict, image refs
    image TEXT,                 -- the image shown in results: one that loaded, never a broken one
    market TEXT,
    has_image INTEGER NOT NULL DEFAULT 0
);
-- (category postings: POSTINGS_DDL below; vectors: vector_file.VECTORS_DDL, format 4)
"""

# Category nodes (every ancestor prefix of every path, joined with NODE_SEP) -> product rowids, in
# blocks: the block keyed lo holds the node's rowids from lo up to the next block's lo (ascending,
# a JSON array that SQL expands with json_each); hi and n spare reading it to append or to count.
# No foreign key: updates and deletes take products out of their old nodes' blocks themselves.
POSTINGS_DDL = (
    """CREATE TABLE IF NOT EXISTS category_postings (
    node TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    n INTEGER NOT NULL,
    products TEXT NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS category_postings_block ON category_postings(node, lo)",
)

# Typed values (Product.values, store format 3), one row per (product, name): what value filters
# (and facets) read. The product's values are also in its ``extra`` JSON, read back exactly.
VALUES_DDL = (
    """CREATE TABLE IF NOT EXISTS product_values (
    product INTEGER NOT NULL REFERENCES products(rowid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kw TEXT,     -- a keyword, lower-cased (batch_write.fold_keyword): matched and grouped on
    label TEXT,  -- the keyword as the catalogue wrote it, when that is not kw (display)
    num REAL,    -- a number, or a boolean as 1 / 0
    PRIMARY KEY (product, name)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS product_values_kw ON product_values(name, kw)",
    "CREATE INDEX IF NOT EXISTS product_values_num ON product_values(name, num)",
)


def create_tables(path: Path, conn: sqlite3.Connection) -> None:
    """The tables of a new store (or those an older one lacks; the values table comes with
    the upgrade of an older format, which records it)."""
    conn.executescript(TABLES_DDL)
    for statement in POSTINGS_DDL:
        conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_version', ?)", (str(SCHEMA_VERSION),))
    if check_format(path, conn) == SCHEMA_VERSION:  # new (older formats: in upgrade)
        for statement in (*VALUES_DDL, *vector_file.VECTORS_DDL):
            conn.execute(statement)


def meta(conn: sqlite3.Connection, key: str) -> str | None:
    """One record of the ``meta`` table (None when absent)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def has_values(conn: sqlite3.Connection) -> bool:
    """Whether the file has the product_values table (a format-2 store read as it is has not)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'product_values'").fetchone() is not None


def check_format(path: Path, conn: sqlite3.Connection) -> int:
    """The store's format: this one, or 1 (upgraded on open); anything else is an error."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables or "products" not in tables:
        raise StoreError(f"{path} is a SQLite file but not a ctir-es store; check --store")
    row = conn.execute("SELECT value FROM meta WHERE key='store_version'").fetchone()
    version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
    if version not in (1, 2, 3, SCHEMA_VERSION):
        raise StoreError(
            f"{path} was written by store format {row[0] if row else '?'}, "
            f"this ctir-es reads {SCHEMA_VERSION} (and upgrades 1, 2 and 3)"
        )
    return int(version)  # type: ignore[arg-type]

def upgrade(path: Path, conn: sqlite3.Connection, version: int) -> None:
    """Format 1, 2 or 3 -> 4 in one transaction. 1 -> 2: category_nodes becomes
    category_postings (dropped after); 2 -> 3: the product_values table (empty: no older
    format held values); 3 -> 4: the vector blobs moved to files beside the store (written
    and synced before the COMMIT; seconds per million products). A format-1 store that cannot
    be written here cannot be read by this version; a format-2 or 3 one is read as it is (value
    filters of format 2 see no values)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if not is_read_only(exc):
            raise
        if version in (2, 3):
            return
        raise _cannot_upgrade(path, exc) from exc
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='store_version'").fetchone()
        if row is not None and str(row[0]) == "1":  # not upgraded meanwhile by another process
            for statement in POSTINGS_DDL:
                conn.execute(statement)
            rows = conn.execute("SELECT node, product FROM category_nodes ORDER BY node, product")
            blocks: list[tuple[str, int, int, int, str]] = []
            node: str | None = None
            rowids: list[int] = []
            for name, product in rows:  # the primary key's order: node, then ascending rowid
                if name != node:
                    if node is not None:
                        blocks += batch_write.postings_blocks(node, rowids)
                    node, rowids = name, []
                rowids.append(product)
            if node is not None:
                blocks += batch_write.postings_blocks(node, rowids)
            batch_write.insert_postings(conn, blocks)
            conn.execute("DROP TABLE category_nodes")
            row = ("2",)
        if row is not None and str(row[0]) == "2":
            for statement in VALUES_DDL:
                conn.execute(statement)
            row = ("3",)
        if row is not None and str(row[0]) == "3":
            vector_file.move_blobs(conn, path)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'store_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if is_read_only(exc):
            if version in (2, 3):
                return
            raise _cannot_upgrade(path, exc) from exc
        raise
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise

def _cannot_upgrade(path: Path, exc: BaseException) -> StoreError:
    return StoreError(
        f"store {path} is in store format 1 and this ctir-es reads format {SCHEMA_VERSION}; it upgrades "
        f"a store in place (one transaction, seconds per million products) when it can write it, but it "
        f"cannot write it here ({exc}). Run `ctir-es stats --store {path}` once where the file is "
        "writable (or copy it to writable media first), then use the upgraded file"
    )
