"""Facets, sort and collapse (``ctir_es.shop``): what they cost and what collapse does.

    ctir-es ingest flipkart ../shared/datasets/flipkart-1050 --no-images --clip-weights none --store /tmp/fk.db
    python benchmarks/shop.py --store /tmp/fk.db [--synthetic 100000] [--repeats 3]

1. flipkart-1050, collapse: the near-duplicate rate of the top 10 (a result whose normalised
   title equals, or whose title vector has cosine >= 0.95 with, a result above it: the measure of
   ``ctir-es evaluate --task diverse``) and subtree P@10, over every category node of levels
   1-3 queried in category mode, without and with ``collapse="auto"``.
2. flipkart-1050, cost: p50 / p90 latency of the hybrid query alone (k=10) against the same
   query with facets (brand, price, category), with a disjunctive facet (a brand filter, so one
   more retrieval), with sort and with collapse; text queries (titles' first words) and category
   queries. Target: facets at most 1.5x the unfaceted p50.
3. ``--synthetic N``: the same costs on a synthetic catalogue with values (brand, colour, price,
   rating, in stock) in the embedded store, BM25 + exact kNN over 384-d vectors (no model: the
   query vectors are drawn near the catalogue's category centroids).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ctir_es.config import load_settings
from ctir_es.diversify import near_duplicate_flags
from ctir_es.filters import Filter
from ctir_es.products import format_category_path, path_prefixes
from ctir_es.search import Search

FACETS = ("brand", "price", "category")


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return out


def summary(ms: Sequence[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=10) if len(ms) > 1 else [ms[0]] * 9
    return {"p50_ms": round(statistics.median(ms), 2), "p90_ms": round(q[8], 2), "n": len(ms)}


def costs(search: Search, queries: Sequence[tuple[str, str]], repeats: int, brand: str | None) -> dict[str, Any]:
    """Per variant, the latency of every query (each run ``repeats`` times after one warm-up)."""
    variants: dict[str, dict[str, Any]] = {
        "hybrid": {},
        "facets": {"facets": FACETS},
        "sort price_asc": {"sort": "price_asc"},
        "collapse auto": {"collapse": "auto"},
        "facets+sort+collapse": {"facets": FACETS, "sort": "price_asc", "collapse": "auto"},
    }
    if brand:
        variants["facets, brand filtered (disjunctive)"] = {
            "facets": FACETS, "filters": [Filter("brand", "in", (brand,))]}
        variants["hybrid, brand filtered"] = {"filters": [Filter("brand", "in", (brand,))]}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for text, mode in queries:
        for name, kwargs in variants.items():
            search.search(text, mode=mode, k=10, **kwargs)  # warm-up (page cache, first read)
            times[name] += timed(lambda t=text, m=mode, kw=kwargs: search.search(t, mode=m, k=10, **kw), repeats)
    out = {name: summary(ms) for name, ms in times.items()}
    base = out["hybrid"]["p50_ms"]
    for row in out.values():
        row["x_hybrid_p50"] = round(row["p50_ms"] / base, 2)
    if brand:
        filtered = out["hybrid, brand filtered"]["p50_ms"]
        out["facets, brand filtered (disjunctive)"]["x_filtered_hybrid_p50"] = round(
            out["facets, brand filtered (disjunctive)"]["p50_ms"] / filtered, 2)
    return out


def collapse_effect(search: Search) -> dict[str, Any]:
    counts = search.store.category_counts()  # type: ignore[attr-defined]
    nodes = sorted(p for p in counts if 1 <= len(p) <= 3)
    ids = search.store.ids()  # type: ignore[attr-defined]
    under: dict[tuple[str, ...], set[str]] = {}
    for pid, doc in search.store.get(ids).items():
        for path in doc.product.categories:
            for prefix in path_prefixes(tuple(path)):
                under.setdefault(prefix, set()).add(pid)
    rows: dict[str, dict[str, list[float]]] = {v: {"dup": [], "p10": [], "folded": []} for v in ("plain", "collapse auto")}
    for node in nodes:
        query = format_category_path(node)
        for name, collapse in (("plain", None), ("collapse auto", "auto")):
            response = search.search(query, mode="category", k=10, collapse=collapse)
            top = [r.id for r in response.results]
            flags = near_duplicate_flags(top, {r.id: r.title for r in response.results}, search.result_vectors(top))
            rows[name]["dup"].append(sum(flags) / len(top) if top else 0.0)
            rows[name]["p10"].append(sum(i in under.get(node, set()) for i in top) / 10)
            rows[name]["folded"].append(sum(r.collapsed or 0 for r in response.results))
    return {"queries": len(nodes), **{name: {
        "near_duplicate_rate@10": round(float(np.mean(r["dup"])), 4),
        "queries_with_a_duplicate": round(float(np.mean([d > 0 for d in r["dup"]])), 4),
        "subtree_p@10": round(float(np.mean(r["p10"])), 4),
        "products_folded_under_the_top10": round(float(np.mean(r["folded"])), 2)} for name, r in rows.items()}}


def flipkart_queries(search: Search, n_text: int) -> list[tuple[str, str]]:
    counts = search.store.category_counts()  # type: ignore[attr-defined]
    cats = sorted(format_category_path(p) for p in counts if len(p) == 2)[:n_text]
    titles = [doc.product.title for doc in search.store.get(search.store.ids()[::37]).values()]  # type: ignore[attr-defined]
    texts = list(dict.fromkeys(" ".join(t.split()[:3]) for t in titles))[:n_text]
    return [(t, "text") for t in texts] + [(c, "category") for c in cats]


def common_brand(search: Search, queries: Sequence[tuple[str, str]]) -> str | None:
    facet = search.search(queries[0][0], mode=queries[0][1], k=10, facets=("brand",)).facets.get("brand", {})
    values = facet.get("values") or []
    return values[0]["value"] if values else None


# ---------------------------------------------------------------- the synthetic catalogue with values


class CentroidQueries:
    """A 'text encoder' for the synthetic store: a query's vector is drawn near a category
    centroid (seeded by the text), as the catalogue's products are; no model cost."""

    def __init__(self, cat: Any) -> None:
        self.cat, self.dims = cat, cat.dims
        self.manifest = {"id": f"synthetic-{cat.dims}", "name": "synthetic", "dims": cat.dims, "kind": "text"}
        self._centroids = cat.centroids()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for text in texts:
            rng = np.random.default_rng(abs(hash(text)) % (1 << 32))
            v = self._centroids[rng.integers(len(self._centroids))] + rng.standard_normal(self.dims).astype(np.float32) * (1.2 / np.sqrt(self.dims))
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)

    encode_documents = encode_queries


