"""A tantivy BM25 index beside the SQLite store: the fast lexical engine (``lexical="tantivy"``).

SQLite stays the source of truth. Every change to ``products`` appends the product's rowid to
``lexical_log`` (triggers, in the same transaction as the change). The tantivy index records
the last log position it has applied (``state.json``, written after each tantivy commit), and
``catch_up`` applies the rest: delete by rowid, re-add from the current SQLite row. Applying a
position twice is harmless (delete + add), so a crash between the tantivy commit and the state
file only repeats work; a crash before the tantivy commit loses nothing (the log still holds it).
Inserts of rowids above every rowid the index may hold skip the delete (bulk loads); that bound
is written to the state file before each tantivy commit.

A batch of the writer process, when the log holds nothing else (``PendingBatch``): its rows go
to tantivy's writer inside the SQLite transaction that writes them (tantivy indexes them in its
own thread while SQLite commits), without being read back from SQLite; tantivy commits them only
after SQLite's COMMIT, and drops them (``rollback``) when the SQLite transaction fails. The log + SQLite stay
the path of every other case (a crash, another process's batch, entries left over).

Freshness rule: the process that writes SQLite catches the index up right after each committed
batch; any other process catches up on open when no writer holds tantivy's lock. A reader may
therefore see lexical results that lag SQLite by the batch being indexed (milliseconds); hits are
mapped to ids through the reader's SQLite snapshot, so a deleted product is never returned.

Scoring: FTS5's ``bm25()`` (BM25F: the row as one document, weighted term frequencies of the
queried fields saturated once, k1=1.2, b=0.75, FTS5's IDF), computed by the native scorer
(``ctir_es_native``, Rust on the tantivy crate, native/) over the index tantivy-py writes;
analysis: simple tokenizer, lower case, ASCII folding, English (Snowball) stemming (FTS5:
unicode61 remove_diacritics + Porter).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import MissingExtraError, StoreError
from ...filters import Filter
from ...schema import LEXICAL_FIELDS, Hit, LexicalQuery
from ..batch_write import NODE_SEP, PreparedBatch, lexical_rows, stored_nodes

MAX_QUERY_TERMS = 64
WORD = re.compile(r"\w+")  # a query word, as lexical_fts5.fts_query splits them
# Value filters are answered by SQLite (the product_values table) as a set of rowids. Up to this
# many, the set goes into the query (a term set on rowid: ~5 ms to build at 20k, ~60 ms with the
# search at 100k, measured on 200k documents); above it the filter is broad (at least this many
# products pass), so the best text matches are fetched deeper and those outside the set dropped.
TERM_SET_MAX = 20_000
ANALYZER = "ctir_en"
WRITER_HEAP = 128_000_000
CATCH_UP_CHUNK = 50_000
STATE = "state.json"
FOOTER_MAGIC = 1337  # tantivy's file footer: JSON {"version", "crc"}, its length (u32 LE), this (u32 LE)

# SQL for stores whose lexical engine is tantivy: a change log fed by triggers.
LOG_DDL = """
CREATE TABLE IF NOT EXISTS lexical_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, product INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS lexical_log_ai AFTER INSERT ON products BEGIN
    INSERT INTO lexical_log(product) VALUES (new.rowid);
END;
CREATE TRIGGER IF NOT EXISTS lexical_log_au AFTER UPDATE ON products BEGIN
    INSERT INTO lexical_log(product) VALUES (new.rowid);
END;
CREATE TRIGGER IF NOT EXISTS lexical_log_ad AFTER DELETE ON products BEGIN
    INSERT INTO lexical_log(product) VALUES (old.rowid);
END;
"""


@dataclass
class PendingBatch:
    """The documents of a batch SQLite is writing, added to tantivy's writer and not committed:
    the log entries after ``since`` (up to ``last``, known before the COMMIT) are the batch's own."""

    lex: TantivyLexical
    since: int
    max_rowid: int  # the highest rowid the index may hold, this batch's documents included
    last: int = 0
    added: int = 0

    def add(self, batch: PreparedBatch, rowids: Any) -> None:
        """Index written rows; a rowid an earlier call added is deleted first, as any rowid the
        index may hold."""
        rows = lexical_rows(batch, rowids)
        if rows:
            touched = [row[0] for row in rows]
            self.lex._replace(touched, rows, self.max_rowid)
            self.max_rowid = max(self.max_rowid, max(touched))
            self.added += len(rows)


