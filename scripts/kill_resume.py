#!/usr/bin/env python
"""Kill an ingest with SIGKILL at random points, resume it, and count lost / duplicated products.

    python scripts/kill_resume.py DATASET_DIR [--cycles 20] [--text-model none|NAME|DIR] [--lexical fts5|tantivy]

Each cycle starts `ctir-es ingest flipkart DATASET_DIR` into the same store and kills it once a
random number of products has been committed (or at a random moment). A final run completes the
ingest. Then it compares the store with the catalogue: every id exactly once, and the text index
and the vectors agreeing with the products table.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ctir_es.config import LEXICAL_ENGINES
from ctir_es.ingest.readers import read_flipkart
from ctir_es.ingest.report import IngestReport
from ctir_es.store.embedded import DEFAULT_LEXICAL_ENGINE, LEXICAL_ENV


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM products").fetchone()[0]
    except sqlite3.Error:
        return 0


def tantivy_docs(db: Path, expected: int) -> int:
    """Documents in the tantivy index beside ``db`` after opening the store (which catches it
    up from SQLite), or -1 when a rowid is there twice (a duplicate)."""
    from ctir_es.store.embedded import EmbeddedStore

    store = EmbeddedStore(db)
    store.count()
    lex = store._lex
    assert lex is not None, "the store does not use the tantivy engine"
    searcher = lex.searcher()
    import tantivy

    hits = searcher.search(tantivy.Query.all_query(), limit=max(1, expected * 2), count=False).hits
    rowids = searcher.fast_field_values("rowid", [addr for _, addr in hits])
    store.close()
    return len(rowids) if len(set(rowids)) == len(rowids) else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--text-model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lexical", choices=LEXICAL_ENGINES, default=None,
                    help="the lexical engine of the new store (default: whatever a new store gets: the "
                         f"{LEXICAL_ENV} setting, else {DEFAULT_LEXICAL_ENGINE}); tantivy: the index beside "
                         "the file is checked too")
    args = ap.parse_args()

    expected = {p.id for p in read_flipkart(args.dataset, IngestReport())}
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "store.db"
        env = {**os.environ, "CTIR_ES_CACHE_DIR": str(Path(tmp) / "cache"), "CTIR_ES_CONFIG": str(Path(tmp) / "none")}
        if args.lexical is not None:
            env[LEXICAL_ENV] = args.lexical
        cmd = [sys.executable, "-m", "ctir_es.cli", "ingest", "flipkart", str(args.dataset), "--store", str(db),
               "--text-model", args.text_model, "--clip-weights", "none", "--batch-size", str(args.batch_size)]
        kills = 0
        for cycle in range(1, args.cycles + 1):
            # Kill once a random share of what is left has been committed, or after a random delay
            # (which can land during start-up, model loading or the middle of a batch).
            start_count = committed(db)
            target = start_count + rng.randint(1, max(1, (len(expected) - start_count) // 3))
            # one cycle in four kills at a random moment instead (start-up, model loading, ...)
            at_random_time = rng.random() < 0.25
            deadline = time.monotonic() + (rng.uniform(0.5, 8.0) if at_random_time else 300.0)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and committed(db) < target and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            how = "at a random time" if at_random_time else f"after {target} committed"
            print(f"cycle {cycle:2d}: {'killed' if proc.returncode == -signal.SIGKILL else 'finished'} {how}; "
                  f"{committed(db)} products in the store", flush=True)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id FROM products").fetchall()
            stored = [r[0] for r in rows]
            (engine,) = conn.execute("SELECT value FROM meta WHERE key = 'lexical_engine'").fetchone()
            fts = (conn.execute("SELECT count(*) FROM products_fts_docsize").fetchone()[0]
                   if engine == "fts5" else tantivy_docs(db, len(stored)))
            vectors = conn.execute("SELECT count(*) FROM vectors WHERE field='title_vector'").fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        lost = len(expected - set(stored))
        duplicated = len(stored) - len(set(stored))
        vec_expected = len(stored) if args.text_model != "none" else 0
        print(f"\n{args.cycles} cycles, {kills} killed mid-run; catalogue {len(expected)} products; "
              f"store {len(stored)} rows, {engine} text index {fts}, vectors {vectors}; integrity {integrity}")
        print(f"lost {lost}, duplicated {duplicated}")
        ok = lost == 0 and duplicated == 0 and fts == len(stored) and vectors == vec_expected and integrity == "ok"
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
