"""The lexical (BM25) engine of an embedded store, behind one small interface.

Two engines implement ``LexicalEngine``: a tantivy index beside the SQLite file, ranked by the
native BM25F scorer (``lexical_tantivy``, the default) and FTS5 inside the file
(``lexical_fts5``). The engine is chosen when a store is created and recorded in its ``meta``
table; an existing store keeps its own. The store calls the interface and never asks which
engine it holds.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ...config import env_name, env_value
from ...errors import MissingExtraError, StoreError
from ...filters import Filter
from ...schema import Hit, LexicalQuery
from ..batch_write import PreparedBatch
from . import lexical_fts5, lexical_tantivy

log = logging.getLogger("ctir_es.store")
LEXICAL_ENV = env_name("lexical_engine")  # the engine of NEW stores when the constructor names none
# When nothing names one: tantivy. With the native scorer (ctir_es_native) it scores FTS5's
# BM25F, within noise of FTS5 on every flipkart-1050 table (docs/evaluation.md), about 10x faster
# at 100k products. Without the native module (a bare `pip install` that skipped ./native), new
# stores get FTS5 and one notice says how to have the fast engine: a working store first.
DEFAULT_LEXICAL_ENGINE = "tantivy"
FALLBACK_LEXICAL_ENGINE = "fts5"


def default_engine() -> str:
    """The engine of a new store that nothing names: ``DEFAULT_LEXICAL_ENGINE`` when it can run."""
    try:
        lexical_tantivy.native_module()
    except MissingExtraError as exc:
        log.warning("new store: the %s lexical engine, not the faster %s one (%s)",
                    FALLBACK_LEXICAL_ENGINE, DEFAULT_LEXICAL_ENGINE, exc)
        return FALLBACK_LEXICAL_ENGINE
    return DEFAULT_LEXICAL_ENGINE


@dataclass(frozen=True)
class Snapshot:
    """What an engine may ask of the store while it ranks (both cached until the data changes)."""

    values: bool  # the file has the product_values table (a format-2 store read as it is has not)
    names: Callable[[], tuple[np.ndarray, np.ndarray] | None]  # (ascending rowids, ids) when in memory
    value_rowids: Callable[[Sequence[Filter]], np.ndarray]  # ascending rowids passing value filters


class LexicalWrite(Protocol):
    """The lexical side of one ``upsert`` transaction."""

    def add(self, conn: sqlite3.Connection, batch: PreparedBatch, rowids: Any) -> None:
        """Inside the transaction: the batch's rows have just been written."""

    def finish(self, conn: sqlite3.Connection, *, committed: bool) -> None:
        """After the COMMIT (``committed``) or the ROLLBACK."""


class LexicalEngine(Protocol):
    name: str
    # Whether BM25 in a side thread beside an exact kNN scan pays off (store/scan.py): not for
    # an engine so fast (tantivy, ~0.2 ms at 100k) that waking a thread and splitting the scan
    # cost more than they save.
    beside_exact_scan: bool

    def bm25(self, conn: sqlite3.Connection, query: LexicalQuery, k: int, filters: Sequence[Filter],
             snapshot: Snapshot) -> list[Hit]:
        """The ``k`` best products for ``query`` passing ``filters``, best first."""

    def begin_write(self, conn: sqlite3.Connection) -> LexicalWrite:
        """Inside an ``upsert`` transaction, before its rows are written."""

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """After any other committed write of this process (delete, vectors)."""

    def follow(self, conn: sqlite3.Connection) -> None:
        """A reader saw another connection's commit (a writer that may have died)."""

    def check(self) -> None:
        """Raise the ``StoreError`` of a damaged index (a full read)."""

    def gaps(self, conn: sqlite3.Connection, products: int) -> list[str]:
        """Inside one snapshot: how the index disagrees with the ``products`` table's rows."""

    def close(self) -> None: ...


class EngineKind(NamedTuple):
    tables: str  # SQL run when a store of this engine is created or opened for writing
    open: Callable[[Path, sqlite3.Connection, bool], LexicalEngine]  # (store path, connection, writable)


ENGINES: dict[str, EngineKind] = {
    "fts5": EngineKind(lexical_fts5.FTS_DDL, lexical_fts5.Fts5Lexical.open),
    "tantivy": EngineKind(lexical_tantivy.LOG_DDL, lexical_tantivy.open_beside),
}


def recorded(conn: sqlite3.Connection) -> str | None:
    """The engine the store records (stores made before the setting existed use FTS5)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='lexical_engine'").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is not None:
        return str(row[0])
    has_fts = conn.execute("SELECT 1 FROM sqlite_master WHERE name='products_fts'").fetchone()
    return "fts5" if has_fts else None


def record_engine(conn: sqlite3.Connection, wanted: str | None) -> None:
    """Record the lexical engine of a new store (an existing one keeps its own) and create its
    tables. ``wanted``: the constructor's engine, else the lexical_engine setting's env var
    (checked there), else the default."""
    engine = recorded(conn)
    if engine is None:
        old = conn.execute("SELECT 1 FROM sqlite_master WHERE name='products_fts'").fetchone()
        engine = "fts5" if old else (wanted or env_value("lexical_engine") or default_engine())
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('lexical_engine', ?)", (engine,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_uuid', ?)", (lexical_tantivy.new_store_uuid(),))
        engine = recorded(conn)
    conn.executescript(_kind(engine).tables)


def engine_of(path: Path, conn: sqlite3.Connection, required: str | None) -> str:
    """The store's engine; ``required``: the one the caller must have (another is refused)."""
    engine = recorded(conn) or "fts5"
    _kind(engine)
    if required is not None and engine != required:
        raise StoreError(f"store {path} uses the {engine} lexical engine, not {required}; "
                         "open it without naming an engine, or ingest into a new --store")
    return engine


def open_engine(engine: str, path: Path, conn: sqlite3.Connection, *, writable: bool) -> LexicalEngine:
    return _kind(engine).open(path, conn, writable)


def _kind(engine: str | None) -> EngineKind:
    found = ENGINES.get(engine or "")
    if found is None:
        raise StoreError(f"the store records the lexical engine {engine!r}, which this ctir-es does not know "
                         f"(it knows {', '.join(ENGINES)}): open it with the ctir-es that wrote it")
    return found