@dataclass(frozen=True)
class NativeQuery:
    """The arguments of ``ctir_es_native.Reader.search``: analysed terms, (field, weight) with
    weight > 0, and filters as (field, "must" | "must_not", values)."""

    terms: list[str]
    weights: list[tuple[str, float]]
    filters: list[tuple[str, str, list[Any]]]


def native_module() -> Any:
    try:
        import ctir_es_native
    except ImportError as exc:
        raise MissingExtraError(
            "the tantivy lexical engine ranks with ctir-es's native module (ctir_es_native), which is "
            "not installed: in a checkout, `pip install ./native` (needs Rust's cargo) or `make install`"
        ) from exc
    return ctir_es_native


def _tantivy() -> Any:
    try:
        import tantivy
    except ImportError as exc:
        raise MissingExtraError(
            "the tantivy lexical engine needs the tantivy package, a dependency of ctir-es: reinstall "
            "ctir-es (`pip install ctir-es`, or `pip install -e .` in a checkout)"
        ) from exc
    return tantivy


def analyzer() -> Any:
    t = _tantivy()
    return (
        t.TextAnalyzerBuilder(t.Tokenizer.simple())
        .filter(t.Filter.remove_long(40))
        .filter(t.Filter.lowercase())
        .filter(t.Filter.ascii_fold())
        .filter(t.Filter.stemmer("english"))
        .build()
    )


def _schema() -> Any:
    t = _tantivy()
    sb = t.SchemaBuilder()
    sb.add_unsigned_field("rowid", indexed=True, fast=True)
    for name in LEXICAL_FIELDS:
        sb.add_text_field(name, tokenizer_name=ANALYZER, index_option="freq")
    for name in ("nodes", "market", "pid"):
        sb.add_text_field(name, tokenizer_name="raw", index_option="basic")
    sb.add_unsigned_field("has_image", indexed=True)
    return sb.build()


def index_dir(store_path: Path) -> Path:
    """Where the tantivy index of ``store_path`` lives (one store path for the user)."""
    return store_path.with_name(store_path.name + ".lexical")


def _is_panic(exc: BaseException) -> bool:
    """A Rust panic inside tantivy (damaged segment files): pyo3's ``PanicException``, which
    derives from BaseException and whose ``pyo3_runtime`` module is not importable, hence the
    match by class name. Never true of KeyboardInterrupt, SystemExit or GeneratorExit."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    return any(cls.__name__ == "PanicException" for cls in type(exc).__mro__)


def _indexed_rows(conn: sqlite3.Connection, where: str, params: list[int]) -> list[tuple[Any, ...]]:
    """Products rows as the index takes them (``_document``): their category nodes from ``extra``."""
    return [(*row[:-1], stored_nodes(row[-1])) for row in conn.execute(
        "SELECT rowid, id, title, categories, attributes, description, market, has_image, extra "
        f"FROM products WHERE {where}", params)]


def damaged(store_path: Path, detail: str) -> StoreError:
    """The error of a damaged tantivy index, naming it and the fix (it is derived from SQLite)."""
    folder = index_dir(store_path)
    detail = " ".join(detail.split())  # tantivy's messages may span lines: the CLI shows one
    return StoreError(f"the tantivy index {folder} of store {store_path} is damaged ({detail}); it is derived "
                      f"from the store: remove {folder} and the next command that opens the store on writable "
                      f"media (e.g. `ctir-es stats --store {store_path}`) rebuilds it from SQLite")


def _checksum_problem(path: Path) -> str | None:
    """What is wrong with one segment file, checked as tantivy's ``validate_checksum`` does: the
    CRC32 of the bytes before the footer against the one the footer records (None: sound)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path.name}: {exc.strerror or exc}"
    if len(data) < 8:
        return f"{path.name}: cut short ({len(data)} bytes)"
    length = int.from_bytes(data[-8:-4], "little")
    magic = int.from_bytes(data[-4:], "little")
    if magic != FOOTER_MAGIC or length > len(data) - 8:
        return f"{path.name}: no tantivy footer (cut short or overwritten at the end)"
    try:
        crc = json.loads(data[-8 - length : -8])["crc"]
    except (ValueError, KeyError, TypeError):
        return f"{path.name}: unreadable footer"
    if zlib.crc32(data[: -8 - length]) != crc:
        return f"{path.name}: checksum mismatch"
    return None


