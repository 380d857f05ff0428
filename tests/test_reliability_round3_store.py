"""Issue 24, items 1 and 2: the store is the file (not one of its names), and nothing committed
lives only in the WAL for long. Through the real `ctir-es` command (in subprocesses, with
timeouts where a command could hang) and the real store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from store_contract import SCHEMA

from ctir_es.errors import StoreError
from ctir_es.products import Product
from ctir_es.schema import Document
from ctir_es.store import wal_checkpoint
from ctir_es.store.embedded import EmbeddedStore, lexical_tantivy

CLI = [str(Path(sys.executable).parent / "ctir-es")]
BM25 = ("--text-model", "none", "--no-images")


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache")}
    for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_WEIGHTS", "CTIR_ES_LEXICAL_ENGINE"):
        base.pop(var, None)
    out = subprocess.run([*CLI, *args], env={**base, **(env or {})}, capture_output=True, text=True, check=False,
                         errors="replace", timeout=timeout)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    return out


def last_line(out: subprocess.CompletedProcess[str]) -> str:
    return out.stderr.strip().splitlines()[-1]


def catalogue(path: Path, start: int, n: int, word: str = "zebra") -> Path:
    with path.open("w") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"id": f"p{i}", "title": f"product {i} {word} lamp",
                                 "categories": [["Home", f"Shelf {i % 7}"]]}) + "\n")
    return path


def count_in_file_alone(store: Path, tmp_path: Path) -> int:
    """Products the store FILE holds by itself (its -wal left behind, as after losing it)."""
    alone = tmp_path / f"alone-{time.monotonic_ns()}.db"
    alone.write_bytes(store.read_bytes())
    with contextlib.closing(sqlite3.connect(alone)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'products'").fetchone() is None:
            return 0  # even the tables are in the WAL alone
        return int(conn.execute("SELECT count(*) FROM products").fetchone()[0])


def stats_check(tmp_path: Path, store: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, "stats", "--check", "--json", "--store", str(store), env=env)


HOLD_READER = ("import sys, time; from ctir_es.store.embedded import EmbeddedStore\n"
               "s = EmbeddedStore(sys.argv[1]); print(s.count(), flush=True)\n"
               "for line in sys.stdin:\n    print(s.count(), flush=True)\n")


# -- 1. the store is the file ------------------------------------------------------------------

def test_second_ingest_through_a_hard_link_is_refused_while_the_first_holds_the_file(tmp_path: Path) -> None:
    store = tmp_path / "a.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25).returncode == 0
    other = tmp_path / "b.db"
    os.link(store, other)
    code = ("import sys, time; from ctir_es.store.embedded import EmbeddedStore\n"
            "with EmbeddedStore(sys.argv[1]).exclusive_writer():\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        out = run_cli(tmp_path, "ingest", "sample", "--store", str(other), *BM25)
        assert out.returncode == 1
        assert last_line(out).startswith(f"Error: another ingest (pid {holder.pid}) is writing to {other} through "
                                         "another name of this file")
        assert not Path(f"{other}-wal").exists()  # refused before it opened the store
    finally:
        holder.kill()
        holder.wait()
    out = run_cli(tmp_path, "ingest", "sample", "--store", str(other), *BM25)  # released: the next one runs
    assert out.returncode == 0, out.stderr


def test_two_concurrent_ingests_through_two_names_leave_one_sound_store(tmp_path: Path) -> None:
    """The reported case: both ran at once and both exited 0 on a corrupted store."""
    store, other = tmp_path / "a.db", tmp_path / "b.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25).returncode == 0
    os.link(store, other)
    big = catalogue(tmp_path / "big.jsonl", 0, 60_000)
    small = catalogue(tmp_path / "small.jsonl", 100_000, 500, "otter")
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "c")}
    env.pop("CTIR_ES_LEXICAL_ENGINE", None)
    first = subprocess.Popen([*CLI, "ingest", "jsonl", str(big), "--store", str(store), *BM25], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = Path(f"{store}.lock")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:  # its pid is written once it holds the file
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == str(first.pid):
                break
        time.sleep(0.02)
    second = run_cli(tmp_path, "ingest", "jsonl", str(small), "--store", str(other), *BM25)
    overlapped = first.poll() is None  # the first was still writing when the second finished
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    if overlapped:
        assert second.returncode == 1 and "another ingest" in last_line(second), second.stderr
    else:
        assert second.returncode in (0, 1)
    check = stats_check(tmp_path, store)
    assert check.returncode == 0, check.stderr
    data = json.loads(check.stdout)
    assert data["integrity"] == "ok"
    assert data["products"] == 280 + 60_000 + (500 if second.returncode == 0 else 0)


def test_fifo_device_or_directory_as_the_store_is_refused_at_once_and_nothing_is_created(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    for target, kind in ((fifo, "a FIFO"), (folder, "a directory")):
        for args in (("ingest", "sample", *BM25), ("query", "lamp"), ("stats",), ("stats", "--check")):
            out = run_cli(tmp_path, *args, "--store", str(target), timeout=30)  # a hang fails here
            if kind == "a directory" and out.returncode == 2:  # click's own check of --store (ingest)
                assert "is a directory" in last_line(out)
                continue
            assert out.returncode == 1, (args, out.stderr)
            assert last_line(out) == (f"Error: {target} is {kind}{' (named pipe)' if kind == 'a FIFO' else ''}, "
                                      "not a store file: check --store (a store is a regular file, created by "
                                      "`ctir-es ingest`)")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == [n for n in before if n != "cache"]
    assert list(folder.iterdir()) == []
    dev = [p for p in ("/dev/null.lock", "/dev/null-journal", "/dev/null-wal") if Path(p).exists()]
    out = run_cli(tmp_path, "ingest", "sample", "--store", "/dev/null", *BM25, timeout=30)
    assert out.returncode == 1
    assert last_line(out).startswith("Error: /dev/null is a device, not a store file")
    assert [p for p in ("/dev/null.lock", "/dev/null-journal", "/dev/null-wal") if Path(p).exists()] == dev


def test_fifo_as_the_config_file_does_not_hang_any_command(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for args in (("stats", "--store", str(tmp_path / "s.db")), ("query", "lamp", "--store", str(tmp_path / "s.db"))):
        start = time.monotonic()
        out = run_cli(tmp_path, *args, env={"CTIR_ES_CONFIG": str(fifo)}, timeout=30)
        assert time.monotonic() - start < 20
        assert out.returncode == 1
        assert last_line(out) == (f"Error: config file {fifo} is not a regular file (a FIFO, a device or a "
                                  "directory): point CTIR_ES_CONFIG at a TOML file")


# -- 2. nothing committed lives only in the WAL for long -----------------------------------------

def test_the_wal_is_empty_after_an_ingest_even_while_a_reader_holds_the_store(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25).returncode == 0
    assert not Path(f"{store}-wal").exists()  # alone: the last connection removed it
    # a reader (what `serve` holds) keeps the store open: the -wal file stays, but empty
    reader = subprocess.Popen([sys.executable, "-c", HOLD_READER, str(store)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "280"
        out = run_cli(tmp_path, "ingest", "jsonl", str(catalogue(tmp_path / "c.jsonl", 0, 300)), "--store", str(store),
                      *BM25)
        assert out.returncode == 0, out.stderr
        assert Path(f"{store}-wal").stat().st_size == 0
        assert count_in_file_alone(store, tmp_path) == 580
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "580"
    finally:
        reader.kill()
        reader.wait()


def test_a_reader_folds_in_what_a_killed_writer_left_in_the_wal(tmp_path: Path) -> None:
    """A writer killed before its close leaves its commits in the WAL; `serve` (a reader holding
    the store) folds them into the file within the time bound, without a request."""
    store = tmp_path / "s.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25).returncode == 0
    reader = subprocess.Popen([sys.executable, "-c", HOLD_READER, str(store)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "280"
        writer = ("import os, sys; from ctir_es.store.embedded import EmbeddedStore\n"
                  "from ctir_es.store.base import Document; from ctir_es.products import Product\n"
                  "s = EmbeddedStore(sys.argv[1]); s._wconn\n"
                  "s._checkpointer.close(); s._checkpointer = None\n"  # no checkpoint of its own
                  "s.upsert([Document(Product(id=f'k{i}', title=f'kept {i}'), {}) for i in range(100)])\n"
                  "os.kill(os.getpid(), 9)\n")
        killed = subprocess.run([sys.executable, "-c", writer, str(store)], check=False, timeout=60)
        assert killed.returncode == -signal.SIGKILL
        assert Path(f"{store}-wal").stat().st_size > 0
        deadline = time.monotonic() + wal_checkpoint.FOLD_WITHIN_SECONDS + 5
        while time.monotonic() < deadline and count_in_file_alone(store, tmp_path) != 380:
            time.sleep(0.2)
        assert count_in_file_alone(store, tmp_path) == 380
    finally:
        reader.kill()
        reader.wait()


def _vector_docs(start: int, n: int) -> list[Document]:
    dims = SCHEMA.vectors["title_vector"].dims
    return [Document(Product(id=f"p{i}", title=f"product {i}"), {"title_vector": np.ones(dims, np.float32)})
            for i in range(start, start + n)]


@pytest.mark.parametrize("found_by", ["the next call", "the checkpoint thread"])
def test_a_wal_deleted_under_a_running_writer_is_reported_and_its_commits_kept(tmp_path: Path, found_by: str) -> None:
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    store.upsert(_vector_docs(0, 300))
    checkpointer = store._checkpointer
    assert checkpointer is not None
    if found_by == "the next call":
        checkpointer.close()  # the call alone finds it, before any period
        store._checkpointer = None
    assert count_in_file_alone(path, tmp_path) < 300  # the commits are in the WAL only
    Path(f"{path}-wal").unlink()
    if found_by == "the checkpoint thread":
        assert checkpointer.wait_ready()
        deadline = time.monotonic() + wal_checkpoint.FOLD_WITHIN_SECONDS + 5
        while time.monotonic() < deadline and not checkpointer.lost:
            time.sleep(0.05)
        assert checkpointer.lost and checkpointer.rescued
    with pytest.raises(StoreError, match=r"^the write-ahead log .*s\.db-wal of store .* was deleted while this "
                                         r"process had the store open: the changes it held were copied into the "
                                         r"store file first"):
        store.count()
    with pytest.raises(StoreError, match="was deleted"):  # every later call too, never silently
        store.upsert(_vector_docs(300, 1))
    store.close()
    assert count_in_file_alone(path, tmp_path) == 300
    reopened = EmbeddedStore(path)
    assert reopened.count() == 300 and reopened.check() == []
    reopened.close()


def test_a_wal_deleted_under_a_reader_is_reported(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25).returncode == 0
    reader = EmbeddedStore(store)
    assert reader.count() == 280
    Path(f"{store}-wal").unlink()
    with pytest.raises(StoreError, match="write-ahead log .* was deleted while this process had the store open"):
        reader.count()
    reader.close()
    again = EmbeddedStore(store)
    assert again.count() == 280
    again.close()


# -- stats --check compares the counts ----------------------------------------------------------

def test_stats_check_names_a_gap_between_products_and_the_fts5_index_or_orphan_rows(tmp_path: Path) -> None:
    fts5 = {"CTIR_ES_LEXICAL_ENGINE": "fts5"}
    store = tmp_path / "s.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25, env=fts5).returncode == 0
    assert stats_check(tmp_path, store).returncode == 0
    with contextlib.closing(sqlite3.connect(store)) as conn:
        rowid, title, cats, attrs, desc = conn.execute(
            "SELECT rowid, title, categories, attributes, description FROM products LIMIT 1").fetchone()
        conn.execute("INSERT INTO products_fts(products_fts, rowid, title, categories, attributes, description) "
                     "VALUES ('delete', ?, ?, ?, ?, ?)", (rowid, title, cats, attrs, desc))
        conn.commit()
    out = stats_check(tmp_path, store)
    assert out.returncode == 1
    assert "the FTS5 text index holds 279 documents, the products table 280 rows" in last_line(out)
    assert len(out.stderr.strip().splitlines()) == 1

    other = tmp_path / "o.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(other), *BM25, env=fts5).returncode == 0
    with contextlib.closing(sqlite3.connect(other)) as conn:  # a product gone, its postings left behind
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DELETE FROM products WHERE rowid = (SELECT min(rowid) FROM products)")
        conn.commit()
    out = stats_check(tmp_path, other)
    assert out.returncode == 1
    assert "rows of category postings name no product" in last_line(out)


def test_stats_check_names_a_gap_in_the_tantivy_index(tmp_path: Path) -> None:
    env = {"CTIR_ES_LEXICAL_ENGINE": "tantivy"}
    store = tmp_path / "t.db"
    assert run_cli(tmp_path, "ingest", "sample", "--store", str(store), *BM25, env=env).returncode == 0
    assert stats_check(tmp_path, store, env).returncode == 0
    with contextlib.closing(sqlite3.connect(store)) as conn:
        (uuid,) = conn.execute("SELECT value FROM meta WHERE key = 'store_uuid'").fetchone()
    lex = lexical_tantivy.TantivyLexical(store, uuid)
    assert lex.open(create=False) and lex._acquire_writer(5)
    lex._writer.delete_documents_by_query(lex._t.Query.term_set_query(lex._schema, "rowid", [1, 2]))
    lex._writer.commit()
    lex.close()
    out = stats_check(tmp_path, store, env)
    assert out.returncode == 1
    assert "holds 278 documents, the products table 280 rows" in last_line(out)


# -- a tantivy index restored from an older copy -----------------------------------------------

def test_a_tantivy_index_restored_from_an_older_copy_is_rebuilt_not_left_incomplete(tmp_path: Path) -> None:
    env = {"CTIR_ES_LEXICAL_ENGINE": "tantivy"}
    store = tmp_path / "t.db"
    folder = lexical_tantivy.index_dir(store)
    first, second = catalogue(tmp_path / "one.jsonl", 0, 100), catalogue(tmp_path / "two.jsonl", 100, 100)
    assert run_cli(tmp_path, "ingest", "jsonl", str(first), "--store", str(store), *BM25, env=env).returncode == 0
    old = tmp_path / "old.lexical"
    subprocess.run(["cp", "-r", str(folder), str(old)], check=True)
    for _ in range(2):  # the second run prunes the log past the old copy's position
        assert run_cli(tmp_path, "ingest", "jsonl", str(second), "--store", str(store), *BM25, env=env).returncode == 0
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    subprocess.run(["cp", "-r", str(old), str(folder)], check=True)
    with contextlib.closing(sqlite3.connect(store)) as conn:
        (first_kept,) = conn.execute("SELECT min(seq) FROM lexical_log").fetchone()
    assert first_kept > json.loads((folder / "state.json").read_text())["applied"] + 1  # the log was pruned
    out = run_cli(tmp_path, "query", "zebra lamp", "--store", str(store), "--json", "--k", "300", env=env)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["results"]) == 200
    check = stats_check(tmp_path, store, env)
    assert check.returncode == 0, check.stderr
