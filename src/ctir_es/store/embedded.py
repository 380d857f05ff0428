"""The default store: one SQLite file holding products, an FTS5 BM25 index and the vectors.

Why SQLite: it is in the standard library, a second process can read while an ingest writes
(WAL), and a batch commits atomically, so a killed ingest never leaves half a product.
Vectors are float32 blobs searched exactly with NumPy; the matrix of each field is cached in
memory and reloaded only when another connection has committed (``PRAGMA data_version``).

Failure handling (docs/reliability.md):

- reading never creates anything: a missing file reads as an empty store (no schema, 0
  products) and ``stats`` says there is no store there;
- a store on read-only media is opened read-only (``mode=ro``, then ``immutable=1`` when not
  even SQLite's shared-memory file can be created); writing there is a ``StoreError``;
- a damaged file is detected on open by a cheap check (the header, the page size, a file size
  that is a whole number of pages, the schema and the format record); corruption found later
  by a query is the same ``StoreError`` with the same way to rebuild;
- disk full, I/O errors and read-only writes roll the batch back and say so; every batch
  committed before is kept, and re-running the ingest resumes after it;
- the writer lock is per file, not per name: an advisory ``flock`` on the database file itself
  (its inode), so two names of one file (a hard link, a bind mount, a symlink) are one store;
  the pid of the holder goes to ``<real path>.lock``, opened without following a symlink and
  never truncated when it is not a lock file of its own;
- what is not a regular file (a FIFO, a device, a directory) is refused as the store before
  anything opens it, and nothing is created beside it;
- the WAL is folded into the file within seconds of a commit (store/wal_checkpoint.py) and
  completely when the writer closes; a ``-wal`` file deleted or replaced under a running
  process is detected (its identity, checked on every call) and reported, never dropped silently.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import LEXICAL_ENGINES, env_name, env_value
from ..errors import MissingExtraError, SchemaMismatch, StoreCorrupted, StoreError, StoreLocked
from ..filters import Filter
from ..products import Product
from . import ann, batch_write, lexical_tantivy, scan, wal_checkpoint
from .base import (
    LEXICAL_FIELDS,
    LEXICAL_SOURCE,
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    StoredProduct,
    VectorField,
    VectorQuery,
    WriteResult,
    metadata_json,
    new_vectors,
)
from .batch_write import NODE_SEP, fold_keyword

# Format 2 keeps category nodes as postings blocks (store/batch_write.py) instead of format 1's
# category_nodes table of one row per (node, product). Format 3 adds the typed values table
# (product_values); a version of ctir-es that does not know it would update products without
# their values, hence a new format. A writable store of format 1 or 2 is upgraded on open; a
# format-2 store that cannot be written is read as it is (it holds no values).
SCHEMA_VERSION = 3
MAX_QUERY_TERMS = 64
# New files use large pages: a 512-d float32 vector (2 KiB) does not fit twice in a 4 KiB page,
# so small pages waste half the file. Existing files keep their page size.
PAGE_SIZE = 32768
CACHE_KIB = 65536  # SQLite page cache per connection (FTS5 doclists, products)
# How kNN is searched per store: "exact" (NumPy over the float32 matrix, the default) or an
# approximate index of 8-bit codes persisted beside the store (store/ann.py, pip install
# 'ctir-es[ann]'): "sq8" (scan of all codes), "ivf" (inverted lists) or "hnsw" (graph); their
# candidates are rescored exactly from a memory-mapped float32 copy. Filtered kNN is a prefilter
# (k results whenever k products pass): exact over the products passing (the whole matrix with
# "exact"; their rows of the index's float32 copy otherwise), or for a broad filter on an
# approximate index, the index searched with the filter inside it (_approximate_filtered).
VECTOR_INDEXES = ("exact", *ann.KINDS)
RESCORE_FACTOR = 4  # approximate indexes fetch k * this many candidates (at least RESCORE_MIN)
RESCORE_MIN = 40
# Filtered kNN on an approximate index is exact over the passing rows up to this many of them
# (scoring 20k rows of 384 floats is ~8M multiply-adds: a few ms, the order of a graph walk),
# and below FILTER_ANN_MIN_SHARE of the index, where the index searched with the filter inside
# it loses recall: recall@10 against exact filtered kNN on 50k clustered 64-d vectors was
# ivf 0.930 at 1 % passing, hnsw 0.964 at 2 %, and at least 0.994 for every kind from 5 % to
# 50 % (docs/shop-search.md, "Filters").
FILTER_EXACT_ROWS = 20_000
FILTER_ANN_MIN_SHARE = 0.05
PARALLEL_MIN_ROWS = 20_000  # from this many vectors: hybrid sources in two threads (store/scan.py)
# The lexical engine, chosen when a store is created and recorded in it: "fts5" (SQLite FTS5
# inside the file, the default) or "tantivy" (a tantivy index beside it).
LEXICAL_ENV = env_name("lexical_engine")  # the engine of NEW stores when the constructor names none
# When nothing names one. tantivy is 13-95x faster at BM25 and passes the same contract and
# kill/resume, but it sums one BM25 per field where FTS5 scores the row as one document, and that
# ranks worse on flipkart-1050: mAP@10 -2.3 for BM25 and -5.5 for BM25 + MiniLM on random-level
# category queries, -1.8 points of categorize top-1 (README, docs/evaluation.md). Quality first.
DEFAULT_LEXICAL_ENGINE = "fts5"
MASK_CACHE = 32  # filter masks kept per vector field
ID_MAP_AFTER = 8  # BM25-only queries on unchanged data before every id is read into memory
SQLITE_MAGIC = b"SQLite format 3\x00"
REBUILD_HINT = ("to rebuild it, move the file aside and run the same `ctir-es ingest` into it again "
                "(the catalogue is the source of truth); `ctir-es stats --check` runs SQLite's full integrity check")
T = TypeVar("T")


class NoStore(StoreError):
    """There is no store file at the path (reads never create one)."""


def _describe(path: Path, exc: BaseException) -> StoreError:
    """A SQLite / OS failure as a ``StoreError`` that names the cause and what to do."""
    text = str(exc)
    low = text.lower()
    err = getattr(exc, "errno", None)
    if any(word in low for word in ("malformed", "not a database", "corrupt", "vtable constructor failed")):
        return StoreCorrupted(f"store {path} is corrupted ({text}); {REBUILD_HINT}")
    if "full" in low or err == errno.ENOSPC:
        return StoreError(f"the disk holding store {path} is full ({text}): the batch being written was rolled "
                          "back and every batch committed before is kept; free some space and re-run the same "
                          "command to resume")
    if "readonly" in low or "read-only" in low or err in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"store {path} cannot be written ({text}): read-only media or permissions; "
                          "ingest into a writable --store (queries work on read-only media)")
    if "i/o error" in low or err == errno.EIO:
        return StoreError(f"I/O error on store {path} ({text}); nothing after the last committed batch was "
                          "written: check the disk, then re-run to resume")
    return StoreError(f"store {path}: {text}")


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _guarded(empty: Callable[[], Any] | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """SQLite / OS errors of a store method become ``StoreError``s that name the cause; with
    ``empty``, a store that does not exist reads as ``empty()`` instead of ``NoStore``."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(self: EmbeddedStore, *args: Any, **kwargs: Any) -> T:
            try:
                self._watch_wal()
                return fn(self, *args, **kwargs)
            except NoStore:
                if empty is None:
                    raise
                return empty()  # type: ignore[no-any-return]
            except (sqlite3.DatabaseError, OSError) as exc:
                raise _describe(self.path, exc) from exc

        return wrapper

    return decorate

