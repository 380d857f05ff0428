"""The WAL is folded into the store file by a thread beside the writer (store/wal_checkpoint.py):
it keeps up, it never loses a commit, and it is gone when the store is closed."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import numpy as np
from store_contract import SCHEMA

from ctir_es.products import Product
from ctir_es.schema import Document
from ctir_es.store import wal_checkpoint
from ctir_es.store.embedded import EmbeddedStore


def _docs(start: int, n: int) -> list[Document]:
    dims = SCHEMA.vectors["title_vector"].dims
    rng = np.random.default_rng(start)
    return [Document(Product(id=f"p{i}", title=f"product {i}", categories=(("Home", f"Shelf {i % 7}"),)),
                     {"title_vector": rng.standard_normal(dims).astype(np.float32) + 0.1})
            for i in range(start, start + n)]


def _wait(predicate, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_commits_are_checkpointed_beside_the_writer_and_the_wal_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    checkpointer = store._checkpointer
    assert checkpointer is not None
    (limit,) = store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    assert limit == wal_checkpoint.writer_limit_pages(store.conn)  # the writer's own: only a bound now
    for start in range(0, 2000, 200):
        assert not store.upsert(_docs(start, 200)).errors
    assert _wait(lambda: checkpointer.runs >= 1)
    # Another connection sees every product; after the close, the file alone holds them.
    with contextlib.closing(sqlite3.connect(path)) as other:
        assert other.execute("SELECT count(*) FROM products").fetchone()[0] == 2000
    store.close()
    assert not checkpointer._thread.is_alive()
    assert not Path(f"{path}-wal").exists()  # the last connection's close folded the rest in
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reread:
        assert reread.execute("SELECT count(*) FROM products").fetchone()[0] == 2000


def test_the_wal_is_restarted_while_an_ingest_goes_on(tmp_path: Path) -> None:
    """Checkpoints that keep up let the writer start the WAL again from the top: its file does
    not grow with the ingest (it would hold every batch if nothing folded them in)."""
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    sizes = []
    checkpointer = store._checkpointer
    assert checkpointer is not None
    for start in range(0, 10_000, 1000):  # FOLD_AFTER_ROWS each: every batch wakes the thread
        runs = checkpointer.runs
        store.upsert(_docs(start, 1000))
        _wait(lambda runs=runs: checkpointer.runs > runs, 5)
        sizes.append(Path(f"{path}-wal").stat().st_size)
    assert max(sizes[3:]) <= 2 * max(sizes[:3])  # bounded by a few batches, not growing with all ten
    store.close()


def test_one_product_writes_are_folded_by_time_not_each_one(tmp_path: Path) -> None:
    """A service's one-product upserts do not each pay a checkpoint (a sync of the WAL and the
    file): they are folded in about once per FOLD_WITHIN_SECONDS, and the last one within that
    bound after it was committed."""
    store = EmbeddedStore(tmp_path / "s.db")
    store.setup(SCHEMA)
    checkpointer = store._checkpointer
    assert checkpointer is not None
    start = time.monotonic()
    writes = 300
    for i in range(writes):
        store.upsert(_docs(i, 1))
    elapsed = time.monotonic() - start
    assert checkpointer.runs <= elapsed / wal_checkpoint.FOLD_WITHIN_SECONDS + 2 < writes
    runs = checkpointer.runs
    assert _wait(lambda: checkpointer.runs > runs, wal_checkpoint.FOLD_WITHIN_SECONDS + 3)
    alone = tmp_path / "file-alone.db"  # the store file without its -wal holds every write
    alone.write_bytes((tmp_path / "s.db").read_bytes())
    with contextlib.closing(sqlite3.connect(alone)) as other:
        assert other.execute("SELECT count(*) FROM products").fetchone()[0] == writes
    store.close()


def test_a_reopened_writer_gets_a_new_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    first = store._checkpointer
    store.close()
    assert store._checkpointer is None
    store.upsert(_docs(0, 10))
    assert store._checkpointer is not None and store._checkpointer is not first
    store.close()
    reader = EmbeddedStore(path)
    assert reader.count() == 10
    assert reader._checkpointer is not None and not reader._checkpointer.writer  # folds in others' commits
    reader.close()
