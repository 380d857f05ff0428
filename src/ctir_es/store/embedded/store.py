"""``EmbeddedStore``: the ``Store`` protocol over one SQLite file, its parts in this package.

Why SQLite: it is in the standard library, a second process can read while an ingest writes
(WAL), and a batch commits atomically, so a killed ingest never leaves half a product.
Vectors are float32 blobs searched exactly with NumPy (``knn``); the matrix of each field is
cached in memory and reloaded only when another connection has committed (``PRAGMA
data_version``).

Failure handling (docs/reliability.md):

- reading never creates anything: a missing file reads as an empty store (no schema, 0
  products) and ``stats`` says there is no store there;
- a store on read-only media is opened read-only (``mode=ro``, then ``immutable=1`` when not
  even SQLite's shared-memory file can be created); writing there is a ``StoreError``;
- a damaged file is detected on open by a cheap check (``files``: the header, the page size, a
  file size that is a whole number of pages; ``file_format``: the schema and the format
  record); corruption found later by a query is the same ``StoreError`` with the same way to
  rebuild (``failures``);
- disk full, I/O errors and read-only writes roll the batch back and say so; every batch
  committed before is kept, and re-running the ingest resumes after it;
- the writer lock is per file, not per name (``locking``);
- what is not a regular file (a FIFO, a device, a directory) is refused as the store before
  anything opens it, and nothing is created beside it;
- the WAL is folded into the file within seconds of a commit (store/wal_checkpoint.py) and
  completely when the writer closes; a ``-wal`` file deleted or replaced under a running
  process is detected (its identity, checked on every call) and reported, never dropped silently.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...config import LEXICAL_ENGINES
from ...errors import SchemaMismatch, StoreError
from ...filters import Filter
from ...products import Product
from ...schema import (
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    StoredProduct,
    VectorField,
    VectorQuery,
    WriteResult,
)
from ...vocabulary import LEXICAL_SOURCE
from .. import ann, batch_write, vector_file, wal_checkpoint
from ..base import metadata_json, new_vectors
from . import approximate, file_format, files, knn, locking, reads, stats
from .approximate import bump_generation
from .failures import NoStore, describe, guarded
from .lexical import LexicalEngine, LexicalWrite, Snapshot, engine_of, open_engine, record_engine
from .sql_filters import passing_rowids, remembered

CACHE_KIB = 65536  # SQLite page cache per connection (FTS5 doclists, products)
# How kNN is searched per store: "exact" (NumPy over the float32 matrix, the default) or an
# approximate index of 8-bit codes persisted beside the store (store/ann.py, pip install
# 'ctir-es[ann]'): "sq8" (scan of all codes), "ivf" (inverted lists) or "hnsw" (graph); see
# approximate.py for when one is used and how filters go into it.
VECTOR_INDEXES = ("exact", *ann.KINDS)
ID_MAP_AFTER = 8  # BM25-only queries on unchanged data before every id is read into memory


class EmbeddedStore:
    """SQLite + a lexical engine + NumPy. ``EmbeddedStore(path)`` does no I/O; the first call opens the file."""

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
        self._lex: LexicalEngine | None = None  # open with the connection
        self.vector_index = vector_index
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._writable = False
        self._lock = threading.RLock()  # one connection, shared by threads of one process
        self._vectors: dict[str, knn.VectorCache] = {}
        self._approx = approximate.ApproximateIndexes(self.path, vector_index)
        self._id_map: tuple[np.ndarray, np.ndarray] | None = None  # rowid -> id for BM25 alone
        self._lexical_alone = 0  # BM25 queries with no id map since the data changed
        self._wrote = False  # this instance committed a write
        self._seen_version: int | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # runs BM25 beside kNN
        self._pool_pid = 0
        self._checkpointer: wal_checkpoint.Checkpointer | None = None  # folds the WAL in beside the writer
        self._schema: IndexSchema | None = None
        self._values = True  # the open file has the product_values table (a format-2 store read as is has not)
        self._allowed: dict[tuple[Any, ...], np.ndarray] = {}  # value-filtered rowids for the lexical engine (dropped on change)
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

    @property
    def _ann(self) -> dict[str, ann.AnnIndex]:
        """The approximate indexes loaded (tests and benchmarks look inside)."""
        return self._approx.loaded

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
            self._close_lexical()
            if self._checkpointer is not None:  # a reader's
                self._checkpointer.close()
                self._checkpointer = None
            self._conn, self._writable = self._open(create=True), True
            self._conn.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoint.writer_limit_pages(self._conn)}")
            self._checkpointer = wal_checkpoint.Checkpointer(self.path)
        return self._conn

    @property
    def _lexical_engine(self) -> LexicalEngine:
        """The lexical engine of the open store (opening it for reading first)."""
        self.conn  # noqa: B018 - opens the engine with the file
        assert self._lex is not None  # set by every successful _open
        return self._lex

    def _close_lexical(self) -> None:
        if self._lex is not None:
            self._lex.close()
            self._lex = None

    def _file(self) -> int:
        """The descriptor of the store file (opened once; it must exist)."""
        if self._fd is None:
            self._fd = files.open_descriptor(self.path)
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
                self._wal_lost = wal_checkpoint.lost_error(self.path, self._conn, self._checkpointer,
                                                           missing=now is None)
            raise self._wal_lost

    def _open(self, *, create: bool) -> sqlite3.Connection:
        exists = files.exists(self.path)
        if not exists and not create:
            raise NoStore(f"no store at {self.path}: check --store, or run `ctir-es ingest ...` first to create one "
                          "(reading never creates a store)")
        if exists:
            files.check_header(self.path, self._file())
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                conn.execute(f"PRAGMA page_size={file_format.PAGE_SIZE}")  # takes effect on a new, empty file only
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
                file_format.create_tables(self.path, conn)
                record_engine(conn, self._lexical_requested or self._lexical_for_new)
                approximate.create_log(conn)  # what changed since an approximate index was built
            else:
                conn, self._read_mode = files.open_for_reading(self.path)
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys=ON")
            version = file_format.check_format(self.path, conn)
            if version < file_format.SCHEMA_VERSION:
                file_format.upgrade(self.path, conn, version)
            self._values = file_format.has_values(conn)
            self.lexical_engine = engine_of(self.path, conn, self._lexical_requested)
            if self._lex is None:
                self._lex = open_engine(self.lexical_engine, self.path, conn, writable=create)
            self._file()  # (a new store: the file SQLite has just created)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise describe(self.path, exc) from exc
        self._wal_watch = create or self._read_mode == "mode=rw"
        self._wal_id = wal_checkpoint.identity(wal_checkpoint.wal_path(self.path)) if self._wal_watch else None
        return conn

    @guarded()
    def check(self) -> list[str]:
        """SQLite's full integrity check (reads every page): an empty list when the file is sound.
        A sound file has its lexical index checked too (a tantivy index beside it: every segment
        file against its checksum; damage there raises the ``StoreError`` a query would, which
        names the index and how to rebuild it from the file)."""
        with self._lock:
            return stats.check(self.conn, self._lexical_engine, self._values)

    @contextlib.contextmanager
    def exclusive_writer(self) -> Iterator[None]:
        """Refuse a second concurrent ingest into this file (readers are never blocked): see
        ``locking``. What is not a regular file is refused before anything is opened or created."""
        with self._lock:
            if not files.exists(self.path):
                self._wconn  # noqa: B018 - creates the store: a new file has one name, SQLite's locks cover it
            fd = self._file()
        locking.acquire(self.path, fd)
        self._writer_held += 1
        try:
            with locking.pid_file(self.path):
                yield
        finally:
            self._writer_held -= 1
            if not self._writer_held:
                locking.release(fd)
            with self._lock:
                self._close_file()

    def close(self) -> None:
        with self._lock:
            self._wrote = False
            if self._writable and self._conn is not None and self._wal_lost is None:
                # no rebuild here (milliseconds): changes reach the indexes through vector_log
                with contextlib.suppress(sqlite3.Error, OSError):
                    self._approx.prune_log(self._conn)
            self._approx.close()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._close_lexical()
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
        return file_format.meta(self.conn, key)

    # -- schema -----------------------------------------------------------------------------

    @guarded(empty=lambda: None)
    def schema(self) -> IndexSchema | None:
        with self._lock:
            raw = self._meta("schema")
            return None if raw is None else IndexSchema.from_json(json.loads(raw))

    @guarded()
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

    @guarded()
    def upsert(self, docs: Sequence[Document], checkpoint: tuple[str, int] | None = None) -> WriteResult:
        schema = self._schema or self.schema() or IndexSchema()
        result = WriteResult()
        with self._lock:
            batch = batch_write.prepare(docs, schema)  # no I/O: outside the write lock SQLite holds
            lexical_write: LexicalWrite | None = None
            committed = False
            # The batch writes child rows only for products it has just written, and removes an
            # updated product's old rows itself, so the per-row foreign key checks (about 1 us
            # per product) prove nothing here. The pragma is a no-op inside a transaction, hence
            # set around it; deletes keep the cascade.
            self._wconn.execute("PRAGMA foreign_keys=OFF")
            try:
                with self._write_transaction() as conn:
                    lexical_write = self._lexical_engine.begin_write(conn)
                    writer = batch_write.TransactionWriter(conn)
                    try:
                        rowids = writer.write(batch)  # its vectors written and synced by a thread meanwhile
                        writer.finish()
                        result.written, result.errors = batch.written, batch.errors
                        lexical_write.add(conn, batch, rowids)
                        if result.written:
                            bump_generation(conn)
                        if checkpoint is not None:
                            _set_checkpoint(conn, checkpoint)
                    finally:
                        writer.sync()  # the vectors on disk before the COMMIT records them
                committed = True
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._wconn.execute("PRAGMA foreign_keys=ON")
                if lexical_write is not None and not committed:
                    lexical_write.finish(self._wconn, committed=False)
            self._after_write(result.written)
            assert lexical_write is not None  # begun inside the transaction that committed
            lexical_write.finish(self._wconn, committed=True)
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

    def _after_write(self, rows: int) -> None:
        """After a committed write of ``rows`` products: drop cached reads and tell the
        checkpointer (the lexical engine is told by the caller, after this)."""
        self._forget_data()  # our own commits do not change data_version for us
        self._wrote = self._wrote or rows > 0
        if self._checkpointer is not None:
            self._checkpointer.committed(rows)

    def _forget_data(self) -> None:
        """Drop what was read from the data (after a commit of ours or of another connection)."""
        self._vectors.clear()
        self._approx.forget()
        self._id_map = None
        self._lexical_alone = 0
        self._allowed.clear()

    @guarded(empty=lambda: None)
    def checkpoint(self, key: str) -> int | None:
        with self._lock:
            raw = self._meta(f"checkpoint:{key}")
            return None if raw is None else int(raw)

    @guarded()
    def clear_checkpoint(self, key: str) -> None:
        with self._lock:
            self._wconn.execute("DELETE FROM meta WHERE key = ?", (f"checkpoint:{key}",))

    @guarded()
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
                    bump_generation(conn)
            self._after_write(deleted)
            self._lexical_engine.after_commit(self._wconn)
            return deleted

    @guarded()
    def put_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON object under ``key`` in the store's meta table (``metadata:KEY``)."""
        text = metadata_json(key, value)
        with self._lock:
            self._wconn.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"metadata:{key}", text),
            )

    # -- vectors added in place (VectorWriter) -----------------------------------------------

    def _existing_writer(self) -> sqlite3.Connection:
        """The writer's connection of a store that exists (these writes never create one)."""
        if not self._writable:
            self.conn  # noqa: B018 - NoStore when there is no file (reading never creates one)
        return self._wconn

    @guarded()
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
                schema = _schema_in(conn)
                listed = schema.vectors.get(field) if schema is not None else None
                if listed is not None and listed.dims != spec.dims:
                    raise SchemaMismatch(f"store {self.path}: vector field {field!r} has {listed.dims} dims in the "
                                         f"schema, the vectors have {spec.dims}; nothing was written")
                stored = _stored_dims(conn, field)
                if stored is not None and stored != spec.dims:
                    raise SchemaMismatch(f"store {self.path}: vector field {field!r} holds vectors of {stored} dims, "
                                         f"these have {spec.dims}; nothing was written")
                written = batch_write.replace_field_vectors(conn, field, ids, matrix)
                if written:
                    approximate.log_products(conn, ids)  # their rows are not written: log them here
                    bump_generation(conn)
                if checkpoint is not None:
                    _set_checkpoint(conn, checkpoint)
            self._after_write(written)
            self._lexical_engine.after_commit(self._wconn)
        return written

    @guarded()
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
                current = _schema_in(conn) or IndexSchema()
                stored = _stored_dims(conn, field)
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

    # -- search -----------------------------------------------------------------------------

    @guarded()
    def search(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
    ) -> dict[str, list[Hit]]:
        with self._lock:
            engine = self._lexical_engine
            if self._changed_elsewhere():
                self._forget_data()
                if not self._writable:
                    engine.follow(self.conn)
            out: dict[str, list[Hit]] = {}
            exact_scan = self.vector_index == "exact" or bool(filters)
            if (lexical is not None and vectors and self._rows_loaded() >= knn.PARALLEL_MIN_ROWS
                    and (engine.beside_exact_scan or not exact_scan)):
                # BM25 in a second thread while kNN runs here: SQLite, tantivy, NumPy and faiss
                # release the GIL, so a hybrid query costs about its slower source, not the sum;
                # an exact scan shares its chunks with that thread once BM25 is done.
                # (The connection is in SQLite's serialized mode; the worker runs under our lock.)
                # On one thread: small stores, and an engine too fast to gain beside an exact
                # scan (``LexicalEngine.beside_exact_scan``, measured in store/scan.py).
                side = self._side_thread()
                pending = side.submit(self._lexical, lexical, k, filters)
                try:
                    knn_hits = {vq.name: self._knn(vq, k, filters, side) for vq in vectors}
                finally:
                    lexical_hits = pending.result()
                out[LEXICAL_SOURCE] = lexical_hits
            else:
                knn_hits = {vq.name: self._knn(vq, k, filters) for vq in vectors}  # loads the matrix and its ids
                if lexical is not None:
                    out[LEXICAL_SOURCE] = self._lexical(lexical, k, filters)
            out.update(knn_hits)
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
        snapshot = Snapshot(self._values, self._known_names, self._value_allowed)
        return self._lexical_engine.bm25(self.conn, query, k, filters, snapshot)

    def _known_names(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(rowids, ids) of the current snapshot when in memory: a loaded vector matrix or
        approximate index, else every id once BM25 alone is asked often (``_lexical_id_map``)."""
        loaded = next(iter(self._vectors.values()), None)
        names = self._approx.names()  # an index with nothing changed since its build
        return ((loaded.rowids, loaded.ids) if loaded is not None
                else names if names is not None else self._lexical_id_map())

    def _allowed_rowids(self, filters: Sequence[Filter]) -> np.ndarray:
        """The rowids (ascending) of the products passing ``filters``."""
        return passing_rowids(self.conn, filters, values=self._values)

    def _value_allowed(self, filters: Sequence[Filter]) -> np.ndarray:
        """``_allowed_rowids`` of value filters, kept until the data changes (tantivy's value
        filters: the same filter over many queries, e.g. a price range while paging)."""
        return remembered(self._allowed, filters, self._values, lambda: self._allowed_rowids(filters))

    def _field_matrix(self, name: str) -> knn.VectorCache:
        cache = self._vectors.get(name)
        if cache is None:
            cache = self._vectors[name] = self._load_field(name)
        return cache

    def _load_field(self, name: str) -> knn.VectorCache:
        return knn.load_field(self.conn, name)

    def _lexical_id_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(rowids, ids) of every product for naming BM25 hits without SQL, once BM25 has been
        asked ID_MAP_AFTER times with no vectors loaded since the data last changed. Naming 100
        hits by SQL costs about as much as tantivy's search; a one-shot query (the CLI) never
        pays for reading every id."""
        if self._id_map is None:
            self._lexical_alone += 1
            if self._lexical_alone < ID_MAP_AFTER:
                return None
            rows = self.conn.execute("SELECT rowid, id FROM products ORDER BY rowid").fetchall()
            self._id_map = (np.fromiter((r for r, _ in rows), np.int64, len(rows)),
                            np.asarray([i for _, i in rows], dtype=object))
        return self._id_map

    def _filter_mask(self, cache: knn.VectorCache, filters: Sequence[Filter]) -> np.ndarray:
        """Which rows of ``cache`` pass ``filters``: one SQL query per distinct filter, cached
        with the matrix (so repeated filters, e.g. a category facet, cost nothing)."""
        return remembered(cache.masks, filters, self._values,
                          lambda: np.isin(cache.rowids, self._allowed_rowids(filters), assume_unique=True))

    def _knn(self, vq: VectorQuery, k: int, filters: Sequence[Filter] = (),
             helper: concurrent.futures.Executor | None = None) -> list[Hit]:
        """``helper``: a thread busy with BM25 that takes chunks of an exact scan when done."""
        if self.vector_index != "exact":
            index = self._ann_index(vq.field)
            if index is not None:
                if filters:
                    return approximate.search_filtered(index, vq, k, filters, self._values,
                                                       lambda: self._allowed_rowids(filters))
                return approximate.search(index, vq, k)
        mask_of = (lambda cache: self._filter_mask(cache, filters)) if filters else None
        return knn.search(self._field_matrix(vq.field), vq, k, mask_of, helper)

    # -- approximate indexes (approximate.py) -----------------------------------------------------

    def _ann_index(self, field: str) -> approximate.Live | None:
        """The approximate index of ``field`` and what changed since its build, or None for an
        exact answer."""
        found = self._approx.current(self.conn, field, self._load_field)
        if self._approx.prune_due and self._writable:  # a newer index was swapped in
            with contextlib.suppress(sqlite3.Error, OSError):
                self._approx.prune_log(self._conn)  # type: ignore[arg-type]
        return found

    def _refresh_vector_indexes(self) -> None:
        """Rebuild the persisted indexes this store has (any kind) that are not current."""
        schema = self.schema()
        if schema is None:
            return
        self._approx.refresh(self.conn, schema.vectors, self._load_field)

    @guarded()
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
                self._approx.build(self.conn, field, kind, self._load_field)
                out[field] = time.perf_counter() - start
            self._refresh_vector_indexes()
            self._ann.clear()
        return out

    def _ids_for_rowids(self, rowids: np.ndarray) -> dict[int, str]:
        return reads.ids_for_rowids(self.conn, rowids)

    # -- reads ------------------------------------------------------------------------------

    @guarded(empty=dict)
    def get(self, ids: Sequence[str]) -> dict[str, StoredProduct]:
        if not ids:
            return {}
        with self._lock:
            return reads.products(self.conn, ids)

    def summaries(self, ids: Sequence[str]) -> dict[str, Product]:
        """``SummaryReader``: ``get``'s products (reading local rows costs the same either way)."""
        return {pid: stored.product for pid, stored in self.get(ids).items()}

    @guarded(empty=int)
    def count(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT count(*) FROM products").fetchone()[0])

    @guarded(empty=lambda: None)
    def get_metadata(self, key: str) -> dict[str, Any] | None:
        metadata_json(key, {})  # checks the key
        with self._lock:
            raw = self._meta(f"metadata:{key}")
        return None if raw is None else dict(json.loads(raw))

    @guarded(empty=list)
    def ids(self) -> list[str]:
        """Every product id, sorted."""
        with self._lock:
            return reads.ids(self.conn)

    @guarded(empty=dict)
    def category_counts(self) -> dict[tuple[str, ...], int]:
        """Products per category node (every level), for trees and evaluation."""
        with self._lock:
            return reads.category_counts(self.conn)

    @guarded(empty=dict)
    def vectors(self, ids: Sequence[str], field: str) -> dict[str, np.ndarray]:
        """The stored ``field`` vectors of ``ids`` (an id without one is absent), e.g. for
        "more like this" queries on a product's own vectors."""
        with self._lock:
            return reads.vectors(self.conn, ids, field)

    @guarded(empty=list)
    def image_dirs(self) -> list[str]:
        """Distinct directories of the local image files the products refer to (URLs left
        out): where a server may serve catalogue images from."""
        with self._lock:
            return reads.image_dirs(self.conn)

    @guarded()
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return stats.summary(self.conn, self.path, self.schema(), self.count(), self.lexical_engine)


def _set_checkpoint(conn: sqlite3.Connection, checkpoint: tuple[str, int]) -> None:
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (f"checkpoint:{checkpoint[0]}", str(checkpoint[1])),
    )


def _stored_dims(conn: sqlite3.Connection, field: str) -> int | None:
    """The dims of the vectors ``field`` holds (None when no product holds one). Asked by
    writers only, whose open upgraded the store to vectors in files (format 4)."""
    return vector_file.stored_dims(conn, field)


def _schema_in(conn: sqlite3.Connection) -> IndexSchema | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if row is None else IndexSchema.from_json(json.loads(row[0]))
