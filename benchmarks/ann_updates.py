#!/usr/bin/env python
"""Hybrid latency and kNN recall of an approximate index under a stream of updates, and the
writer's close time (issue 25, item 3; src/ctir_es/store/embedded/approximate.py).

    python benchmarks/ann_updates.py --n 100000 --dims 512 [--index hnsw] [--engine tantivy]
        [--minutes 2] [--rate 0.01] [--speed 1] [--json out.json]

A copy of the synthetic catalogue's store (benchmarks/synthetic.py, cached under
artifacts/benchmarks/stores/ann_updates with its index built once) is queried by this process
(hybrid: BM25 + kNN, k=100 each, RRF top 10, then kNN alone; one pair every ``--pace`` ms) in
four phases: quiet; streaming, while a second process (the writer) streams changes into it:
``--rate`` of the catalogue per minute (default 1 %), times ``--speed`` (time compression:
--speed 5 for 2 minutes writes what 10 minutes of the stream would), in batches every
``--tick`` s: 90 % upserts of existing products with new vectors (and titles), 5 % deletes, 5 %
new products; held: the writer closed, the changed rows kept as the stream left them, no
rebuild started (the cost of the changed rows alone); rebuild: a rebuild allowed (as a serving
process does past the bound, approximate.REBUILD_*) until it swaps in, plus 5 s, or
``--rebuild-cap`` s. Every ``--recall-every`` s, recall@10 of kNN against exact kNN (NumPy over
every current vector) in the same SQLite snapshot. The writer's close is timed.

Printed: the machine and load, sizes, the quiet and streaming hybrid p50 (median of per-window
p50s, with the spread), their ratio, recall@10 (min / median), the largest delta seen, rebuilds
swapped in, and the writer's close time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[0] / "src"))

from memory import machine, machine_line
from synthetic import FIELD, Catalogue, cached_store

from ctir_es.ranking.fusion import fuse
from ctir_es.schema import Document, LexicalQuery, VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore, approximate, knn

K = 100
TOP = 10
WEIGHTS = {"bm25": 1.0, "text": 1.0}
ROOT = HERE.parents[0] / "artifacts" / "benchmarks"


def _copy_store(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".ann", ".lexical", ".vectors"):
        target = Path(str(dst) + suffix)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for suffix in ("", ".ann", ".lexical", ".vectors"):
        source = Path(str(src) + suffix)
        if source.is_dir():
            shutil.copytree(source, Path(str(dst) + suffix), ignore=shutil.ignore_patterns(".rebuild.lock"))
        elif source.exists():
            shutil.copy2(source, Path(str(dst) + suffix))


def prepared(cat: Catalogue, engine: str, index: str, rebuild: bool) -> Path:
    """The cached store of ``cat`` with its ``index`` built (once)."""
    path, _ = cached_store(cat, ROOT / "stores" / "ann_updates" / engine, rebuild=rebuild, lexical=engine)
    if not ann.generations(ann.ann_dir(path), FIELD, index):
        t = time.perf_counter()
        EmbeddedStore(path).build_vector_index(index)
        print(f"built the {index} index of the cached store in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def writer(path: str, n: int, dims: int, per_tick: int, tick: float, seconds: float, index: str,
           out: Any) -> None:
    """The writing process: ``per_tick`` changes every ``tick`` s for ``seconds``, then close."""
    cat = Catalogue(n, dims)
    leaves, centroids = cat.leaves(), cat.centroids()
    rng = np.random.default_rng(12345)
    store = EmbeddedStore(path, vector_index=index)
    deleted: set[int] = set()
    next_new, changed, commits, write_s = n, 0, 0, 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        picks = [int(i) for i in rng.integers(0, n, per_tick) if int(i) not in deleted]
        n_del = max(1, per_tick // 20) if per_tick >= 10 else int(rng.random() < 0.05 * per_tick)
        n_new = n_del
        gone, updated = picks[:n_del], picks[n_del:]
        docs = []
        for i in updated:
            (product,) = cat.products(i, i + 1, leaves)
            noise = rng.standard_normal(dims).astype(np.float32) * (1.2 / np.sqrt(dims))
            v = centroids[leaves[i]] + noise
            docs.append(Document(product, {FIELD: (v / np.linalg.norm(v)).astype(np.float32)}))
        for j in range(n_new):
            i = int(rng.integers(0, n))
            (product,) = cat.products(i, i + 1, leaves)
            product = dataclasses.replace(product, id=f"new{next_new + j:07d}")
            noise = rng.standard_normal(dims).astype(np.float32) * (1.2 / np.sqrt(dims))
            v = centroids[leaves[i]] + noise
            docs.append(Document(product, {FIELD: (v / np.linalg.norm(v)).astype(np.float32)}))
        next_new += n_new
        t = time.perf_counter()
        store.upsert(docs)
        if gone:
            store.delete([f"p{i:07d}" for i in gone])
            deleted.update(gone)
        write_s += time.perf_counter() - t
        commits += 2 if gone else 1
        changed += len(docs) + len(gone)
        time.sleep(max(0.0, tick - (time.monotonic() - start)))
    t = time.perf_counter()
    store.close()
    close_s = time.perf_counter() - t
    out.put({"changed": changed, "commits": commits, "write_s": write_s, "close_s": close_s,
             "deleted": len(deleted), "inserted": next_new - n})


def recall_at_10(store: EmbeddedStore, qv: np.ndarray, idx: list[int]) -> float:
    """Mean recall@10 of kNN against exact kNN (NumPy over every current vector) in one SQLite
    snapshot: the store's connection holds a read transaction over both."""
    conn = store.conn
    conn.execute("BEGIN")
    try:
        cache = knn.load_field(conn, FIELD)
        got = [{h.id for h in store.search(None, [VectorQuery(FIELD, qv[i], "text")], TOP)["text"]} for i in idx]
    finally:
        conn.execute("COMMIT")
    truth = [set(cache.ids[knn.top_k(cache.matrix @ qv[i], TOP)].tolist()) for i in idx]
    return float(np.mean([len(g & t) / TOP for g, t in zip(got, truth, strict=True)]))


