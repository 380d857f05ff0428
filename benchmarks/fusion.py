"""Fusion cost alone: rrf and linear over two ranked lists (100 + 100 hits from 400 products),
the full fused list against the best k (``fuse(..., limit=k)``, what ``Search`` asks for).
Prints medians of many calls with the load average; pure Python, no store, no model.

    python benchmarks/fusion.py [--calls 2000] [--k 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from ctir_es.ranking.fusion import fuse
from ctir_es.schema import Hit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()
    rng = random.Random(1)
    ids = [f"p{i}" for i in range(400)]
    runs = {"bm25": [Hit(i, rng.random() * 10) for i in rng.sample(ids, 100)],
            "text": [Hit(i, rng.random()) for i in rng.sample(ids, 100)]}
    weights = {"bm25": 1.0, "text": 0.3}
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}; 100 + 100 hits; median of {a.calls} calls")
    print(f"| method | full list us | best k={a.k} us |")
    print("|---|---:|---:|")
    for method in ("rrf", "linear"):
        medians = []
        for limit in (None, a.k):
            times = []
            for _ in range(a.calls):
                start = time.perf_counter()
                fuse(method, runs, weights, limit=limit)
                times.append(time.perf_counter() - start)
            medians.append(statistics.median(times) * 1e6)
        print(f"| {method} | {medians[0]:.0f} | {medians[1]:.0f} |")


if __name__ == "__main__":
    main()
