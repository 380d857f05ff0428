"""The benchmark scripts run end to end (tiny sizes, no models): they must not rot.
Speed is printed by the scripts, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_smoke_writes_every_section(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"mode", "machine", "command", "encoders", "ingest", "query", "query_encoding", "total_s"} <= set(res)
    assert res["mode"] == "smoke"
    assert {"cpu", "cores"} <= set(res["machine"])
    ingest = res["ingest"][0]
    assert ingest["indexed"] == 500 and {"read", "decode", "encode", "index"} == set(ingest["split_s"])
    exact, approx = res["query"]
    assert set(exact["modes"]) == {"lexical", "knn", "hybrid"}
    for stats in exact["modes"].values():
        assert {"p50_ms", "p95_ms", "p99_ms", "qps"} <= set(stats)
    assert exact["brute_force"]["p50_ms"] > 0 and exact["bytes_per_product"] > 0
    assert approx["index"] == "sq8" and 0.0 <= approx["recall_at_10"] <= 1.0
    targets = res["targets"]  # issue #14's figures, from benchmarks/targets.py
    assert "error" not in targets, targets.get("error")
    assert {r["engine"] for r in targets["ingest"]} == {"fts5", "tantivy"}
    assert all(r["products_per_s"] > 0 and r["size_vs_vectors"] > 0 for r in targets["ingest"])
    assert {r["index"] for r in targets["open"]} == {"exact", "sq8", "ivf", "hnsw"}
    assert all(r["persisted_index_used"] for r in targets["open"])  # opened, not rebuilt
    assert all(set(r["modes"]) == {"knn", "lexical", "hybrid"} for r in targets["open"])
    (updates,) = res["updates"]  # issue 25: the approximate index under a stream of updates
    assert "error" not in updates, updates.get("error")
    assert updates["quiet"]["p50_ms"] > 0 and updates["streaming"]["queries"] > 0
    assert updates["writer"]["changed"] > 0 and updates["writer"]["close_s"] >= 0
    md = (tmp_path / "results.md").read_text()
    for heading in ("Ingest", "Query latency", "Memory and size", "Issue #14 targets", "hybrid / slower source",
                    "under updates", "Issue 25's targets"):
        assert heading in md


def test_learn_benchmark_parses_its_parts() -> None:
    """benchmarks/learn.py (issue 22's figures) takes --part A,B,C,D,E and refuses an unknown part;
    the parts themselves train models and run for minutes, so they are run by hand."""
    script = str(ROOT / "benchmarks" / "learn.py")
    ok = subprocess.run([sys.executable, script, "--check-args", "--part", "a, D"], cwd=ROOT, capture_output=True,
                        text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout.strip().splitlines()[-1]) == {"parts": ["A", "D"]}
    bad = subprocess.run([sys.executable, script, "--check-args", "--part", "A,F"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown part" in bad.stderr
