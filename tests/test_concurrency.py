"""Concurrency: queries work while an ingest runs; two ingests into one store are refused."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.config import LEXICAL_ENGINES
from ctir_es.errors import StoreLocked
from ctir_es.schema import LexicalQuery, VectorQuery
from ctir_es.store.embedded import EmbeddedStore


def test_second_writer_is_refused_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "store.db"
    holder = EmbeddedStore(db)
    with holder.exclusive_writer():
        with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"), EmbeddedStore(db).exclusive_writer():
            pass
        monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
        result = CliRunner().invoke(cli, ["ingest", "sample", "--store", str(db), "--text-model", "none",
                                          "--no-images"])
        assert result.exit_code == 1
        assert "another ingest" in result.output and "queries keep working" in result.output
    with EmbeddedStore(db).exclusive_writer():  # released: the next writer gets it
        pass


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    code = ("import sys, time; from ctir_es.store.embedded import EmbeddedStore\n"
            "with EmbeddedStore(sys.argv[1]).exclusive_writer():\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(StoreLocked), EmbeddedStore(db).exclusive_writer():
        pass
    proc.kill()
    proc.wait()
    with EmbeddedStore(db).exclusive_writer():  # no stale lock after a crash
        pass


@pytest.mark.parametrize("engine", LEXICAL_ENGINES)
def test_reader_sees_consistent_snapshots_during_ingest(engine: str, flipkart_dir: Path, tiny_text_model_dir: Path,
                                                        tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "c"),
           "CTIR_ES_LEXICAL_ENGINE": engine}
    cmd = [sys.executable, "-m", "ctir_es.cli", "ingest", "flipkart", str(flipkart_dir), "--store", str(db),
           "--text-model", str(tiny_text_model_dir), "--clip-weights", "none", "--batch-size", "16"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = EmbeddedStore(db)
    seen_counts: list[int] = []
    deadline = time.monotonic() + 600  # a bound, not a timing: the ingest takes seconds
    try:
        while proc.poll() is None or not seen_counts:
            assert time.monotonic() < deadline, f"no consistent snapshot seen; counts so far {seen_counts}"
            if not db.exists():
                time.sleep(0.05)
                continue
            try:
                with closing(sqlite3.connect(db, timeout=5)) as conn:
                    conn.execute("BEGIN")  # one read snapshot for all the counts
                    products = conn.execute("SELECT count(*) FROM products").fetchone()[0]
                    counts = [products, conn.execute("SELECT count(*) FROM vectors").fetchone()[0]]
                    if engine == "fts5":  # FTS5's index is in the same file, so in the same snapshot
                        counts.append(conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()[0])
                    conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # tables not created yet
                assert "no such table" in str(exc)
                time.sleep(0.02)
                continue
            assert len(set(counts)) == 1, counts  # a batch is visible whole or not at all
            seen_counts.append(products)
            if products and reader.schema() is not None:
                runs = reader.search(LexicalQuery("cotton"), [VectorQuery("title_vector", unit_vec(reader))], 10)
                hits = {h.id for hs in runs.values() for h in hs}
                assert set(reader.get(sorted(hits))) == hits  # every hit can be fetched
            time.sleep(0.02)
    finally:
        proc.wait(timeout=120)
        reader.close()
    assert proc.returncode == 0
    assert seen_counts == sorted(seen_counts)  # never goes backwards
    assert len(set(seen_counts)) > 2  # we really read while it wrote
    final = EmbeddedStore(db)
    assert final.count() == 1050
    assert final.lexical_engine == engine  # the environment chose the new store's engine
    # tantivy's index beside the file caught up with the whole ingest: BM25 finds what SQL finds
    with closing(sqlite3.connect(db)) as conn:
        titles = [t for (t,) in conn.execute("SELECT title FROM products")]
    with_word = sum(1 for t in titles if re.search(r"\bcotton\b", t, re.IGNORECASE))
    assert with_word and len(final.search(LexicalQuery("cotton"), [], 2000)["bm25"]) >= with_word
    final.close()


def unit_vec(store: EmbeddedStore) -> np.ndarray:
    schema = store.schema()
    assert schema is not None
    dims = schema.vectors["title_vector"].dims
    return np.ones(dims, dtype=np.float32) / np.sqrt(dims)
