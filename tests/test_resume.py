"""Crash safety: an ingest killed with SIGKILL mid-run and started again leaves every
product exactly once, with the text index and the vectors agreeing with the products."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def _checkpoint(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key LIKE 'checkpoint:%'").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0


def _ingest_cmd(dataset: Path, db: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "ctir_es.cli", "ingest", "flipkart", str(dataset), "--store", str(db),
            "--text-model", str(model), "--clip-weights", "none", "--batch-size", "8", "--json"]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "CTIR_ES_CONFIG": str(tmp / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp / "cache")}


def test_kill_and_resume_keeps_each_product_once(flipkart_dir: Path, tiny_text_model_dir: Path,
                                                 tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    rng = random.Random(7)
    kills = 0
    for _cycle in range(3):
        target = rng.randint(50, 900)  # kill once this many products are committed
        proc = subprocess.Popen(_ingest_cmd(flipkart_dir, db, tiny_text_model_dir), env=_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and _checkpoint(db) < target:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1, "the ingest finished before it could be killed"

    done = subprocess.run(_ingest_cmd(flipkart_dir, db, tiny_text_model_dir), env=_env(tmp_path),
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["skipped_resumed"] > 0  # it resumed instead of starting over
    assert report["skipped_resumed"] + report["indexed"] == 1050
    assert report["store_count"] == 1050

    with sqlite3.connect(db) as conn:
        n_products, n_ids = conn.execute("SELECT count(*), count(DISTINCT id) FROM products").fetchone()
        n_fts = conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()[0]
        n_vectors = conn.execute("SELECT count(*) FROM vectors WHERE field = 'title_vector'").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES('integrity-check', 1)") is not None
        leftover = conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'checkpoint:%'").fetchone()[0]
    assert n_products == n_ids == n_fts == n_vectors == 1050
    assert leftover == 0  # a completed ingest clears its checkpoint