_DDL = """
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
-- (category postings: _POSTINGS_DDL below)
-- A rowid table: vectors are large rows, which WITHOUT ROWID tables spill to overflow pages
-- (2.3x the raw size at 512 dims). Stores created before keep their layout; the SQL is the same.
CREATE TABLE IF NOT EXISTS vectors (
    field TEXT NOT NULL,
    product INTEGER NOT NULL REFERENCES products(rowid) ON DELETE CASCADE,
    vec BLOB NOT NULL,          -- float32, L2-normalised
    UNIQUE (field, product)
);
CREATE INDEX IF NOT EXISTS vectors_product ON vectors(product);
"""

# Category nodes (every ancestor prefix of every path, joined with NODE_SEP) -> product rowids, in
# blocks: the block keyed lo holds the node's rowids from lo up to the next block's lo (ascending,
# a JSON array that SQL expands with json_each); hi and n spare reading it to append or to count.
# No foreign key: updates and deletes take products out of their old nodes' blocks themselves.
_POSTINGS_DDL = (
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
_VALUES_DDL = (
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

# The FTS5 lexical engine (the default): an external-content index kept in step by triggers.
_FTS_DDL = """
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

def fts_query(text: str, fields: Iterable[str]) -> str | None:
    """Free text -> an FTS5 expression: any of the words, restricted to ``fields``.

    Words are quoted, so FTS5 operators typed by a user (AND, NEAR, *, :) are plain words.
    """
    terms = list(dict.fromkeys(t.lower() for t in re.findall(r"\w+", text)))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    cols = " ".join(fields)
    return "{" + cols + "} : (" + " OR ".join(f'"{t}"' for t in terms) + ")"


def _value_param(value: Any) -> tuple[str, Any]:
    """The ``product_values`` column a typed filter value is compared with, and the value."""
    if isinstance(value, bool):
        return "num", 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return "num", float(value)
    return "kw", fold_keyword(str(value))


def value_filter_sql(f: Filter, alias: str = "p", *, table: bool = True) -> tuple[str, list[Any]]:
    """One filter on a typed value (``f.on_value``, its values typed by ``check_filters``) as a
    condition over ``products AS alias``. Negations (``not_in``, ``exists false``) keep the
    products without the value. ``table=False``: a format-2 store read as it is (no values)."""
    present = f.op != "not_in" and not (f.op == "exists" and f.value is False)
    if not table:
        return ("0" if present else "1"), []
    where = ["name = ?"]
    params: list[Any] = [f.field]
    if f.op in ("in", "not_in"):
        typed = [_value_param(v) for v in f.value]
        for column in ("kw", "num"):
            values = list(dict.fromkeys(v for c, v in typed if c == column))
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if len(where) == 3:  # a mixed list (not typed by check_filters): either column
            where[1:] = [f"({where[1]} OR {where[2]})"]
        elif len(where) == 1:
            where.append("0")
    elif f.op == "eq":
        column, value = _value_param(f.value)
        where.append(f"{column} = ?")
        params.append(value)
    elif f.op == "range":
        low, high = f.value
        if low is not None:
            where.append("num >= ?")
            params.append(float(low))
        if high is not None:
            where.append("num <= ?")
            params.append(float(high))
    negate = "" if present else "NOT "
    return f"{alias}.rowid {negate}IN (SELECT product FROM product_values WHERE {' AND '.join(where)})", params


def filter_sql(filters: Sequence[Filter], alias: str = "p", *, values: bool = True) -> tuple[str, list[Any]]:
    """Translate the filter grammar into a SQL condition over ``products AS alias``
    (``values=False``: the store has no values table)."""
    clauses: list[str] = []
    params: list[Any] = []
    for f in filters:
        if f.on_value:
            clause, more = value_filter_sql(f, alias, table=values)
            clauses.append(clause)
            params.extend(more)
        elif f.field == "category":
            clauses.append(f"{alias}.rowid IN (SELECT j.value FROM category_postings c, json_each(c.products) j "
                           "WHERE c.node = ?)")
            params.append(NODE_SEP.join(f.path))
        elif f.field == "market" and f.op == "eq":
            clauses.append(f"{alias}.market = ?")
            params.append(f.value)
        elif f.field in ("market", "id"):
            marks = ",".join("?" * len(f.value))
            negate = "NOT " if f.op == "not_in" else ""
            clauses.append(f"{alias}.{f.field} {negate}IN ({marks})" if marks else ("1" if negate else "0"))
            params.extend(f.value)
        elif f.field == "has_image":
            clauses.append(f"{alias}.has_image = ?")
            params.append(int(f.value))
    return (" AND ".join(clauses) or "1"), params


class _VectorCache:
    """The float32 matrix of one vector field, the product rowids and ids of its rows (so a
    query needs no SQL to name its hits), filter masks over those rows, and an optional
    approximate index. Dropped as a whole when the data changes."""

    def __init__(self, rowids: np.ndarray, ids: np.ndarray, matrix: np.ndarray) -> None:
        self.rowids = rowids
        self.ids = ids
        self.matrix = matrix
        self.masks: dict[tuple[Any, ...], np.ndarray] = {}
        self.index: Any = None


class EmbeddedStore:
    """SQLite + FTS5 + NumPy. ``EmbeddedStore(path)`` does no I/O; the first call opens the file."""

    def __init__(self, path: str | Path, vector_index: str = "exact", lexical: str | None = None,
                 *, new_lexical: str | None = None) -> None:
        """``lexical`` names the engine the store must use (an existing store of the other engine
        is refused); ``new_lexical`` only picks the engine of a store created here (the
        ``lexical_engine`` setting: an existing store keeps its own)."""
        if vector_index not in VECTOR_INDEXES:
            raise StoreError(f"unknown vector_index {vector_index!r}; supported: {', '.join(VECTOR_INDEXES)}")
        for engine in (lexical, new_lexical):
            if engine is not None and engine not in LEXICAL_ENGINES:
                raise StoreError(f"unknown lexical engine {engine!r}; supported: {', '.join(LEXICAL_ENGINES)}")
        self._lexical_requested = lexical
        self._lexical_for_new = new_lexical
        self.lexical_engine: str | None = None  # known once the file is open
        self._lex: lexical_tantivy.TantivyLexical | None = None
        self.vector_index = vector_index
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._writable = False
        self._lock = threading.RLock()  # one connection, shared by threads of one process
        self._vectors: dict[str, _VectorCache] = {}
        self._ann: dict[str, ann.AnnIndex] = {}  # persisted approximate indexes, memory-mapped
        self._generation: int | None = None  # the store's vectors_generation, read lazily
        self._id_map: tuple[np.ndarray, np.ndarray] | None = None  # rowid -> id for BM25 alone
        self._lexical_alone = 0  # BM25 queries with no id map since the data changed
        self._wrote = False  # this instance committed a write: it rebuilds stale indexes on close
        self._seen_version: int | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # runs BM25 beside kNN
        self._pool_pid = 0
        self._checkpointer: wal_checkpoint.Checkpointer | None = None  # folds the WAL in beside the writer
        self._schema: IndexSchema | None = None
        self._values = True  # the open file has the product_values table (a format-2 store read as is has not)
        self._allowed: dict[tuple[Any, ...], np.ndarray] = {}  # value-filtered rowids, for tantivy (dropped on change)
        self._read_mode = ""  # how a reading connection opened the file (mode=rw, mode=ro, immutable)
        # The database file itself, opened once while the store is open (closing a descriptor of
        # the file would drop SQLite's own POSIX locks on it): the header check and the writer's
        # flock, which is on the file (its inode), not on one of its names.
        self._fd: int | None = None
        self._writer_held = 0  # exclusive_writer depth: the descriptor stays open while held
        self._wal_id: tuple[int, int] | None = None  # the -wal file our connection uses
        self._wal_watch = False  # the connection uses a -wal file (not an immutable read)
        self._wal_lost: StoreError | None = None  # once lost, every call says so until close()

    def __repr__(self) -> str:
        extra = f", vector_index={self.vector_index!r}" if self.vector_index != "exact" else ""
        return f"EmbeddedStore({str(self.path)!r}{extra})"

    # -- connection -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection; the first use opens the file for reading (never creating it)."""
        if self._conn is None:
            self._conn, self._writable = self._open(create=False), False
            if self._wal_watch and self._checkpointer is None:  # folds in what other processes commit
                self._checkpointer = wal_checkpoint.Checkpointer(self.path, writer=False)
        return self._conn

    @property
    def _wconn(self) -> sqlite3.Connection:
        """A connection that may write: creates the file (and its folder) when absent."""
        if self._conn is None or not self._writable:
            if self._conn is not None:
                self._conn.close()
                self._vectors.clear()
            self._conn = None
            if self._lex is not None:
                self._lex.close()
                self._lex = None
            if self._checkpointer is not None:  # a reader's
                self._checkpointer.close()
                self._checkpointer = None
            self._conn, self._writable = self._open(create=True), True
            self._conn.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoint.writer_limit_pages(self._conn)}")
            self._checkpointer = wal_checkpoint.Checkpointer(self.path)
        return self._conn

    def _exists(self) -> bool:
        """Whether the store file exists; what is not a regular file (a FIFO, a device, a
        directory) is refused here, by its ``stat``, before anything opens it or creates a
        file beside it."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _describe(self.path, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{self.path} is {_file_kind(st.st_mode)}, not a store file: check --store "
                             "(a store is a regular file, created by `ctir-es ingest`)")
        return True

    def _file(self) -> int:
        """The descriptor of the store file (opened once; it must exist)."""
        if self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise _describe(self.path, exc) from exc
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced since the stat
                os.close(fd)
                raise StoreError(f"{self.path} is {_file_kind(st.st_mode)}, not a store file: check --store")
            self._fd = fd
        return self._fd

    def _close_file(self) -> None:
        if self._fd is not None and not self._writer_held and self._conn is None:
            os.close(self._fd)
            self._fd = None

    def _watch_wal(self) -> None:
        """Raise the ``StoreError`` of a ``-wal`` file deleted or replaced while this store
        has it open (one ``stat`` per call)."""
        if self._wal_lost is not None:
            raise self._wal_lost
        if self._conn is None or not self._wal_watch:
            return
        now = wal_checkpoint.identity(wal_checkpoint.wal_path(self.path))
        lost = self._checkpointer is not None and self._checkpointer.lost
        if self._wal_id is None:
            self._wal_id = now
        elif now != self._wal_id or lost:
            with self._lock:
                self._wal_lost = self._lost_wal(missing=now is None)
            raise self._wal_lost

    def _lost_wal(self, *, missing: bool) -> StoreError:
        """Fold what the old ``-wal`` file held (this connection still reads it) into the store
        file, and say what happened."""
        rescued = self._checkpointer is not None and self._checkpointer.rescued
        if self._conn is not None and not rescued:
            rescued = wal_checkpoint.truncate(self._conn)
        wal = wal_checkpoint.wal_path(self.path)
        outcome = ("the changes it held were copied into the store file first" if rescued
                   else "changes committed since the last checkpoint may be lost")
        return StoreError(f"the write-ahead log {wal} of store {self.path} was "
                          f"{'deleted' if missing else 'replaced by another file'} while this process had the "
                          f"store open: {outcome}; stop every process using the store, then run "
                          f"`ctir-es stats --check --store {self.path}` (re-run the ingest to restore what is missing)")

    def _open(self, *, create: bool) -> sqlite3.Connection:
        exists = self._exists()
        if not exists and not create:
            raise NoStore(f"no store at {self.path}: check --store, or run `ctir-es ingest ...` first to create one "
                          "(reading never creates a store)")
        if exists:
            self._check_file()
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect on a new, empty file only
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
                conn.executescript(_DDL)
                for statement in _POSTINGS_DDL:
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_version', ?)", (str(SCHEMA_VERSION),))
                if self._check_format(conn) == SCHEMA_VERSION:  # new (older formats: in _upgrade)
                    for statement in _VALUES_DDL:
                        conn.execute(statement)
                self._create_lexical(conn)
            else:
                conn = self._open_for_reading()
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys=ON")
            version = self._check_format(conn)
            if version < SCHEMA_VERSION:
                self._upgrade(conn, version)
            self._values = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'product_values'").fetchone() is not None
            self._open_lexical(conn, writable=create)
            self._file()  # (a new store: the file SQLite has just created)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise _describe(self.path, exc) from exc
        self._wal_watch = create or self._read_mode == "mode=rw"
        self._wal_id = wal_checkpoint.identity(wal_checkpoint.wal_path(self.path)) if self._wal_watch else None
        return conn

    def _create_lexical(self, conn: sqlite3.Connection) -> None:
        """Record the lexical engine of a new store (an existing one keeps its own) and create
        its tables: FTS5 with its triggers, or tantivy's change log with its triggers."""
        engine = self._engine_of(conn)
        if engine is None:
            old = conn.execute("SELECT 1 FROM sqlite_master WHERE name='products_fts'").fetchone()
            # the constructor's engines, else the lexical_engine setting's env var (checked there)
            engine = "fts5" if old else (self._lexical_requested or self._lexical_for_new or env_value("lexical_engine")
                                         or DEFAULT_LEXICAL_ENGINE)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('lexical_engine', ?)", (engine,))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_uuid', ?)", (lexical_tantivy.new_store_uuid(),))
            engine = self._engine_of(conn)
        conn.executescript(_FTS_DDL if engine == "fts5" else lexical_tantivy.LOG_DDL)

    @staticmethod
    def _engine_of(conn: sqlite3.Connection) -> str | None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='lexical_engine'").fetchone()
        except sqlite3.OperationalError:
            return None
        if row is not None:
            return str(row[0])
        has_fts = conn.execute("SELECT 1 FROM sqlite_master WHERE name='products_fts'").fetchone()
        return "fts5" if has_fts else None  # stores made before the setting existed use FTS5

    def _open_lexical(self, conn: sqlite3.Connection, *, writable: bool) -> None:
        engine = self._engine_of(conn) or "fts5"
        if self._lexical_requested is not None and engine != self._lexical_requested:
            raise StoreError(f"store {self.path} uses the {engine} lexical engine, not {self._lexical_requested}; "
                             "open it without naming an engine, or ingest into a new --store")
        self.lexical_engine = engine
        if engine != "tantivy" or self._lex is not None:
            return
        row = conn.execute("SELECT value FROM meta WHERE key='store_uuid'").fetchone()
        lex = lexical_tantivy.TantivyLexical(self.path, str(row[0]) if row else "")
        try:
            lex.open(create=True)  # a missing or foreign index beside the file is rebuilt from SQLite
            lex.catch_up(conn, attempts=20 if writable else 1)
            if not writable:
                lex.release_writer()
        except (OSError, ValueError) as exc:
            raise StoreError(f"the tantivy index beside store {self.path} cannot be opened or updated ({exc}); "
                             f"it is derived from the store: remove {lexical_tantivy.index_dir(self.path)} "
                             "on writable media and open the store again to rebuild it") from exc
        self._lex = lex

    def _sync_lexical(self) -> None:
        """After a committed write: bring the tantivy index up to date (the writer's job)."""
        if self._lex is not None and self._conn is not None:
            self._lex.catch_up(self._conn, attempts=20)

    def _open_for_reading(self) -> sqlite3.Connection:
        """Read-write when possible (WAL readers share memory with the writer), else read-only,
        else immutable (read-only media where SQLite cannot create its ``-shm`` file)."""
        uri = self.path.resolve().as_uri()
        last: sqlite3.Error | None = None
        for mode in ("mode=rw", "mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=30, check_same_thread=False,
                                   isolation_level=None)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                self._read_mode = mode
                return conn
            except sqlite3.OperationalError as exc:  # cannot open / lock / create -shm: try the next mode
                conn.close()
                last = exc
                if "malformed" in str(exc) or "not a database" in str(exc):
                    raise
        assert last is not None
        raise last

    def _check_file(self) -> None:
        """The cheap corruption check on open: the header, the page size, whole pages."""
        try:
            fd = self._file()
            header = os.pread(fd, 100, 0)
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise _describe(self.path, exc) from exc
        if size == 0:
            return  # a new file SQLite has not written yet
        if header[:16] != SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not a ctir-es store (not a SQLite file, or its header is damaged); "
                             f"check --store; if it was a store, {REBUILD_HINT}")
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        # A checkpoint cut short (a full disk) can leave part of a page at the end of the file:
        # the WAL beside it still holds that page, and SQLite writes it again from there.
        wal = Path(f"{self.path}-wal")
        part_page_ok = wal.exists() and wal.stat().st_size > 0
        if len(header) < 100 or page < 512 or page & (page - 1) or (size % page and not part_page_ok):
            raise StoreCorrupted(f"store {self.path} is corrupted (truncated or damaged header: {size:,} bytes, "
                             f"page size {page}); {REBUILD_HINT}")

    def _check_format(self, conn: sqlite3.Connection) -> int:
        """The store's format: this one, or 1 (upgraded on open); anything else is an error."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables or "products" not in tables:
            raise StoreError(f"{self.path} is a SQLite file but not a ctir-es store; check --store")
        row = conn.execute("SELECT value FROM meta WHERE key='store_version'").fetchone()
        version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
        if version not in (1, 2, SCHEMA_VERSION):
            raise StoreError(
                f"{self.path} was written by store format {row[0] if row else '?'}, "
                f"this ctir-es reads {SCHEMA_VERSION} (and upgrades 1 and 2)"
            )
        return int(version)  # type: ignore[arg-type]

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        """Format 1 or 2 -> 3 in one transaction. 1 -> 2: category_nodes becomes
        category_postings (dropped after); 2 -> 3: the product_values table (empty: no older
        format held values). A format-1 store that cannot be written here cannot be read by
        this version; a format-2 one is read as it is (value filters see no values)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc).lower() and "read-only" not in str(exc).lower():
                raise
            if version == 2:
                return
            raise self._cannot_upgrade(exc) from exc
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='store_version'").fetchone()
            if row is not None and str(row[0]) == "1":  # not upgraded meanwhile by another process
                for statement in _POSTINGS_DDL:
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
                for statement in _VALUES_DDL:
                    conn.execute(statement)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'store_version'", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                if version == 2:
                    return
                raise self._cannot_upgrade(exc) from exc
            raise
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _cannot_upgrade(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"store {self.path} is in store format 1 and this ctir-es reads format {SCHEMA_VERSION}; it upgrades "
            f"a store in place (one transaction, seconds per million products) when it can write it, but it "
            f"cannot write it here ({exc}). Run `ctir-es stats --store {self.path}` once where the file is "
            "writable (or copy it to writable media first), then use the upgraded file"
        )

    @_guarded()
    def check(self) -> list[str]:
        """SQLite's full integrity check (reads every page): an empty list when the file is sound.
        A sound file with a tantivy index beside it has the index checked too (every segment
        file against its checksum): damage there raises the ``StoreError`` a query would, which
        names the index and how to rebuild it from the file."""
        with self._lock:
            rows = self.conn.execute("PRAGMA integrity_check(20)").fetchall()
            problems = [str(r[0]) for r in rows]
            if problems != ["ok"]:
                return problems
            if self._lex is not None:
                self._lex.check()
            return self._count_gaps()

    def _count_gaps(self) -> list[str]:
        """The tables that must agree with ``products``, each gap named: the lexical index
        (FTS5's documents, or tantivy's once it has applied the whole log), and the rows of
        vectors, typed values and category postings that name no product."""
        conn = self.conn
        conn.execute("BEGIN")  # one snapshot
        try:
            (products,) = conn.execute("SELECT count(*) FROM products").fetchone()
            gaps: list[str] = []
            if self.lexical_engine == "fts5":
                (docs,) = conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()
                if docs != products:
                    gaps.append(f"the FTS5 text index holds {docs} documents, the products table {products} rows")
                else:
                    try:  # every indexed term against the products' text (reads the whole index)
                        conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES ('integrity-check', 1)")
                    except sqlite3.DatabaseError as exc:
                        gaps.append(f"the FTS5 text index does not match the products table ({exc})")
            elif self._lex is not None:
                _, last = lexical_tantivy.log_bounds(conn)
                docs = self._lex.num_docs()
                if not self._lex.complete:
                    gaps.append(f"the tantivy index {self._lex.dir} is incomplete ({docs} documents, "
                                f"{products} products) and another process holds its writer")
                elif self._lex.applied == last and docs != products:
                    gaps.append(f"the tantivy index {self._lex.dir} holds {docs} documents, "
                                f"the products table {products} rows (remove the folder: the next writable "
                                "open rebuilds it from the store)")
            orphans = {
                "vectors": "SELECT count(*) FROM vectors WHERE product NOT IN (SELECT rowid FROM products)",
                "category postings": "SELECT count(*) FROM category_postings c, json_each(c.products) j "
                                     "WHERE j.value NOT IN (SELECT rowid FROM products)",
            }
            if self._values:
                orphans["typed values"] = ("SELECT count(*) FROM product_values "
                                           "WHERE product NOT IN (SELECT rowid FROM products)")
            for what, sql in orphans.items():
                (n,) = conn.execute(sql).fetchone()
                if n:
                    gaps.append(f"{n} rows of {what} name no product")
            for field, n in conn.execute("SELECT field, count(*) FROM vectors GROUP BY field"):
                if n > products:
                    gaps.append(f"vector field {field} holds {n} vectors for {products} products")
        finally:
            conn.execute("COMMIT")
        return gaps

    @contextlib.contextmanager
    def exclusive_writer(self) -> Iterator[None]:
        """Refuse a second concurrent ingest into this file (readers are never blocked).

        An advisory ``flock`` on the store file itself: the lock belongs to the file (its
        inode), not to a name, so two names of one file (a hard link, a bind mount, a symlink)
        are one store. The kernel releases it when the holder dies, so a killed ingest never
        leaves a stale lock behind. What is not a regular file is refused before anything is
        opened or created. The holder's pid is written to ``<real store path>.lock`` for the
        message (and an older ctir-es, which locked that file alone, is refused too); that file
        is opened without following a symlink, and one that is not a plain file of its own (a
        hard link, a device, a fifo) is refused rather than written to.
        """
        with self._lock:
            if not self._exists():
                self._wconn  # noqa: B018 - creates the store: a new file has one name, SQLite's locks cover it
            fd = self._file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who, via = self._holder(fd)
            raise StoreLocked(
                f"another ingest ({who}) is writing to {self.path}{via}; wait for it to finish "
                "(queries keep working meanwhile)"
            ) from None
        except OSError as exc:
            raise _describe(self.path, exc) from None
        self._writer_held += 1
        try:
            with self._pid_file():
                yield
        finally:
            self._writer_held -= 1
            if not self._writer_held:
                fcntl.flock(fd, fcntl.LOCK_UN)
            with self._lock:
                self._close_file()

    def _holder(self, fd: int) -> tuple[str, str]:
        """Who holds the flock on the store file: its pid from /proc/locks (Linux), and which
        name it writes through when that is not ours."""
        st = os.fstat(fd)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        pid = None
        with contextlib.suppress(OSError):
            for line in Path("/proc/locks").read_text().splitlines():
                fields = line.split()
                if "FLOCK" in fields and "WRITE" in fields and key in fields and "->" not in fields:
                    pid = fields[fields.index(key) - 1]
                    break
        real = self.path.resolve()
        ours = real.with_name(real.name + ".lock")
        written = None
        with contextlib.suppress(OSError, UnicodeDecodeError):
            written = ours.read_text().strip()
        via = " through another name of this file (a hard link or a bind mount)" if pid and written != pid else ""
        return (f"pid {pid}" if pid else "another process"), via

    @contextlib.contextmanager
    def _pid_file(self) -> Iterator[None]:
        real = self.path.resolve()
        lock_path = real.with_name(real.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"the lock file {lock_path} is a symlink: refusing to follow it (remove it; "
                                 "ctir-es creates its own)") from None
            raise _describe(self.path, exc) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise StoreError(f"the lock file {lock_path} is not a plain file of its own (a hard link or a "
                                 "special file): refusing to write to it (remove it; ctir-es creates its own)")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # an older ctir-es, which locks this file only
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise StoreLocked(
                    f"another ingest (pid {holder}) is writing to {self.path}; wait for it to finish "
                    "(queries keep working meanwhile)"
                ) from None
            try:
                os.ftruncate(fd, 0)  # our own lock file (checked above)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            except OSError as exc:
                raise _describe(self.path, exc) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def close(self) -> None:
        with self._lock:
            if self._wrote and self._conn is not None and self._wal_lost is None:
                self._wrote = False
                with contextlib.suppress(MissingExtraError, StoreError):  # (a -wal lost meanwhile)  # without faiss, readers use exact kNN
                    self._refresh_vector_indexes()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._lex is not None:
                self._lex.close()
                self._lex = None
            if self._checkpointer is not None:
                self._checkpointer.close()  # before the writer's connection: its close folds the rest in
                self._checkpointer = None
            if self._conn is not None:
                if self._writable and self._wal_lost is None:
                    # nothing this writer committed stays in the -wal file alone after it closes,
                    # even while another process (serve) keeps the store open
                    wal_checkpoint.truncate(self._conn)
                self._conn.close()
                self._conn = None
            self._wal_lost = None
            self._wal_id = None
            self._close_file()
            self._forget_data()

    def _changed_elsewhere(self) -> bool:
        """True when another connection committed since we last looked (drop caches)."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._seen_version
        self._seen_version = version
        return changed

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- schema -----------------------------------------------------------------------------

    @_guarded(empty=lambda: None)
    def schema(self) -> IndexSchema | None:
        with self._lock:
            raw = self._meta("schema")
            return None if raw is None else IndexSchema.from_json(json.loads(raw))

    @_guarded()
    def setup(self, schema: IndexSchema) -> IndexSchema:
        with self._lock:
            self._wconn  # noqa: B018 - open for writing (creating the file) before reading the schema
            current = self.schema()
            if current is None:
                merged = schema
            else:
                problems = current.differences(schema)
                if problems:
                    raise SchemaMismatch(
                        f"store {self.path} does not match the encoders in use: {'; '.join(problems)}. "
                        "Ingest into a new store (--store PATH) or use the encoders it was built with."
                    )
                merged = current.merged(schema)
            self._wconn.execute(
                "INSERT INTO meta VALUES ('schema', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (json.dumps(merged.to_json(), sort_keys=True),),
            )
            self._schema = merged
            return merged

    # -- writes -----------------------------------------------------------------------------

    @_guarded()
    def upsert(self, docs: Sequence[Document], checkpoint: tuple[str, int] | None = None) -> WriteResult:
        schema = self._schema or self.schema() or IndexSchema()
        result = WriteResult()
        with self._lock:
            batch = batch_write.prepare(docs, schema)  # no I/O: outside the write lock SQLite holds
            lexical: lexical_tantivy.PendingBatch | None = None
            committed = False
            # The batch writes child rows only for products it has just written, and removes an
            # updated product's old rows itself, so the per-row foreign key checks (about 1 us
            # per product) prove nothing here. The pragma is a no-op inside a transaction, hence
            # set around it; deletes keep the cascade.
            self._wconn.execute("PRAGMA foreign_keys=OFF")
            try:
                with self._write_transaction() as conn:
                    if self._lex is not None:  # the log entries tantivy has applied are not needed any more
                        conn.execute("DELETE FROM lexical_log WHERE seq <= ?", (self._lex.applied,))
                        if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM lexical_log)").fetchone()[0]:
                            lexical = self._lex.begin_batch(self._lex.applied)  # the log will hold this batch alone
                    writer = batch_write.TransactionWriter(conn)
                    rowids = writer.write(batch)
                    writer.finish()
                    result.written, result.errors = batch.written, batch.errors
                    if lexical is not None:
                        # tantivy indexes the rows just written (in its own thread, while SQLite
                        # commits) instead of reading them back after the COMMIT
                        lexical.add(batch, rowids)
                        (lexical.last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM lexical_log").fetchone()
                    if result.written:
                        self._bump_generation(conn)
                    if checkpoint is not None:
                        conn.execute(
                            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            (f"checkpoint:{checkpoint[0]}", str(checkpoint[1])),
                        )
                committed = True
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._wconn.execute("PRAGMA foreign_keys=ON")
                if lexical is not None and not committed and self._lex is not None:
                    self._lex.end_batch(self._wconn, lexical, committed=False)  # tantivy drops the batch too
            self._after_write(result.written, lexical)
        return result

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on the writer's connection, ROLLBACK on any error."""
        conn = self._wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (disk full, I/O error): never hide the cause
            # behind "cannot rollback - no transaction is active".
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _after_write(self, rows: int, lexical: lexical_tantivy.PendingBatch | None = None) -> None:
        """After a committed write of ``rows`` products: drop cached reads, tell the checkpointer,
        and bring the tantivy index up to date (with ``lexical``, the batch tantivy was given
        inside the transaction is committed)."""
        self._forget_data()  # our own commits do not change data_version for us
        self._wrote = self._wrote or rows > 0
        if self._checkpointer is not None:
            self._checkpointer.committed(rows)
        if lexical is not None and self._lex is not None:
            self._lex.end_batch(self._wconn, lexical, committed=True)
        else:
            self._sync_lexical()

    @staticmethod
    def _bump_generation(conn: sqlite3.Connection) -> None:
        """Inside a write transaction: persisted approximate indexes built before are stale."""
        conn.execute(
            "INSERT INTO meta VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (ann.GENERATION_KEY,),
        )

    def _forget_data(self) -> None:
        """Drop what was read from the data (after a commit of ours or of another connection)."""
        self._vectors.clear()
        self._ann.clear()
        self._generation = None
        self._id_map = None
        self._lexical_alone = 0
        self._allowed.clear()

    @_guarded(empty=lambda: None)
    def checkpoint(self, key: str) -> int | None:
        with self._lock:
            raw = self._meta(f"checkpoint:{key}")
            return None if raw is None else int(raw)

    @_guarded()
    def clear_checkpoint(self, key: str) -> None:
        with self._lock:
            self._wconn.execute("DELETE FROM meta WHERE key = ?", (f"checkpoint:{key}",))

    @_guarded()
    def delete(self, ids: Sequence[str]) -> int:
        with self._lock:
            deleted = 0
            with self._write_transaction() as conn:
                for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
                    chunk = list(ids[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    gone = conn.execute(f"DELETE FROM products WHERE id IN ({marks}) RETURNING rowid, extra",
                                        chunk).fetchall()
                    batch_write.remove_products(conn, gone)  # the vectors go by the foreign key's cascade
                    deleted += len(gone)
                if deleted:
                    self._bump_generation(conn)
            self._after_write(deleted)
            return deleted

    @_guarded()
    def put_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON object under ``key`` in the store's meta table (``metadata:KEY``)."""
        text = metadata_json(key, value)
        with self._lock:
            self._wconn.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"metadata:{key}", text),
            )

    # -- vectors added in place (VectorWriter) -----------------------------------------------

    @staticmethod
    def _stored_dims(conn: sqlite3.Connection, field: str) -> int | None:
        """The dims of the vectors ``field`` holds (None when no product holds one)."""
        row = conn.execute("SELECT length(vec) FROM vectors WHERE field = ? LIMIT 1", (field,)).fetchone()
        return None if row is None else int(row[0]) // 4

    @staticmethod
    def _schema_in(conn: sqlite3.Connection) -> IndexSchema | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return None if row is None else IndexSchema.from_json(json.loads(row[0]))

    def _existing_writer(self) -> sqlite3.Connection:
        """The writer's connection of a store that exists (these writes never create one)."""
        if not self._writable:
            self.conn  # noqa: B018 - NoStore when there is no file (reading never creates one)
        return self._wconn

    @_guarded()
    def write_vectors(self, field: str, spec: VectorField, vectors: Mapping[str, np.ndarray],
                      checkpoint: tuple[str, int] | None = None) -> int:
        """Set ``field``'s vector of the stored products in ``vectors`` (others skipped) in one
        transaction, with the checkpoint; see ``VectorWriter``. The field need not be in the
        schema yet (``set_vector_field`` puts it there); kNN on it sees the vectors at once."""
        ids, matrix = new_vectors(field, spec, vectors)  # no I/O: a bad vector writes nothing
        with self._lock:
            self._existing_writer()
            written = 0
            with self._write_transaction() as conn:
                schema = self._schema_in(conn)
                listed = schema.vectors.get(field) if schema is not None else None
                if listed is not None and listed.dims != spec.dims:
                    raise SchemaMismatch(f"store {self.path}: vector field {field!r} has {listed.dims} dims in the "
                                         f"schema, the vectors have {spec.dims}; nothing was written")
                stored = self._stored_dims(conn, field)
                if stored is not None and stored != spec.dims:
                    raise SchemaMismatch(f"store {self.path}: vector field {field!r} holds vectors of {stored} dims, "
                                         f"these have {spec.dims}; nothing was written")
                written = batch_write.replace_field_vectors(conn, field, ids, matrix)
                if written:
                    self._bump_generation(conn)  # approximate indexes built before are stale
                if checkpoint is not None:
                    conn.execute(
                        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (f"checkpoint:{checkpoint[0]}", str(checkpoint[1])),
                    )
            self._after_write(written)
        return written

    @_guarded()
    def set_vector_field(self, field: str, spec: VectorField) -> IndexSchema:
        """Put ``field`` with ``spec`` into the stored schema (replacing its entry); other dims
        than those of the vectors the field holds raise ``SchemaMismatch``."""
        if not isinstance(field, str) or not field:
            raise StoreError(f"bad vector field name {field!r}")
        if int(spec.dims) < 1:
            raise StoreError(f"{field}: dims must be >= 1, got {spec.dims}")
        with self._lock:
            self._existing_writer()
            with self._write_transaction() as conn:
                current = self._schema_in(conn) or IndexSchema()
                stored = self._stored_dims(conn, field)
                if stored is not None and stored != spec.dims:
                    listed = current.vectors.get(field)
                    had = f" (the schema says {listed.dims})" if listed is not None else ""
                    raise SchemaMismatch(
                        f"store {self.path}: vector field {field!r} holds vectors of {stored} dims{had}, "
                        f"not {spec.dims}: write the new vectors to another field, or ingest into a new store"
                    )
                merged = current.with_vector(field, spec)
                conn.execute(
                    "INSERT INTO meta VALUES ('schema', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (json.dumps(merged.to_json(), sort_keys=True),),
                )
            self._schema = merged
            return merged

    # -- reads ------------------------------------------------------------------------------

    @_guarded()
    def search(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
    ) -> dict[str, list[Hit]]:
        with self._lock:
            if self._changed_elsewhere():
                self._forget_data()
                if self._lex is not None and not self._writable:  # a writer that died: catch up
                    self._lex.catch_up(self.conn)
                    self._lex.release_writer()
            out: dict[str, list[Hit]] = {}
            exact_scan = self.vector_index == "exact" or bool(filters)
            if (lexical is not None and vectors and self._rows_loaded() >= PARALLEL_MIN_ROWS
                    and (self._lex is None or not exact_scan)):
                # BM25 in a second thread while kNN runs here: SQLite, tantivy, NumPy and faiss
                # release the GIL, so a hybrid query costs about its slower source, not the sum;
                # an exact scan shares its chunks with that thread once BM25 is done.
                # (The connection is in SQLite's serialized mode; the worker runs under our lock.)
                # On one thread: small stores, and tantivy (~0.2 ms at 100k) beside an exact scan,
                # where waking a thread and splitting the scan cost more than they save (measured,
                # store/scan.py).
                side = self._side_thread()
                pending = side.submit(self._lexical, lexical, k, filters)
                try:
                    knn = {vq.name: self._knn(vq, k, filters, side) for vq in vectors}
                finally:
                    lexical_hits = pending.result()
                out[LEXICAL_SOURCE] = lexical_hits
            else:
                knn = {vq.name: self._knn(vq, k, filters) for vq in vectors}  # loads the matrix and its ids
                if lexical is not None:
                    out[LEXICAL_SOURCE] = self._lexical(lexical, k, filters)
            out.update(knn)
            return out

    def _rows_loaded(self) -> int:
        """Vectors in the loaded matrix or index of some field (0 before the first query)."""
        for cache in self._vectors.values():
            return int(cache.matrix.shape[0])
        for index in self._ann.values():
            return len(index.rowids)
        return 0

    def _side_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None or self._pool_pid != os.getpid():  # a forked child has no thread: a new pool
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctir-es-bm25")
            self._pool_pid = os.getpid()
        return self._pool

    def _lexical(self, query: LexicalQuery, k: int, filters: Sequence[Filter]) -> list[Hit]:
        if self._lex is not None:
            # rowid -> id maps of the current snapshot (both are dropped on any change)
            loaded = next(iter(self._vectors.values()), None)
            index = next(iter(self._ann.values()), None)
            known = ((loaded.rowids, loaded.ids) if loaded is not None
                     else (index.rowids, index.ids) if index is not None else self._lexical_id_map())
            on_values = [f for f in filters if f.on_value]
            allowed = self._value_allowed(on_values) if on_values else None
            return self._lex.search(self.conn, query, k, [f for f in filters if not f.on_value], known, allowed)
        fields = [f for f in LEXICAL_FIELDS if query.weights.get(f, 0) > 0]
        expr = fts_query(query.text, fields) if fields else None
        if expr is None:
            return []
        weights = [float(query.weights.get(f, 0.0)) for f in LEXICAL_FIELDS]
        where, params = filter_sql(filters, values=self._values)
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
        rows = self.conn.execute(sql, [*weights, expr, *params, k]).fetchall()
        return [Hit(pid, -float(score)) for pid, score in rows]  # FTS5 bm25 is negated

    def _allowed_rowids(self, filters: Sequence[Filter]) -> np.ndarray:
        """The rowids (ascending) of the products passing ``filters``."""
        where, params = filter_sql(filters, values=self._values)
        rows = self.conn.execute(f"SELECT p.rowid FROM products p WHERE {where} ORDER BY p.rowid", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _value_allowed(self, filters: Sequence[Filter]) -> np.ndarray:
        """``_allowed_rowids`` of value filters, kept until the data changes (tantivy's value
        filters: the same filter over many queries, e.g. a price range while paging)."""
        where, params = filter_sql(filters, values=self._values)
        key = (where, *params)
        found = self._allowed.get(key)
        if found is None:
            found = self._allowed_rowids(filters)
            if len(self._allowed) >= MASK_CACHE:
                self._allowed.pop(next(iter(self._allowed)))
            self._allowed[key] = found
        return found

    def _field_matrix(self, name: str) -> _VectorCache:
        cache = self._vectors.get(name)
        if cache is None:
            cache = self._vectors[name] = self._load_field(name)
        return cache

    def _lexical_id_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(rowids, ids) of every product for naming tantivy's hits without SQL, once BM25 has
        been asked ID_MAP_AFTER times with no vectors loaded since the data last changed. Naming
        100 hits by SQL costs about as much as tantivy's search; a one-shot query (the CLI)
        never pays for reading every id."""
        if self._id_map is None:
            self._lexical_alone += 1
            if self._lexical_alone < ID_MAP_AFTER:
                return None
            rows = self.conn.execute("SELECT rowid, id FROM products ORDER BY rowid").fetchall()
            self._id_map = (np.fromiter((r for r, _ in rows), np.int64, len(rows)),
                            np.asarray([i for _, i in rows], dtype=object))
        return self._id_map

    def _load_field(self, name: str) -> _VectorCache:
        """Read one field's vectors (and their product ids) in one snapshot, in rowid order."""
        rowids: list[int] = []
        ids: list[str] = []
        buf = bytearray()
        cur = self.conn.execute(
            "SELECT v.product, p.id, v.vec FROM vectors v JOIN products p ON p.rowid = v.product "
            "WHERE v.field = ? ORDER BY v.product",
            (name,),
        )
        while chunk := cur.fetchmany(10_000):
            for rowid, pid, vec in chunk:
                rowids.append(rowid)
                ids.append(pid)
                buf += vec
        if not rowids:
            return _VectorCache(np.zeros(0, np.int64), np.zeros(0, object), np.zeros((0, 0), np.float32))
        matrix = np.frombuffer(buf, dtype=np.float32).reshape(len(rowids), -1)
        return _VectorCache(np.asarray(rowids, dtype=np.int64), np.asarray(ids, dtype=object), matrix)

    def _filter_mask(self, cache: _VectorCache, filters: Sequence[Filter]) -> np.ndarray:
        """Which rows of ``cache`` pass ``filters``: one SQL query per distinct filter, cached
        with the matrix (so repeated filters, e.g. a category facet, cost nothing)."""
        where, params = filter_sql(filters, values=self._values)
        key = (where, *params)
        mask = cache.masks.get(key)
        if mask is None:
            allowed = self._allowed_rowids(filters)
            mask = np.isin(cache.rowids, allowed, assume_unique=True)
            if len(cache.masks) >= MASK_CACHE:
                cache.masks.pop(next(iter(cache.masks)))
            cache.masks[key] = mask
        return mask

    def _knn(self, vq: VectorQuery, k: int, filters: Sequence[Filter] = (),
             helper: concurrent.futures.Executor | None = None) -> list[Hit]:
        """``helper``: a thread busy with BM25 that takes chunks of an exact scan when done."""
        if self.vector_index != "exact":
            index = self._ann_index(vq.field)
            if index is not None:
                return self._approximate_filtered(index, vq, k, filters) if filters else self._approximate(index, vq, k)
        cache = self._field_matrix(vq.field)
        if cache.matrix.shape[0] == 0:
            return []
        query = np.asarray(vq.vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != cache.matrix.shape[1]:
            raise SchemaMismatch(
                f"query vector for {vq.field!r} has {query.shape[0]} dims, the store holds {cache.matrix.shape[1]}"
            )
        matrix = cache.matrix
        if filters:
            mask = self._filter_mask(cache, filters)
            rows = np.flatnonzero(mask)
            if rows.shape[0] == 0:
                return []
            if rows.shape[0] * 4 < matrix.shape[0]:  # selective: score only the allowed rows
                scores = _scores(matrix[rows], query, helper)
                top = _top_k(scores, k)
                rows, scores = rows[top], scores[top]
            else:  # broad: one full product, rejected rows pushed to the bottom
                scores = _scores(matrix, query, helper)
                scores[~mask] = -np.inf
                top = _top_k(scores, min(k, rows.shape[0]))
                rows, scores = top, scores[top]
        elif helper is not None and matrix.shape[0] >= PARALLEL_MIN_ROWS:
            rows, scores = scan.best(matrix, query, k, helper)
        else:
            scores = matrix @ query
            rows = _top_k(scores, k)
            scores = scores[rows]
        return [Hit(pid, s) for pid, s in zip(cache.ids[rows].tolist(), scores.tolist(), strict=True)]

    # -- approximate indexes (store/ann.py) -----------------------------------------------------

    def _current_generation(self) -> int:
        if self._generation is None:
            raw = self._meta(ann.GENERATION_KEY)
            self._generation = int(raw) if raw is not None else 0
        return self._generation

    def _store_uuid(self) -> str:
        return self._meta("store_uuid") or ""

    def _ann_index(self, field: str) -> ann.AnnIndex | None:
        """The current approximate index of ``field``, or None for an exact answer.

        Staleness rule: an index built at the store's current generation is used as it is; when
        only an older one exists (the store changed since), queries are answered exactly and the
        writer rebuilds it when it closes (or ``build_vector_index``); when none was ever built,
        the first query builds and saves it (what every process did before, once per process).
        """
        found = self._ann.get(field)
        generation = self._current_generation()
        if found is not None and found.generation == generation:
            return found
        root = ann.ann_dir(self.path)
        loaded = ann.load(root, field, self.vector_index, generation, self._store_uuid())
        if loaded is None:
            current = (root / ann.index_name(field, self.vector_index, generation)).exists()
            if not current and self.vector_index in ann.kinds_present(root, field):
                return None  # stale: exact until the writer rebuilds it
            loaded = self._build_ann(field, self.vector_index)  # never built, or damaged: (re)build
        if loaded is not None:
            self._ann[field] = loaded
        return loaded

    def _build_ann(self, field: str, kind: str) -> ann.AnnIndex | None:
        """Build ``kind`` over ``field`` from one snapshot of SQLite and save it beside the store."""
        conn = self.conn
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # the vectors and the generation they are, in one snapshot
        try:
            raw = self._meta(ann.GENERATION_KEY)
            generation = int(raw) if raw is not None else 0
            cache = self._load_field(field)
        finally:
            if own:
                conn.execute("COMMIT")
        if cache.matrix.shape[0] == 0:
            return None
        index = ann.build(kind, cache.matrix)
        root = ann.ann_dir(self.path)
        ids = ann.encode_ids(cache.ids)
        saved = ann.save(root, field, kind, generation, self._store_uuid(), index, cache.rowids, cache.matrix, ids)
        reopened = ann.load(root, field, kind, generation, self._store_uuid()) if saved is not None else None
        # memory-mapped when it could be saved; in memory (read-only media) otherwise
        return reopened or ann.AnnIndex(kind, field, generation, index, cache.rowids, cache.matrix.shape[1],
                                        cache.matrix, ids)

    def _refresh_vector_indexes(self) -> None:
        """Rebuild the persisted indexes this store has (any kind) that are not current."""
        schema = self.schema()
        if schema is None:
            return
        root = ann.ann_dir(self.path)
        generation = self._current_generation()
        uuid = self._store_uuid()
        for field in schema.vectors:
            for kind in sorted(ann.kinds_present(root, field)):
                if ann.load(root, field, kind, generation, uuid) is None:
                    self._build_ann(field, kind)

    @_guarded()
    def build_vector_index(self, kind: str | None = None) -> dict[str, float]:
        """Build and save the approximate index ``kind`` (default: this store's option) of every
        vector field, plus any stale ones already beside the store; returns seconds per field."""
        kind = kind or self.vector_index
        if kind not in ann.KINDS:
            raise StoreError(f"unknown approximate index {kind!r}; supported: {', '.join(ann.KINDS)}")
        out: dict[str, float] = {}
        with self._lock:
            if self._changed_elsewhere():
                self._forget_data()
            schema = self.schema()
            for field in schema.vectors if schema else ():
                start = time.perf_counter()
                self._build_ann(field, kind)
                out[field] = time.perf_counter() - start
            self._refresh_vector_indexes()
            self._ann.clear()
        return out

    def _approximate(self, index: ann.AnnIndex, vq: VectorQuery, k: int) -> list[Hit]:
        """Candidates from the approximate index, rescored exactly (float32 rows read from its copy)."""
        query = np.asarray(vq.vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != index.dims:
            raise SchemaMismatch(
                f"query vector for {vq.field!r} has {query.shape[0]} dims, the store holds {index.dims}"
            )
        ids, scores = index.search(query, k, max(k * RESCORE_FACTOR, RESCORE_MIN))
        return [Hit(pid, s) for pid, s in zip(ids, scores, strict=True)]

    def _approximate_filtered(self, index: ann.AnnIndex, vq: VectorQuery, k: int,
                              filters: Sequence[Filter]) -> list[Hit]:
        """Filtered kNN on an approximate index, a prefilter: k results whenever k products pass.

        Few products pass (at most FILTER_EXACT_ROWS, or under FILTER_ANN_MIN_SHARE of the
        index): their rows are scored exactly from the index's float32 copy (recall 1). Else the
        index is searched with the filter inside it (faiss's ID selector, so every candidate
        passes) and the candidates rescored; fewer than k back falls to the exact path."""
        query = np.asarray(vq.vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != index.dims:
            raise SchemaMismatch(
                f"query vector for {vq.field!r} has {query.shape[0]} dims, the store holds {index.dims}"
            )
        where, params = filter_sql(filters, values=self._values)
        key = (where, *params)
        mask = index.masks.get(key)
        if mask is None:
            mask = np.isin(np.asarray(index.rowids), self._allowed_rowids(filters), assume_unique=True)
            if len(index.masks) >= MASK_CACHE:
                index.masks.pop(next(iter(index.masks)))
            index.masks[key] = mask
        rows = np.flatnonzero(mask)
        wanted = min(k, len(rows))
        if wanted and len(rows) > FILTER_EXACT_ROWS and len(rows) >= FILTER_ANN_MIN_SHARE * len(mask):
            ids, scores = index.search(query, k, max(k * RESCORE_FACTOR, RESCORE_MIN), mask)
            if len(ids) >= wanted:
                return [Hit(pid, s) for pid, s in zip(ids, scores, strict=True)]
        ids, scores = index.rescore(query, k, rows)
        return [Hit(pid, s) for pid, s in zip(ids, scores, strict=True)]

    def _ids_for_rowids(self, rowids: np.ndarray) -> dict[int, str]:
        values = rowids.tolist()
        if not values:
            return {}
        marks = ",".join("?" * len(values))
        return dict(self.conn.execute(f"SELECT rowid, id FROM products WHERE rowid IN ({marks})", values).fetchall())

    @_guarded(empty=dict)
    def get(self, ids: Sequence[str]) -> dict[str, StoredProduct]:
        if not ids:
            return {}
        with self._lock:
            out: dict[str, StoredProduct] = {}
            for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    "SELECT p.rowid, p.id, p.title, p.description, p.extra, p.image, p.market, "
                    "(SELECT group_concat(field) FROM vectors v WHERE v.product = p.rowid) "
                    f"FROM products p WHERE p.id IN ({marks})",
                    chunk,
                ).fetchall()
                for _rowid, pid, title, description, extra, image, market, fields in rows:
                    out[pid] = StoredProduct(
                        _product_from_row(pid, title, description, extra, market),
                        image,
                        tuple(sorted(fields.split(","))) if fields else (),
                    )
            return out

    @_guarded(empty=int)
    def count(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT count(*) FROM products").fetchone()[0])

    @_guarded(empty=lambda: None)
    def get_metadata(self, key: str) -> dict[str, Any] | None:
        metadata_json(key, {})  # checks the key
        with self._lock:
            raw = self._meta(f"metadata:{key}")
        return None if raw is None else dict(json.loads(raw))

    @_guarded(empty=list)
    def ids(self) -> list[str]:
        """Every product id, sorted."""
        with self._lock:
            return [str(pid) for (pid,) in self.conn.execute("SELECT id FROM products ORDER BY id")]

    @_guarded(empty=dict)
    def category_counts(self) -> dict[tuple[str, ...], int]:
        """Products per category node (every level), for trees and evaluation."""
        with self._lock:
            rows = self.conn.execute("SELECT node, sum(n) FROM category_postings GROUP BY node").fetchall()
            return {tuple(node.split(NODE_SEP)): n for node, n in rows}

    @_guarded(empty=dict)
    def vectors(self, ids: Sequence[str], field: str) -> dict[str, np.ndarray]:
        """The stored ``field`` vectors of ``ids`` (an id without one is absent), e.g. for
        "more like this" queries on a product's own vectors."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    "SELECT p.id, v.vec FROM vectors v JOIN products p ON p.rowid = v.product "
                    f"WHERE v.field = ? AND p.id IN ({marks})",
                    [field, *chunk],
                ).fetchall()
                out.update((pid, np.frombuffer(vec, dtype=np.float32).copy()) for pid, vec in rows)
        return out

    @_guarded(empty=list)
    def image_dirs(self) -> list[str]:
        """Distinct directories of the local image files the products refer to (URLs left
        out): where a server may serve catalogue images from."""
        with self._lock:
            rows = self.conn.execute("SELECT DISTINCT image FROM products WHERE image IS NOT NULL").fetchall()
        dirs = {str(Path(ref).parent) for (ref,) in rows if "://" not in ref and Path(ref).is_absolute()}
        return sorted(dirs)

    @_guarded()
    def stats(self) -> dict[str, Any]:
        with self._lock:
            conn = self.conn
            schema = self.schema()
            vector_counts = dict(conn.execute("SELECT field, count(*) FROM vectors GROUP BY field").fetchall())
            top = conn.execute(
                f"SELECT node, sum(n) AS total FROM category_postings WHERE instr(node, '{NODE_SEP}') = 0 "
                "GROUP BY node ORDER BY total DESC"
            ).fetchall()
            return {
                "backend": "embedded",
                "path": str(self.path),
                "file_bytes": self.path.stat().st_size if self.path.exists() else 0,
                "products": self.count(),
                "with_image": conn.execute("SELECT count(*) FROM products WHERE has_image = 1").fetchone()[0],
                "category_nodes": conn.execute("SELECT count(DISTINCT node) FROM category_postings").fetchone()[0],
                "top_categories": dict(top),
                "markets": dict(
                    conn.execute("SELECT coalesce(market, '-'), count(*) FROM products GROUP BY market").fetchall()
                ),
                "lexical_engine": self.lexical_engine,
                "lexical_fields": list(LEXICAL_FIELDS),
                "vector_fields": {
                    name: {**f.to_json(), "count": vector_counts.get(name, 0)}
                    for name, f in (schema.vectors.items() if schema else [])
                },
            }


def _scores(matrix: np.ndarray, query: np.ndarray, helper: concurrent.futures.Executor | None) -> np.ndarray:
    """Exact scores: shared with ``helper`` (store/scan.py) for large matrices, else the BLAS's own threads."""
    if helper is None or matrix.shape[0] < PARALLEL_MIN_ROWS:
        return matrix @ query
    return scan.scores(matrix, query, helper)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first (argpartition, then sort only those k)."""
    n = scores.shape[0]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _product_from_row(pid: str, title: str, description: str, extra: str, market: str | None) -> Product:
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
