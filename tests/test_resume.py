"""Crash safety: an ingest killed with SIGKILL mid-run and started again leaves every
product exactly once, with the text index and the vectors agreeing with the products - on
every store option: each lexical engine (FTS5, tantivy) and each kNN option (exact, and the
persisted approximate indexes, which must never serve a stale answer: what changed since their
build is answered exactly beside them)."""

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

import numpy as np
import pytest
from store_support import checkpoint_of

from ctir_es.schema import VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore

# (lexical engine, kNN option): every option appears at least once, each engine with an ANN index
OPTIONS = [("fts5", "exact"), ("tantivy", "exact"), ("fts5", "ivf"), ("tantivy", "sq8"), ("fts5", "hnsw")]


def _ingest_cmd(dataset: Path, db: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "ctir_es.cli", "ingest", "flipkart", str(dataset), "--store", str(db),
            "--text-model", str(model), "--clip-weights", "none", "--batch-size", "8", "--json"]


def _env(tmp: Path, lexical: str, vector_index: str) -> dict[str, str]:
    return {**os.environ, "CTIR_ES_CONFIG": str(tmp / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp / "cache"),
            "CTIR_ES_LEXICAL_ENGINE": lexical, "CTIR_ES_VECTOR_INDEX": vector_index}


@pytest.mark.parametrize(("lexical", "vector_index"), OPTIONS, ids=[f"{a}-{b}" for a, b in OPTIONS])
def test_kill_and_resume_keeps_each_product_once(flipkart_dir: Path, tiny_text_model_dir: Path,
                                                 tmp_path: Path, lexical: str, vector_index: str) -> None:
    if lexical == "tantivy":
        pytest.importorskip("tantivy", reason="the tantivy engine needs the [lexical] extra")
    if vector_index != "exact":
        pytest.importorskip("faiss", reason="approximate indexes need the [ann] extra")
    db = tmp_path / "store.db"
    env = _env(tmp_path, lexical, vector_index)
    rng = random.Random(7)
    kills = 0
    built = False
    for _cycle in range(3):
        target = rng.randint(50, 900)  # kill once this many products are committed
        proc = subprocess.Popen(_ingest_cmd(flipkart_dir, db, tiny_text_model_dir), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and checkpoint_of(db) < target:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if vector_index != "exact" and not built and checkpoint_of(db) > 0:
            # an index built from a partial store: stale once the ingest goes on
            EmbeddedStore(db, vector_index=vector_index).build_vector_index()
            built = True
    assert kills >= 1, "the ingest finished before it could be killed"

    done = subprocess.run(_ingest_cmd(flipkart_dir, db, tiny_text_model_dir), env=env,
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["skipped_resumed"] > 0  # it resumed instead of starting over
    assert report["skipped_resumed"] + report["indexed"] == 1050
    assert report["store_count"] == 1050

    with sqlite3.connect(db) as conn:
        n_products, n_ids = conn.execute("SELECT count(*), count(DISTINCT id) FROM products").fetchone()
        if lexical == "fts5":
            n_fts = conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()[0]
            assert conn.execute("INSERT INTO products_fts(products_fts, rank) VALUES('integrity-check', 1)") is not None
        else:
            store = EmbeddedStore(db)
            store.count()
            assert store.lexical_engine == "tantivy" and store._lex is not None
            n_fts = store._lex.num_docs()
            store.close()
        n_vectors = conn.execute("SELECT count(*) FROM vectors WHERE field = 'title_vector'").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        leftover = conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'checkpoint:%'").fetchone()[0]
    assert n_products == n_ids == n_fts == n_vectors == 1050
    assert leftover == 0  # a completed ingest clears its checkpoint
    store = EmbeddedStore(db)  # every product's vector readable from the file beside the store, none torn
    vectors = store.vectors(store.ids(), "title_vector")
    assert len(vectors) == 1050
    assert all(np.isfinite(v).all() and abs(float(np.linalg.norm(v)) - 1.0) < 1e-3 for v in vectors.values())
    store.close()
    if vector_index != "exact":
        _check_index_is_current(db, vector_index)


def _check_index_is_current(db: Path, kind: str) -> None:
    """The index built from the partial store, brought current by what the log says changed since
    (the writer's close builds nothing), answers each product's own vector with that product."""
    store = EmbeddedStore(db, vector_index=kind)
    generation = int(store._meta(ann.GENERATION_KEY) or 0)
    assert generation > 0
    assert ann.generations(ann.ann_dir(db), "title_vector", kind)
    ids = store.ids()[::50]
    own = store.vectors(ids, "title_vector")
    for pid in ids:
        hits = store.search(None, [VectorQuery("title_vector", own[pid])], 10)["title_vector"]
        assert hits[0].score > 0.999  # (titles repeat in the catalogue: another id may tie)
        assert pid in [h.id for h in hits] or all(h.score > 0.999 for h in hits)
    assert store._vectors == {} and "title_vector" in store._ann  # answered by the index, not the matrix
    store.close()