class AnnClock:
    """Time spent in the approximate-index path of each query (``ApproximateIndexes.current``:
    the delta brought up to date; ``approximate.search``: the index searched, changed rows left
    out and scored exactly, merged): what this item adds, apart from the writer's CPU and the
    lexical engine following the writes."""

    def __init__(self) -> None:
        from ctir_es.store.embedded import approximate

        self.spent = 0.0
        clock = self

        def timed(fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    clock.spent += time.perf_counter() - t
            return wrapper

        approximate.ApproximateIndexes.current = timed(approximate.ApproximateIndexes.current)  # type: ignore[method-assign]
        approximate.search = timed(approximate.search)

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent * 1e3


def run_queries(store: EmbeddedStore, qt: list[str], qv: np.ndarray, seconds: float, pace: float,
                recall_every: float, window: float, clock: AnnClock, until_swap: bool = False) -> dict[str, Any]:
    """Paced hybrid queries for ``seconds`` (``until_swap``: or until 5 s after a newer index is in use)."""
    first_generation = store._ann[FIELD].generation if FIELD in store._ann else None
    swapped_at: float | None = None
    times: list[tuple[float, float, float, float, bool]] = []  # (at, hybrid ms, its ann ms, knn ms, rebuilding)
    recalls: list[float] = []
    deltas: list[int] = []
    generations: set[int] = set()
    start = time.monotonic()
    next_recall = start + min(5.0, recall_every)
    i = 0
    rng = np.random.default_rng(7)
    while time.monotonic() - start < seconds:
        if until_swap and swapped_at is not None and time.monotonic() - swapped_at > 5:
            break
        j = i % len(qt)
        clock.take()
        t = time.perf_counter()
        runs = store.search(LexicalQuery(qt[j]), [VectorQuery(FIELD, qv[j], "text")], K)
        fuse("rrf", runs, WEIGHTS, limit=TOP)
        hybrid = (time.perf_counter() - t) * 1e3
        in_ann = clock.take()
        t = time.perf_counter()
        store.search(None, [VectorQuery(FIELD, qv[(j + 1) % len(qv)], "text")], K)
        knn_ms = (time.perf_counter() - t) * 1e3
        thread = store._approx._thread
        times.append((time.monotonic() - start, hybrid, in_ann, knn_ms, thread is not None and thread.is_alive()))
        live = store._approx.deltas.get(FIELD)
        if live is not None:
            deltas.append(len(live.rows))
            generations.add(live.index.generation)
            if swapped_at is None and first_generation is not None and live.index.generation != first_generation:
                swapped_at = time.monotonic()
        i += 1
        if time.monotonic() >= next_recall:
            recalls.append(recall_at_10(store, qv, [int(x) for x in rng.integers(0, len(qv), 20)]))
            next_recall = time.monotonic() + recall_every
        time.sleep(pace / 1e3)
    arr = np.asarray([row[:4] for row in times])
    at, lat = arr[:, 0], arr[:, 1]
    rebuilding = np.asarray([row[4] for row in times])
    windows = [float(np.median(lat[(at >= w) & (at < w + window)])) for w in np.arange(0, seconds, window)
               if ((at >= w) & (at < w + window)).sum() >= 10]
    return {"queries": len(lat), "p50_ms": float(np.median(lat)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "window_p50_ms": windows,
            "ann_p50_ms": float(np.median(arr[:, 2])), "knn_p50_ms": float(np.median(arr[:, 3])),
            "rebuilding_share": float(rebuilding.mean()),
            "p50_rebuilding_ms": float(np.median(lat[rebuilding])) if rebuilding.any() else None,
            "p50_not_rebuilding_ms": float(np.median(lat[~rebuilding])) if (~rebuilding).any() else None,
            "recall": recalls, "max_delta": max(deltas) if deltas else 0,
            "index_generations": sorted(generations), "seconds": time.monotonic() - start,
            "swapped_after_s": None if swapped_at is None else swapped_at - start}


def delta_cost(store: EmbeddedStore, qv: np.ndarray, pairs: int = 300) -> dict[str, Any]:
    """The changed rows' cost per kNN query, robust to the load drifting between phases: the
    same index searched with its delta and with none, interleaved (the order alternating)."""
    live = store._ann_index(FIELD)
    if live is None:
        return {}
    empty = approximate.Live(live.index, approximate.Delta(live.index, 0, 0, 0).arrange())
    spent: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(pairs):
        vq = VectorQuery(FIELD, qv[i % len(qv)], "text")
        order = (("with", live), ("without", empty)) if i % 2 else (("without", empty), ("with", live))
        for name, which in order:
            t = time.perf_counter()
            approximate.search(which, vq, K)
            spent[name].append((time.perf_counter() - t) * 1e3)
    return {"rows": len(live.delta.rows), "with_ms": float(np.median(spent["with"])),
            "without_ms": float(np.median(spent["without"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--index", default="hnsw", choices=ann.KINDS)
    p.add_argument("--engine", default="tantivy", choices=("tantivy", "fts5"))
    p.add_argument("--minutes", type=float, default=2.0, help="length of the update stream")
    p.add_argument("--quiet-minutes", type=float, default=0.5)
    p.add_argument("--rate", type=float, default=0.01, help="share of the catalogue changed per minute")
    p.add_argument("--speed", type=float, default=1.0, help="time compression of the stream")
    p.add_argument("--tick", type=float, default=1.0, help="seconds between the writer's batches")
    p.add_argument("--pace", type=float, default=20.0, help="ms between queries")
    p.add_argument("--recall-every", type=float, default=15.0)
    p.add_argument("--window", type=float, default=15.0, help="seconds per p50 window")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--held-seconds", type=float, default=30.0)
    p.add_argument("--rebuild-cap", type=float, default=120.0, help="longest wait for a rebuild to swap in")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    m = machine()
    cat = Catalogue(a.n, a.dims)
    pristine = prepared(cat, a.engine, a.index, a.rebuild)
    scratch = ROOT / "ann_updates" / f"run-{a.n}-{a.dims}-{a.engine}-{a.index}.db"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    _copy_store(pristine, scratch)
    qt, qv = cat.query_texts(a.queries), cat.query_vectors(a.queries)
    per_minute = a.rate * a.n * a.speed
    per_tick = max(1, round(per_minute / 60 * a.tick))

    clock = AnnClock()
    store = EmbeddedStore(scratch, vector_index=a.index)
    for j in range(20):  # warm: the index mapped, tantivy open
        store.search(LexicalQuery(qt[j]), [VectorQuery(FIELD, qv[j], "text")], K)
    quiet = run_queries(store, qt, qv, a.quiet_minutes * 60, a.pace, a.recall_every, a.window, clock)
    print(f"quiet: hybrid p50 {quiet['p50_ms']:.3f} ms over {quiet['queries']} queries, recall@10 {quiet['recall']}",
          flush=True)

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=writer, args=(str(scratch), a.n, a.dims, per_tick, a.tick, a.minutes * 60, a.index,
                                            results))
    proc.start()
    busy = run_queries(store, qt, qv, a.minutes * 60, a.pace, a.recall_every, a.window, clock)
    wrote = results.get(timeout=600)
    proc.join()
    saved = approximate.REBUILD_AFTER_QUERIES
    approximate.REBUILD_AFTER_QUERIES = 10**9  # held: the delta as the stream left it, no writer, no new rebuild
    held = run_queries(store, qt, qv, a.held_seconds, a.pace, a.recall_every, a.window, clock)
    cost = delta_cost(store, qv)
    approximate.REBUILD_AFTER_QUERIES = saved
    rebuild = run_queries(store, qt, qv, a.rebuild_cap, a.pace, a.recall_every, a.window, clock, until_swap=True)
    store.close()
    load_end = [round(x, 2) for x in os.getloadavg()]

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    def spread(w: list[float]) -> str:
        return f"{min(w):.3f}-{max(w):.3f}" if w else "-"

    def rec(r: list[float]) -> str:
        return f"min {min(r):.3f} / median {float(np.median(r)):.3f} ({len(r)} samples of 20 queries)" if r else "-"

    ratio = busy["p50_ms"] / quiet["p50_ms"]
    print()
    print(machine_line(m, load_end))
    print(f"Store: {a.n:,} products x {a.dims} dims, lexical {a.engine}, vector_index {a.index}; k={K} per source, "
          f"RRF top {TOP}; one query every {a.pace:g} ms")
    print(f"Stream: {a.rate:.1%} of the catalogue per minute x speed {a.speed:g} = {per_minute:,.0f} changes/min "
          f"({per_tick} every {a.tick:g} s) for {a.minutes:g} min: {wrote['changed']:,} changes "
          f"({wrote['deleted']} deletes, {wrote['inserted']} inserts) in {wrote['commits']} commits")
    print(f"Rebuild bound: max({ann_bound()}) rows; index generations used while streaming: "
          f"{busy['index_generations']}; largest delta {busy['max_delta']:,} rows")
    print()
    print("| phase | queries | hybrid p50 ms | window p50 spread | p90 ms | p99 ms | ANN path p50 ms | kNN alone p50 ms "
          "| share of queries beside a rebuild (p50 beside / not) | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    phases = (("quiet", quiet), ("streaming", busy), ("held: writer closed, delta kept, no rebuild", held),
              ("rebuild allowed, until swapped in + 5 s", rebuild))
    for name, r in phases:
        beside = (f"{r['rebuilding_share']:.0%} ({fmt(r['p50_rebuilding_ms'])} / {fmt(r['p50_not_rebuilding_ms'])})"
                  if r["rebuilding_share"] else "0 %")
        print(f"| {name} | {r['queries']} | {r['p50_ms']:.3f} | {spread(r['window_p50_ms'])} | {r['p90_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['ann_p50_ms']:.3f} | {r['knn_p50_ms']:.3f} | {beside} | {rec(r['recall'])} |")
    print()
    print(f"streaming / quiet hybrid p50: {ratio:.2f}x (target <= 1.2x); ANN path p50 "
          f"{busy['ann_p50_ms']:.3f} ms streaming against {quiet['ann_p50_ms']:.3f} quiet; recall@10 while streaming: "
          f"{rec(busy['recall'])} (target >= 0.95)")
    if cost:
        print(f"changed rows' cost per kNN query (k={K}), interleaved: {cost['with_ms']:.3f} ms with "
              f"{cost['rows']:,} changed rows against {cost['without_ms']:.3f} ms without "
              f"({cost['with_ms'] / cost['without_ms']:.2f}x)")
    print(f"writer: {wrote['write_s']:.1f} s writing; close {wrote['close_s'] * 1e3:.1f} ms (target <= 1 s)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": m, "load_end": load_end, "args": {k: str(v) for k, v in vars(a).items()},
                                      "quiet": quiet, "streaming": busy, "held": held, "delta_cost": cost, "rebuild": rebuild, "writer": wrote,
                                      "ratio": ratio}, indent=1))


def ann_bound() -> str:
    from ctir_es.store.embedded import approximate

    return f"{approximate.REBUILD_MIN_ROWS}, {approximate.REBUILD_SHARE:.0%} of the index"


if __name__ == "__main__":
    main()
