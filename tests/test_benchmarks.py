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
    md = (tmp_path / "results.md").read_text()
    for heading in ("Ingest", "Query latency", "Memory and size"):
        assert heading in md
