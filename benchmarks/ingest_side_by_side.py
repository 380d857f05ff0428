#!/usr/bin/env python
"""Ingest of ready vectors, two versions of the code side by side: ``targets.py ingest`` of each
tree in its own fresh process, alternating (the order flips every round), medians per case.

    git worktree add /tmp/wt-before <commit> --detach
    python benchmarks/ingest_side_by_side.py --before /tmp/wt-before --sizes 100000 1000000 --rounds 3

Each run is ``python <tree>/benchmarks/targets.py ingest --n N --dims 512 --engine E``: the
tree's own code and the same synthetic catalogue (upserts of 5,000 with a checkpoint each;
generating the documents is not timed; the close and the final WAL checkpoint are). The load
average is printed before and after every run: on a shared machine, say so with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from memory import machine, machine_line


def run_one(tree: Path, n: int, dims: int, engine: str) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ingest-sbs-"))
    out = root / "out.json"
    load_before = os.getloadavg()[0]
    try:
        cmd = [sys.executable, str(tree / "benchmarks" / "targets.py"), "ingest", "--n", str(n), "--dims", str(dims),
               "--engine", engine, "--root", str(root), "--json", str(out)]
        proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        res = dict(json.loads(out.read_text()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="the other tree (a git worktree)")
    p.add_argument("--after", type=Path, default=HERE.parent, help="default: this tree")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--engines", default="fts5,tantivy")
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rounds-1m", type=int, default=None, help="rounds for sizes >= 1M (default: --rounds)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    for name, tree in trees.items():
        if not (tree / "benchmarks" / "targets.py").is_file():
            raise SystemExit(f"--{name} {tree}: no benchmarks/targets.py there")
    start = machine()
    print(machine_line(start, '(below)'), flush=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for n in a.sizes:
        rounds = a.rounds_1m if n >= 1_000_000 and a.rounds_1m else a.rounds
        for r in range(rounds):
            for engine in a.engines.split(","):
                order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
                for name in order:
                    res = run_one(trees[name], n, a.dims, engine)
                    runs.setdefault(f"{n}|{engine}|{name}", []).append(res)
                    print(f"round {r + 1} {n:>8} {engine:8} {name:6} {res['products_per_s']:>9,.0f}/s  "
                          f"load {res['load'][0]} -> {res['load'][1]}", flush=True)
    print("\n| size x dims | engine | before products/s (runs) | after products/s (runs) | after / before |")
    print("|---|---|---|---|---|")
    for n in a.sizes:
        for engine in a.engines.split(","):
            rates = {name: [r["products_per_s"] for r in runs[f"{n}|{engine}|{name}"]] for name in trees}
            med = {name: statistics.median(v) for name, v in rates.items()}
            cells = {name: f"{med[name]:,.0f} ({', '.join(f'{x / 1000:.1f}k' for x in v)})" for name, v in rates.items()}
            print(f"| {n:,} x {a.dims} | {engine} | {cells['before']} | {cells['after']} | "
                  f"{med['after'] / med['before']:.2f}x |")
    print("\n" + machine_line(start, [round(x, 2) for x in os.getloadavg()]))
    if a.json:
        a.json.write_text(json.dumps({"machine": start, "trees": {k: str(v) for k, v in trees.items()}, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
