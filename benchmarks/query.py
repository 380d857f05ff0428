"""Query latency on the embedded store: lexical only, kNN only and hybrid (both + RRF fusion),
one query at a time, against the brute-force limit of this machine (one NumPy matrix-vector
product over the same matrix plus top-k selection).

    python benchmarks/query.py --n 100000 --dims 512 [--index exact|sq8|ivf|hnsw] [--json out.json]

Runs in its own process when called by ``run.py``, so the resident memory it reports belongs
to one store. Query encoding is not included here (``run.py`` reports it separately).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from memory import file_bytes, rss_bytes
from synthetic import FIELD, Catalogue, cached_store

from ctir_es.ranking.fusion import fuse
from ctir_es.schema import LexicalQuery, VectorQuery
from ctir_es.store.embedded import EmbeddedStore

K = 100  # candidates per source, as Search asks for (MIN_CANDIDATES)
TOP = 10  # results after fusion (the "k=10 after RRF"; Search fuses with limit=k too)
HYBRID_WEIGHTS = {"bm25": 1.0, "text": 1.0}


def percentiles(samples_ms: list[float], rounds: list[list[float]]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    p50s = [float(np.median(r)) for r in rounds]
    return {
        "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "qps": 1000.0 / float(a.mean()),
        "p50_round_min_ms": min(p50s), "p50_round_max_ms": max(p50s), "rounds": len(rounds), "queries": len(rounds[0]),
    }


def time_queries(fn: Callable[[int], object], n: int, rounds: int) -> dict[str, float]:
    fn(0)  # warm
    per_round: list[list[float]] = []
    for _ in range(rounds):
        times = []
        for i in range(n):
            t = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t) * 1000)
        per_round.append(times)
    return percentiles([x for r in per_round for x in r], per_round)


def brute_force(matrix: np.ndarray, qv: np.ndarray, k: int) -> Callable[[int], np.ndarray]:
    def run(i: int) -> np.ndarray:
        scores = matrix @ qv[i]
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part])]
    return run


def exact_top(matrix: np.ndarray, qv: np.ndarray, k: int) -> np.ndarray:
    out = []
    for start in range(0, len(qv), 64):
        s = qv[start : start + 64] @ matrix.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(s, part, 1).argsort(axis=1)[:, ::-1]
        out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out)


def lexical_matches(store: EmbeddedStore, texts: list[str]) -> list[int]:
    """Products each query's BM25 has to score (any of its words in any text field)."""
    from ctir_es.schema import LEXICAL_FIELDS
    from ctir_es.store.embedded import fts_query

    if store.lexical_engine == "fts5":
        return [store.conn.execute("SELECT count(*) FROM products_fts WHERE products_fts MATCH ?",
                                   (fts_query(t, LEXICAL_FIELDS),)).fetchone()[0] for t in texts]
    import tantivy

    lexical = store._lexical_engine  # the tantivy engine: count with tantivy-py over its index
    searcher = lexical.searcher()
    counts = []
    for text in texts:
        should = [(tantivy.Occur.Should, tantivy.Query.term_query(lexical._schema, field, term))
                  for term in lexical.terms(text) for field in LEXICAL_FIELDS]
        counts.append(searcher.search(tantivy.Query.boolean_query(should), limit=1, count=True).count if should else 0)
    return counts


def bench(n: int, dims: int, *, index: str = "exact", queries: int = 200, rounds: int = 3,
          store_root: Path, k: int = K, modes: tuple[str, ...] = ("lexical", "knn", "hybrid"),
          brute: bool = True, rebuild: bool = False) -> dict[str, Any]:
    cat = Catalogue(n, dims)
    rss_start = rss_bytes()
    path, build = cached_store(cat, store_root, rebuild=rebuild)
    qv, qt = cat.query_vectors(queries), cat.query_texts(queries)
    store = EmbeddedStore(path, vector_index=index) if index != "exact" else EmbeddedStore(path)
    t = time.perf_counter()
    store.search(None, [VectorQuery(FIELD, qv[0], "text")], k)  # loads the matrix (and builds an index)
    load_s = time.perf_counter() - t
    out: dict[str, Any] = {"n": n, "dims": dims, "index": index, "k": k, "store_build": build,
                           "first_query_load_s": load_s, "modes": {}}

    def lex(i: int) -> object:
        return store.search(LexicalQuery(qt[i]), [], k)

    def knn(i: int) -> object:
        return store.search(None, [VectorQuery(FIELD, qv[i], "text")], k)

    def hybrid(i: int) -> object:
        runs = store.search(LexicalQuery(qt[i]), [VectorQuery(FIELD, qv[i], "text")], k)
        return fuse("rrf", runs, HYBRID_WEIGHTS, limit=TOP)

    fns = {"lexical": lex, "knn": knn, "hybrid": hybrid}
    for mode in modes:
        out["modes"][mode] = time_queries(fns[mode], queries, rounds)
    out["lexical_engine"] = store.lexical_engine
    out["lexical_matches_mean"] = float(np.mean(lexical_matches(store, qt[:50])))
    out["rss_query_bytes"] = rss_bytes()
    out["rss_before_open_bytes"] = rss_start
    out["file_bytes"] = file_bytes(path)
    out["bytes_per_product"] = out["file_bytes"] / n
    raw = cat.raw_bytes()
    out["raw_bytes"] = raw
    out["size_ratio"] = out["file_bytes"] / (raw["vectors"] + raw["text"])
    matrix = store_matrix(store)
    if brute:
        out["brute_force"] = time_queries(brute_force(matrix, qv, k), queries, rounds)
        if "knn" in out["modes"]:
            out["knn_vs_brute"] = out["modes"]["knn"]["p50_ms"] / out["brute_force"]["p50_ms"]
    if index != "exact":
        truth = exact_top(matrix, qv, 10)
        got = [[h.id for h in store.search(None, [VectorQuery(FIELD, q, "t")], 10)["t"]] for q in qv]
        ids = store_ids(store)
        out["recall_at_10"] = float(np.mean([len(set(ids[truth[i]].tolist()) & set(got[i])) / 10 for i in range(len(qv))]))
    store.close()
    return out


def store_matrix(store: EmbeddedStore) -> np.ndarray:
    return store._field_matrix(FIELD).matrix  # the very matrix the store searches


def store_ids(store: EmbeddedStore) -> np.ndarray:
    cache = store._field_matrix(FIELD)
    ids = getattr(cache, "ids", None)
    if ids is None:
        ids = np.asarray([store._ids_for_rowids(np.asarray([r]))[int(r)] for r in cache.rowids], dtype=object)
    return np.asarray(ids, dtype=object)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--index", default="exact")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default="lexical,knn,hybrid")
    p.add_argument("--store-root", type=Path, default=Path("artifacts/benchmarks/stores"))
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    res = bench(a.n, a.dims, index=a.index, queries=a.queries, rounds=a.rounds, store_root=a.store_root,
                modes=tuple(m for m in a.modes.split(",") if m), rebuild=a.rebuild)
    res["pid"] = os.getpid()
    text = json.dumps(res, indent=2)
    if a.json:
        a.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
