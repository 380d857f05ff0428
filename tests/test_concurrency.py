"""Concurrency: queries work while an ingest runs; two ingests into one store are refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.errors import StoreLocked
from ctir_es.store.base import LexicalQuery, VectorQuery
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


def test_reader_sees_consistent_snapshots_during_ingest(flipkart_dir: Path, tiny_text_model_dir: Path,
                                                        tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "c")}
    cmd = [sys.executable, "-m", "ctir_es.cli", "ingest", "flipkart", str(flipkart_dir), "--store", str(db),
           "--text-model", str(tiny_text_model_dir), "--clip-weights", "none", "--batch-size", "16"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = EmbeddedStore(db)
    seen_counts: list[int] = []
    try:
        while proc.poll() is None or not seen_counts:
            if not db.exists():
                time.sleep(0.05)
                continue
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    conn.execute("BEGIN")  # one read snapshot for all three counts
                    products = conn.execute("SELECT count(*) FROM products").fetchone()[0]
                    fts = conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()[0]
                    vectors = conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
                    conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # tables not created yet
                assert "no such table" in str(exc)
                continue
            assert products == fts == vectors  # a batch is visible whole or not at all
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
    assert seen_counts[-1] == 1050 or EmbeddedStore(db).count() == 1050


def unit_vec(store: EmbeddedStore) -> np.ndarray:
    schema = store.schema()
    assert schema is not None
    dims = schema.vectors["title_vector"].dims
    return np.ones(dims, dtype=np.float32) / np.sqrt(dims)