@dataclass
class TantivyWrite:
    """tantivy's part of one ``upsert`` transaction: the batch given to tantivy's writer as it is
    written (``pending``), or None when the log holds other entries or the writer lock is not
    ours, and then the log catches the index up after the COMMIT."""

    lex: TantivyLexical
    pending: PendingBatch | None

    def add(self, conn: sqlite3.Connection, batch: PreparedBatch, rowids: Any) -> None:
        if self.pending is not None:
            # tantivy indexes the rows just written (in its own thread, while SQLite commits)
            # instead of reading them back after the COMMIT
            self.pending.add(batch, rowids)
            (self.pending.last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM lexical_log").fetchone()

    def finish(self, conn: sqlite3.Connection, *, committed: bool) -> None:
        if self.pending is not None:
            self.lex.end_batch(conn, self.pending, committed=committed)  # rolled back: tantivy drops it too
        elif committed:
            self.lex.catch_up(conn, attempts=20)


def open_beside(store_path: Path, conn: sqlite3.Connection, writable: bool) -> TantivyLexical:
    """The tantivy index beside the store, opened and caught up with SQLite (a missing or
    foreign one is rebuilt from SQLite); a reader does not keep the writer lock."""
    row = conn.execute("SELECT value FROM meta WHERE key='store_uuid'").fetchone()
    lex = TantivyLexical(store_path, str(row[0]) if row else "")
    try:
        lex.open(create=True)
        lex.catch_up(conn, attempts=20 if writable else 1)
        if not writable:
            lex.release_writer()
    except (OSError, ValueError) as exc:
        raise StoreError(f"the tantivy index beside store {store_path} cannot be opened or updated ({exc}); "
                         f"it is derived from the store: remove {index_dir(store_path)} "
                         "on writable media and open the store again to rebuild it") from exc
    return lex


class TantivyLexical:
    """The tantivy index of one store (a ``LexicalEngine``). All calls come under the store's lock."""

    name = "tantivy"
    beside_exact_scan = False  # ~0.2 ms at 100k: a side thread beside an exact scan costs more

    def __init__(self, store_path: Path, store_uuid: str) -> None:
        self.store_path = store_path
        self.dir = index_dir(store_path)
        self.store_uuid = store_uuid
        self._t = _tantivy()
        self._analyzer = analyzer()
        self._index: Any = None
        self._schema: Any = None
        self._writer: Any = None
        self._meta_stamp: tuple[int, int] | None = None  # of state.json
        self._searcher: Any = None
        self._reader: Any = None  # ctir_es_native.Reader: the searches
        self._reader_dir: Path | None = None
        self._reader_stamp: tuple[int, int] | None = None
        self._private_copy: Path | None = None  # a copy of an index on read-only media
        self.applied = 0
        self.max_rowid = 0
        self.complete = True  # False: a new index, not yet filled from the products table

    # -- opening ---------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.dir / STATE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def open(self, *, create: bool) -> bool:
        """Open the index (creating or resetting it when ``create``); False when absent."""
        if self._index is not None:
            return True
        state = self._state()
        fresh = state.get("store") != self.store_uuid
        if fresh:
            if not create:
                return False
            if self.dir.exists():  # left from another store at this path: start over
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
        self._schema = _schema()
        if not fresh and not os.access(self.dir, os.W_OK):
            self._use_private_copy()
        self._index = self._t.Index(self._schema, path=str(self.dir), reuse=not fresh)
        self._index.register_tokenizer(ANALYZER, self._analyzer)
        self._index.config_reader(reload_policy="Manual")
        if fresh:  # filled from every products row by the next catch-up (the log is trimmed as it goes)
            self.complete = False
            self._write_state(0, 0)
        else:
            self.applied = int(state.get("applied", 0))
            self.max_rowid = int(state.get("max_rowid", 0))
            self.complete = bool(state.get("complete", True))
        return True

    def _use_private_copy(self) -> None:
        """Read-only media: tantivy takes a lock file beside the index even to read it, so the
        index is copied to a private temporary folder (removed on close) and opened there. A
        catch-up of this reader then writes only to the copy."""
        copy = Path(tempfile.mkdtemp(prefix="ctir-es-lexical-"))
        try:
            shutil.copytree(self.dir, copy, dirs_exist_ok=True)
        except OSError:
            shutil.rmtree(copy, ignore_errors=True)
            raise
        self._private_copy = copy
        self.dir = copy

    def _write_state(self, applied: int, max_rowid: int) -> None:
        tmp = self.dir / (STATE + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"store": self.store_uuid, "applied": applied, "max_rowid": max_rowid,
                       "complete": self.complete}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / STATE)
        self.applied, self.max_rowid = applied, max_rowid

    def _acquire_writer(self, attempts: int) -> bool:
        if self._writer is not None:
            return True
        for i in range(attempts):
            try:
                self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
                return True
            except ValueError:  # another process holds tantivy's writer lock
                time.sleep(0.05 * (i + 1))
        return False

    def release_writer(self) -> None:
        if self._writer is not None:
            self._writer.wait_merging_threads()  # releases the lock
            self._writer = None

    # -- keeping up with SQLite ----------------------------------------------------------------

    def begin_batch(self, since: int) -> PendingBatch | None:
        """Inside the writer's SQLite transaction, when the log holds no entry after ``since``:
        a batch to index as it is written (None when tantivy's writer lock is not ours)."""
        if not self.complete or not self._acquire_writer(1):  # never wait holding SQLite's write lock
            return None
        if int(self._state().get("applied", self.applied)) != since:  # another process moved it
            return None
        return PendingBatch(self, since, self.max_rowid)

    def end_batch(self, conn: sqlite3.Connection, pending: PendingBatch, *, committed: bool) -> None:
        """After the SQLite transaction: commit the pending documents when SQLite committed them
        and the log holds them alone, else drop them (and catch up from the log if committed)."""
        if committed and pending.added:
            (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM lexical_log").fetchone()
            if last == pending.last and int(self._state().get("applied", self.applied)) == pending.since:
                self._commit(pending.max_rowid, last, pending.added)
                return
        if pending.added:
            self._writer.rollback()
        if committed:
            self.catch_up(conn, attempts=20)

    def catch_up(self, conn: sqlite3.Connection, *, attempts: int = 1) -> int:
        """Apply ``lexical_log`` entries after ``applied``; returns how many were applied
        (0 when up to date or when another process holds the writer lock).

        The log can prove the index complete only when it still holds every entry after
        ``applied`` (the writer prunes the entries its index has applied). An index restored
        from an older copy, or one that another name of the file left behind, is past that
        point: it is rebuilt from SQLite instead of being marked complete with a gap."""
        first, last = log_bounds(conn)
        if last == self.applied and self.complete:
            return 0
        if not self._acquire_writer(attempts):
            return 0
        state = self._state()  # another process may have moved it
        self.applied = int(state.get("applied", self.applied))
        self.complete = bool(state.get("complete", self.complete))
        first, last = log_bounds(conn)
        if self.applied > last or self.applied < first - 1:  # ahead of the store, or entries pruned
            self.complete = False
        if not self.complete:
            return self._rebuild(conn)
        applied, max_rowid, total = self.applied, self.max_rowid, 0
        while True:
            conn.execute("BEGIN")  # one snapshot: the log chunk and the rows it names
            try:
                log = conn.execute(
                    "SELECT seq, product FROM lexical_log WHERE seq > ? ORDER BY seq LIMIT ?", (applied, CATCH_UP_CHUNK)
                ).fetchall()
                if not log:
                    break
                touched = sorted({r for _, r in log})
                rows = self._rows(conn, touched)
            finally:
                conn.execute("COMMIT")
            self._replace(touched, rows, max_rowid)
            max_rowid = max(max_rowid, touched[-1])
            applied = log[-1][0]
            total += len(log)
            if len(log) < CATCH_UP_CHUNK:
                break
        return self._commit(max_rowid, applied, total)

    def _rebuild(self, conn: sqlite3.Connection) -> int:
        """Index every products row (a new index: the log holds only the changes not yet applied
        by the index it replaces). One SQLite snapshot; the state says complete only after the
        tantivy commit, so a crash before it starts the rebuild over."""
        self._writer.delete_all_documents()
        total, max_rowid = 0, 0
        conn.execute("BEGIN")
        try:
            _, last = log_bounds(conn)
            while True:
                rows = _indexed_rows(conn, "rowid > ? ORDER BY rowid LIMIT ?", [max_rowid, CATCH_UP_CHUNK])
                if not rows:
                    break
                for row in rows:
                    self._writer.add_document(self._document(row))
                max_rowid, total = rows[-1][0], total + len(rows)
        finally:
            conn.execute("COMMIT")
        self._writer.commit()
        self.complete = True
        self._write_state(int(last), max_rowid)
        return total

    def _replace(self, touched: list[int], rows: list[tuple[Any, ...]], max_rowid: int) -> None:
        """Delete the ``touched`` rowids the index may hold, then add ``rows`` (the current ones)."""
        replaced = [r for r in touched if r <= max_rowid]  # may be in the index already
        if replaced:  # (delete_documents_by_term does not match u64 terms in tantivy-py 0.27)
            self._writer.delete_documents_by_query(self._t.Query.term_set_query(self._schema, "rowid", replaced))
        for row in rows:
            self._writer.add_document(self._document(row))

    def _commit(self, max_rowid: int, applied: int, total: int) -> int:
        # Record the highest rowid BEFORE the commit: after a crash between the commit and the
        # final state, the index never holds a rowid above the recorded one, so a replayed
        # insert is always deleted first (replaced, never duplicated).
        self._write_state(self.applied, max_rowid)
        self._writer.commit()
        self._write_state(applied, max_rowid)
        return total

    def _rows(self, conn: sqlite3.Connection, rowids: list[int]) -> list[tuple[Any, ...]]:
        """The current rows of ``rowids`` (absent: deleted), their category nodes from ``extra``."""
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(rowids), 900):
            chunk = rowids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            out += _indexed_rows(conn, f"rowid IN ({marks})", chunk)
        return out

    def _document(self, row: tuple[Any, ...]) -> Any:
        rowid, pid, title, categories, attributes, description, market, has_image, nodes = row
        doc = self._t.Document()
        doc.add_unsigned("rowid", rowid)
        doc.add_text("pid", pid)
        for name, text in zip(LEXICAL_FIELDS, (title, categories, attributes, description), strict=True):
            if text:
                doc.add_text(name, text)
        for node in nodes:
            doc.add_text("nodes", node)
        if market is not None:
            doc.add_text("market", market)
        doc.add_unsigned("has_image", int(has_image))
        return doc

    # -- searching -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Damaged segment files as one ``StoreError`` naming the fix: tantivy raises ValueError
        (an I/O or data error) or panics (a Rust panic, a BaseException) when it reads them."""
        try:
            yield
        except ValueError as exc:
            raise damaged(self.store_path, str(exc)) from exc
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            raise damaged(self.store_path, f"tantivy panicked: {exc}") from exc

    def searcher(self) -> Any:
        """The latest committed view, reloaded when the state file was replaced (after every
        tantivy commit; a new inode each time, so no clock granularity is involved)."""
        try:
            st = os.stat(self.dir / STATE)
            stamp = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
        if self._searcher is None or stamp != self._meta_stamp:
            with self._reading():
                self._index.reload()
                self._searcher = self._index.searcher()
            self._meta_stamp = stamp
        return self._searcher

    def terms(self, text: str) -> list[str]:
        """The analysed terms of ``text``, word by word as FTS5's query takes them (one phrase per
        distinct word, ``lexical_fts5.fts_query``): two words with one stem ("towels towel")
        give the term twice, and each adds its own share to the score, as in FTS5."""
        words = list(dict.fromkeys(w.lower() for w in WORD.findall(text)))[:MAX_QUERY_TERMS]
        return [t for w in words for t in self._analyzer.analyze(w)][:MAX_QUERY_TERMS]

    def native(self) -> Any:
        """The native BM25F reader of the latest committed view, reloaded when the state file
        was replaced (after every tantivy commit)."""
        try:
            st = os.stat(self.dir / STATE)
            stamp = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
        if self._reader is None or self._reader_dir != self.dir:
            with self._native_errors():
                self._reader = native_module().Reader(str(self.dir), list(LEXICAL_FIELDS), "rowid")
            self._reader_dir, self._reader_stamp = self.dir, stamp
        elif stamp != self._reader_stamp:
            with self._native_errors():
                self._reader.reload()
            self._reader_stamp = stamp
        return self._reader

    @contextlib.contextmanager
    def _native_errors(self) -> Iterator[None]:
        """The native module's errors as the store's: damaged files name the fix, anything else
        (an index folder that cannot be opened, a field it lacks) is a plain ``StoreError``."""
        native = native_module()
        try:
            yield
        except native.IndexDamaged as exc:
            raise damaged(self.store_path, str(exc)) from exc
        except native.NativeError as exc:
            raise StoreError(f"the tantivy index {self.dir} of store {self.store_path} cannot be searched "
                             f"({exc})") from exc

    def query(self, query: LexicalQuery, filters: Sequence[Filter],
              rowids: Sequence[int] | None = None) -> NativeQuery | None:
        """The native search's arguments; ``rowids``: only these products (value filters,
        resolved by SQLite). None: nothing can match (no term, no weighted field)."""
        terms = self.terms(query.text)
        weights = [(name, float(query.weights.get(name, 0.0))) for name in LEXICAL_FIELDS]
        weights = [(name, w) for name, w in weights if w > 0]  # FTS5 searches these columns only
        if not terms or not weights:
            return None
        clauses = [] if rowids is None else [("rowid", "must", [int(r) for r in rowids])]
        for f in filters:
            clause = self._filter(f)
            if clause is not None:
                clauses.append(clause)
        return NativeQuery(terms, weights, clauses)

    def _filter(self, f: Filter) -> tuple[str, str, list[Any]] | None:
        """One filter as the native search takes it: (field, must | must_not, values); a "must"
        with no values lets nothing through."""
        if f.field == "category":
            return "nodes", "must", [NODE_SEP.join(f.path)]
        if f.field == "market" and f.op == "eq":
            return "market", "must", [f.value]
        if f.field in ("market", "id"):
            field = "pid" if f.field == "id" else "market"
            values = list(f.value)
            if f.op == "not_in":
                return (field, "must_not", values) if values else None
            return field, "must", values
        if f.field == "has_image":
            return "has_image", "must", [int(f.value)]
        raise StoreError(f"the tantivy lexical engine cannot filter on {f.field!r}")

    def search(self, conn: sqlite3.Connection, query: LexicalQuery, k: int, filters: Sequence[Filter],
               known: tuple[Any, Any] | None = None, allowed: Any = None) -> list[Hit]:
        """``known``: (sorted rowids, ids) of the current SQLite snapshot (a loaded vector
        matrix or approximate index), used to name hits without SQL; other rowids are looked up
        in SQLite. ``allowed``: the ascending rowids the value filters let through (None: no
        value filter)."""
        import numpy as np

        small = allowed is not None and len(allowed) <= TERM_SET_MAX
        q = self.query(query, filters, allowed.tolist() if small else None)
        if q is None:
            return []
        reader = self.native()
        limit = k
        if allowed is not None and not small:  # broad: deep enough for k of them at the filter's share
            limit = max(k, 2 * k * max(int(reader.num_docs()), 1) // len(allowed))
        while True:
            with self._native_errors():
                found = reader.search(q.terms, q.weights, q.filters, limit)
            if not found:
                return []
            if allowed is None or small:
                break
            arr = np.asarray([r for r, _ in found], dtype=np.int64)
            pos = np.minimum(np.searchsorted(allowed, arr), len(allowed) - 1)
            keep = allowed[pos] == arr
            if keep.sum() >= k or len(found) < limit:  # enough, or every match seen: bounded by the index
                found = [h for h, ok in zip(found, keep.tolist(), strict=True) if ok][:k]
                if not found:
                    return []
                break
            limit *= 4
        rowids = [r for r, _ in found]
        ids: dict[int, str] = {}
        missing = rowids
        if known is not None and len(known[0]):
            import numpy as np

            arr = np.asarray(rowids, dtype=np.int64)
            pos = np.minimum(np.searchsorted(known[0], arr), len(known[0]) - 1)
            hit = known[0][pos] == arr
            names = known[1][pos[hit]].tolist()  # str, or UTF-8 bytes from an approximate index's map
            ids = dict(zip(arr[hit].tolist(), [n.decode() if isinstance(n, bytes) else n for n in names], strict=True))
            missing = arr[~hit].tolist()
        if missing:
            marks = ",".join("?" * len(missing))
            ids.update(conn.execute(f"SELECT rowid, id FROM products WHERE rowid IN ({marks})", missing).fetchall())
        return [Hit(ids[r], float(s)) for r, s in found if r in ids]

    def num_docs(self) -> int:
        return int(self.native().num_docs())

    # -- the LexicalEngine interface (store/embedded/lexical.py) -------------------------------

    def bm25(self, conn: sqlite3.Connection, query: LexicalQuery, k: int, filters: Sequence[Filter],
             snapshot: Any) -> list[Hit]:
        """Value filters are answered by SQLite as a set of rowids; the others inside tantivy."""
        known = snapshot.names()  # rowid -> id maps of the current snapshot
        on_values = [f for f in filters if f.on_value]
        allowed = snapshot.value_rowids(on_values) if on_values else None
        return self.search(conn, query, k, [f for f in filters if not f.on_value], known, allowed)

    def begin_write(self, conn: sqlite3.Connection) -> TantivyWrite:
        conn.execute("DELETE FROM lexical_log WHERE seq <= ?", (self.applied,))  # applied: not needed any more
        pending = None
        if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM lexical_log)").fetchone()[0]:
            pending = self.begin_batch(self.applied)  # the log will hold this batch alone
        return TantivyWrite(self, pending)

    def after_commit(self, conn: sqlite3.Connection) -> None:
        self.catch_up(conn, attempts=20)  # the writer brings the index up to date

    def follow(self, conn: sqlite3.Connection) -> None:
        self.catch_up(conn)  # a writer that died: catch up
        self.release_writer()

    def gaps(self, conn: sqlite3.Connection, products: int) -> list[str]:
        _, last = log_bounds(conn)
        docs = self.num_docs()
        if not self.complete:
            return [(f"the tantivy index {self.dir} is incomplete ({docs} documents, "
                     f"{products} products) and another process holds its writer")]
        if self.applied == last and docs != products:
            return [(f"the tantivy index {self.dir} holds {docs} documents, "
                     f"the products table {products} rows (remove the folder: the next writable "
                     "open rebuilds it from the store)")]
        return []

    def check(self) -> None:
        """Raise the ``StoreError`` of a damaged index: every file of every committed segment
        against its checksum (reads the whole index), then a search that opens every segment."""
        try:
            segments = [str(s["segment_id"]).replace("-", "")
                        for s in json.loads((self.dir / "meta.json").read_text())["segments"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise damaged(self.store_path, f"meta.json: {exc}") from exc
        files = sorted(self.dir.iterdir())
        problems = []
        for segment in segments:
            own = [f for f in files if f.name.startswith(segment + ".")]
            problems += [f"segment {segment}: no files"] if not own else [
                p for p in map(_checksum_problem, own) if p is not None]
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise damaged(self.store_path, "; ".join(problems[:3]) + more)
        searcher = self.searcher()
        with self._reading():
            hits = searcher.search(self._t.Query.all_query(), limit=1, count=True)
            searcher.fast_field_values("rowid", [addr for _, addr in hits.hits])
        self.native()  # and the native reader (the searches') opens it

    def close(self) -> None:
        self.release_writer()
        self._index = None
        self._searcher = None
        self._reader = None
        if self._private_copy is not None:
            shutil.rmtree(self._private_copy, ignore_errors=True)
            self._private_copy = None


def log_bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """(first, last) position of ``lexical_log``: the first entry it still holds (last + 1 when
    it holds none) and the last one ever written (AUTOINCREMENT's high-water mark, which pruning
    does not lower)."""
    first, top = conn.execute("SELECT min(seq), coalesce(max(seq), 0) FROM lexical_log").fetchone()
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'lexical_log'").fetchone()
    last = max(int(top), int(row[0]) if row is not None else 0)
    return (int(first) if first is not None else last + 1), last


def new_store_uuid() -> str:
    return uuid.uuid4().hex