def synthetic_store(n: int, dims: int, root: Path) -> Path:
    from synthetic import COLORS, FIELD, Catalogue

    from ctir_es.store.base import Document, IndexSchema, VectorField
    from ctir_es.store.embedded import EmbeddedStore
    from ctir_es.values import ValueSpec

    path = root / f"shop-synthetic-{n}-{dims}d.db"
    done = path.with_suffix(".done")
    if done.exists():
        return path
    cat = Catalogue(n, dims)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = EmbeddedStore(path)
    specs = {"brand": ValueSpec("keyword"), "colour": ValueSpec("keyword"), "price": ValueSpec("number", "INR"),
             "rating": ValueSpec("number"), "in_stock": ValueSpec("boolean")}
    store.setup(IndexSchema({FIELD: VectorField(dims, "cosine", {"id": f"synthetic-{dims}"})}, specs))
    rng = np.random.default_rng(5)
    for docs in cat.documents(5000):
        prices = np.round(np.exp(rng.normal(6.5, 1.0, len(docs))), 0)  # lognormal around ~665 INR
        out = []
        for i, d in enumerate(docs):
            p = d.product
            values: dict[str, Any] = {"brand": p.attributes["Brand"], "price": float(prices[i]),
                                      "in_stock": bool(rng.random() < 0.8)}
            if "Color" in p.attributes:
                values["colour"] = p.attributes["Color"]
            if rng.random() < 0.6:
                values["rating"] = float(np.round(rng.uniform(1, 5), 1))
            out.append(Document(replace(p, values=values), d.vectors))
        store.upsert(out)
    store.close()
    assert COLORS  # the colours the titles name are the colour values
    done.write_text("ok")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="flipkart-1050 in an embedded store")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=20, help="text queries and category queries, each")
    ap.add_argument("--synthetic", type=int, default=0, help="also a synthetic catalogue of this size")
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--work", type=Path, default=Path("artifacts/benchmarks/stores"))
    ap.add_argument("--skip-collapse", action="store_true")
    args = ap.parse_args()
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version(),
                                          "load_1m_at_start": round(os.getloadavg()[0], 2)}}
    with Search.open(replace(load_settings(), store=args.store)) as search:
        queries = flipkart_queries(search, args.queries)
        if not args.skip_collapse:
            report["flipkart_collapse"] = collapse_effect(search)
            print(json.dumps({"flipkart_collapse": report["flipkart_collapse"]}, indent=1), flush=True)
        report["flipkart_cost"] = {"products": search.store.count(), "queries": len(queries),
                                   "variants": costs(search, queries, args.repeats, common_brand(search, queries))}
        print(json.dumps({"flipkart_cost": report["flipkart_cost"]}, indent=1), flush=True)
    if args.synthetic:
        from synthetic import Catalogue

        from ctir_es.store.embedded import EmbeddedStore

        t = time.perf_counter()
        path = synthetic_store(args.synthetic, args.dims, args.work)
        cat = Catalogue(args.synthetic, args.dims)
        with Search(EmbeddedStore(path), CentroidQueries(cat)) as search:  # type: ignore[arg-type]
            texts = cat.query_texts(args.queries)
            queries = [(q, "text") for q in texts]
            report["synthetic_cost"] = {"products": search.store.count(), "build_or_open_s": round(time.perf_counter() - t, 1),
                                        "queries": len(queries),
                                        "variants": costs(search, queries, args.repeats, common_brand(search, queries))}
        print(json.dumps({"synthetic_cost": report["synthetic_cost"]}, indent=1), flush=True)
    report["machine"]["load_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps({"machine": report["machine"]}))


if __name__ == "__main__":
    main()
