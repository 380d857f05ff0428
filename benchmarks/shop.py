"""Facets, sort and collapse (``ctir_es.shop``): what they cost and what collapse does.

    ctir-es ingest flipkart ../shared/datasets/flipkart-1050 --no-images --clip-weights none --store artifacts/fk.db
    python benchmarks/shop.py --store artifacts/fk.db [--synthetic 100000] [--repeats 3]

1. flipkart-1050, collapse: the near-duplicate rate of the top 10 (a result whose normalised
   title equals, or whose title vector has cosine >= 0.95 with, a result above it: the measure of
   ``ctir-es evaluate --task diverse``) and subtree P@10, over every category node of levels
   1-3 queried in category mode, without and with ``collapse="auto"``.
2. flipkart-1050, cost: p50 / p90 / p95 latency of the hybrid query alone (k=10) against the same
   query with facets (brand, price, category), with a disjunctive facet (a brand filter, so one
   more retrieval), with sort and with collapse; text queries (titles' first words) and category
   queries. Target: facets at most 1.5x the unfaceted p50.
3. ``--synthetic N``: the same costs on a synthetic catalogue with values (brand, colour, price,
   rating, in stock) in the embedded store, BM25 + exact kNN over 384-d vectors (no model: the
   query vectors are drawn near the catalogue's category centroids). ``--es-url URL``: the same
   catalogue bulk-loaded into Elasticsearch (int8_hnsw, index ``shop-synthetic-N``), same costs.
4. ``--recall``: filtered kNN on the synthetic catalogue, for filters passing 0.1 % .. 50 % of it
   (a ``slot`` number spread evenly over [0, 1), independent of the vectors: ``slot < x`` passes
   exactly x of the catalogue): recall@10 against exact filtered kNN (the embedded store's exact
   scan of the passing rows), the share of queries answered with k=10 results, p50 latency; on
   the embedded store's approximate indexes (``--ann sq8,ivf,hnsw``) and on Elasticsearch.

The synthetic catalogue (``benchmarks/synthetic.py``): titles "<brand> <adjective> [colour]
[material] <noun> <size>" with the noun following the leaf category (640 leaves), vectors =
leaf centroid + isotropic noise, L2-normalised (cosine to the centroid ~0.6). Values: brand =
one of ``--brands`` (200) names, Zipf-like (it is also the title's first word), price lognormal
around 665 INR, rating in 60 %, in_stock 80 % true, colour where the title names one, slot.

    python benchmarks/shop.py --synthetic 100000 --es-url http://127.0.0.1:9200 --recall
    python benchmarks/shop.py --synthetic 1000000 --recall --recall-queries 30

Figures: docs/shop-search.md, "Measured".
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
    q = statistics.quantiles(ms, n=20) if len(ms) > 1 else [ms[0]] * 19
    return {"p50_ms": round(statistics.median(ms), 2), "p90_ms": round(q[17], 2), "p95_ms": round(q[18], 2),
            "n": len(ms)}


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
        for kwargs in variants.values():
            search.search(text, mode=mode, k=10, **kwargs)  # warm-up (page cache, first read)
        for _ in range(repeats):  # the variants interleaved: a change of load hits all of them alike
            for name, kwargs in variants.items():
                times[name] += timed(lambda t=text, m=mode, kw=kwargs: search.search(t, mode=m, k=10, **kw), 1)
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


SHARES = (0.001, 0.01, 0.05, 0.10, 0.25, 0.50)
SPECS_LAYOUT = "v2"  # bump when the values written change, so cached stores are rebuilt


def _specs() -> dict[str, Any]:
    from ctir_es.values import ValueSpec

    return {"brand": ValueSpec("keyword"), "colour": ValueSpec("keyword"), "price": ValueSpec("number", "INR"),
            "rating": ValueSpec("number"), "in_stock": ValueSpec("boolean"), "slot": ValueSpec("number")}


def synthetic_documents(cat: Any, brands: int, batch: int = 5000) -> Any:
    """``cat``'s documents with values; the brand (the title's first word) is one of ``brands``
    names, picked Zipf-like; ``slot`` = (i * 7919 mod n) / n spreads the products evenly over [0, 1)."""
    from synthetic import BRANDS, _zipf

    from ctir_es.schema import Document

    names = BRANDS[:brands]
    rng = np.random.default_rng(5)
    start = 0
    for docs in cat.documents(batch):
        prices = np.round(np.exp(rng.normal(6.5, 1.0, len(docs))), 0)  # lognormal around ~665 INR
        picks = rng.integers(0, 1 << 30, len(docs))
        out = []
        for i, d in enumerate(docs):
            p = d.product
            old = p.attributes["Brand"]
            brand = names[_zipf(int(picks[i]), len(names))]
            values: dict[str, Any] = {"brand": brand, "price": float(prices[i]),
                                      "in_stock": bool(rng.random() < 0.8),
                                      "slot": ((start + i) * 7919 % cat.n) / cat.n}
            if "Color" in p.attributes:
                values["colour"] = p.attributes["Color"]
            if rng.random() < 0.6:
                values["rating"] = float(np.round(rng.uniform(1, 5), 1))
            title = brand + p.title[len(old):]
            out.append(Document(replace(p, title=title, attributes={**p.attributes, "Brand": brand}, values=values),
                                d.vectors))
        start += len(docs)
        yield out


def synthetic_store(n: int, dims: int, root: Path, brands: int = 200) -> Path:
    from synthetic import FIELD, Catalogue

    from ctir_es.schema import IndexSchema, VectorField
    from ctir_es.store.embedded import EmbeddedStore

    root.mkdir(parents=True, exist_ok=True)
    path = root / f"shop-synthetic-{n}-{dims}d-b{brands}-{SPECS_LAYOUT}.db"
    done = path.with_suffix(".done")
    if done.exists():
        return path
    cat = Catalogue(n, dims)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = EmbeddedStore(path)
    store.setup(IndexSchema({FIELD: VectorField(dims, "cosine", {"id": f"synthetic-{dims}"})}, _specs()))
    for docs in synthetic_documents(cat, brands):
        result = store.upsert(docs)
        if result.errors:
            raise RuntimeError(f"upsert rejected {len(result.errors)}: {next(iter(result.errors.values()))}")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    done.write_text("ok")
    return path


def es_store(url: str, n: int, dims: int, brands: int, rebuild: bool = False) -> tuple[Any, dict[str, Any]]:
    """The synthetic catalogue in Elasticsearch (int8_hnsw, one shard, no replica), loaded once:
    reused when the index already holds ``n`` products."""
    from synthetic import FIELD, Catalogue

    from ctir_es.schema import IndexSchema, VectorField
    from ctir_es.store.elasticsearch.connection import EsConnection
    from ctir_es.store.elasticsearch.store import ElasticsearchStore

    index = f"shop-synthetic-{n}-{dims}d-b{brands}-{SPECS_LAYOUT}"
    store = ElasticsearchStore(EsConnection(url, index, request_timeout=600), index_options="int8_hnsw",
                               replicas=0, refresh=False, chunk_size=1000)
    info: dict[str, Any] = {"index": index, "index_options": "int8_hnsw"}
    try:
        have = store.count()
    except Exception:  # noqa: BLE001 - no index yet
        have = -1
    if have == n and not rebuild:
        info["load_s"] = "reused"
        return store, info
    store.drop()
    store.setup(IndexSchema({FIELD: VectorField(dims, "cosine", {"id": f"synthetic-{dims}"})}, _specs()))
    t = time.perf_counter()
    report = store.bulk_load(d for docs in synthetic_documents(Catalogue(n, dims), brands) for d in docs)
    info["load_s"] = round(time.perf_counter() - t, 1)
    info["load_report"] = str(report)[:300]
    live = store.status()["live"]
    import urllib.request

    t = time.perf_counter()
    for path in (f"/{live}/_refresh", f"/{live}/_forcemerge?max_num_segments=1", f"/{live}/_refresh"):
        urllib.request.urlopen(urllib.request.Request(f"{url}{path}", method="POST"), timeout=3600).read()
    info["refresh_forcemerge_s"] = round(time.perf_counter() - t, 1)
    return store, info


def side_by_side(label: str, variants: dict[str, Any]) -> None:
    h, f = variants["hybrid"], variants["facets"]
    print(f"{label}: hybrid p50 {h['p50_ms']} ms p95 {h['p95_ms']} ms | hybrid+facets p50 {f['p50_ms']} ms "
          f"p95 {f['p95_ms']} ms | facets/hybrid p50 {f['x_hybrid_p50']}x (target <= 1.5x: "
          f"{'met' if f['x_hybrid_p50'] <= 1.5 else 'NOT met'})", flush=True)


def filtered_recall(exact: Any, stores: dict[str, Any], cat: Any, queries: int, k: int = 10) -> dict[str, Any]:
    """Per filter share and store: recall@10 against ``exact`` (the embedded store's exact
    filtered kNN), the share of queries with k results, p50 / p95 latency of the filtered kNN."""
    from synthetic import FIELD

    from ctir_es.filters import Filter
    from ctir_es.schema import VectorQuery

    qv = cat.query_vectors(queries, seed=123)
    out: dict[str, Any] = {}
    for share in SHARES:
        flt = [Filter("slot", "range", (None, share - 0.5 / cat.n))]  # slot <= share - half a step: exactly share * n pass
        want = [[h.id for h in exact.search(None, [VectorQuery(FIELD, q)], k, flt)[FIELD]] for q in qv]
        row: dict[str, Any] = {"passing": round(share * cat.n),
                               "exact_k_results": round(float(np.mean([len(w) == k for w in want])), 3)}
        for name, store in stores.items():
            store.search(None, [VectorQuery(FIELD, qv[0])], k, flt)  # warm-up (the mask, the index)
            rec, full, ms = [], [], []
            for q, w in zip(qv, want):
                t = time.perf_counter()
                got = [h.id for h in store.search(None, [VectorQuery(FIELD, q)], k, flt)[FIELD]]
                ms.append(1000 * (time.perf_counter() - t))
                rec.append(len(set(w) & set(got)) / max(1, len(w)))
                full.append(len(got) == min(k, row["passing"]))
            row[name] = {"recall@10": round(float(np.mean(rec)), 4), "k_results": round(float(np.mean(full)), 3),
                         **summary(ms)}
        out[f"{share:.1%}"] = row
        print(json.dumps({"filtered_knn": {f"{share:.1%}": row}}), flush=True)
    return out


def recall_table(report: dict[str, Any]) -> None:
    names = [n for n in next(iter(report.values())) if n not in ("passing", "exact_k_results")]
    print("| filter passes | " + " | ".join(f"{n}: recall@10 / k results / p50 ms" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for share, row in report.items():
        cells = [f"{row[n]['recall@10']:.3f} / {row[n]['k_results']:.0%} / {row[n]['p50_ms']}" for n in names]
        print(f"| {share} ({row['passing']:,}) | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, help="flipkart-1050 in an embedded store (sections 1-2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=20, help="text queries and category queries, each")
    ap.add_argument("--synthetic", type=int, default=0, help="also a synthetic catalogue of this size")
    ap.add_argument("--brands", type=int, default=200, help="brand values of the synthetic catalogue")
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--work", type=Path, default=Path("artifacts/benchmarks/stores"))
    ap.add_argument("--skip-collapse", action="store_true")
    ap.add_argument("--skip-cost", action="store_true", help="synthetic: no facet cost, only --recall")
    ap.add_argument("--es-url", help="also the synthetic catalogue in this Elasticsearch (int8_hnsw)")
    ap.add_argument("--es-rebuild", action="store_true")
    ap.add_argument("--recall", action="store_true", help="synthetic: filtered kNN recall per filter share")
    ap.add_argument("--ann", default="sq8,ivf,hnsw", help="embedded approximate indexes for --recall")
    ap.add_argument("--recall-queries", type=int, default=50)
    args = ap.parse_args()
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version(),
                                          "load_1m_at_start": round(os.getloadavg()[0], 2)}}
    print(json.dumps({"machine": report["machine"]}), flush=True)
    if args.store:
        with Search.open(replace(load_settings(), store=args.store)) as search:
            queries = flipkart_queries(search, args.queries)
            if not args.skip_collapse:
                report["flipkart_collapse"] = collapse_effect(search)
                print(json.dumps({"flipkart_collapse": report["flipkart_collapse"]}, indent=1), flush=True)
            report["flipkart_cost"] = {"products": search.store.count(), "queries": len(queries),
                                       "variants": costs(search, queries, args.repeats, common_brand(search, queries))}
            print(json.dumps({"flipkart_cost": report["flipkart_cost"]}, indent=1), flush=True)
            side_by_side("flipkart-1050 embedded", report["flipkart_cost"]["variants"])
    if args.synthetic:
        from synthetic import Catalogue

        from ctir_es.store.embedded import EmbeddedStore

        t = time.perf_counter()
        path = synthetic_store(args.synthetic, args.dims, args.work, args.brands)
        cat = Catalogue(args.synthetic, args.dims)
        texts = cat.query_texts(args.queries)
        queries = [(q, "text") for q in texts]
        print(json.dumps({"synthetic_store": str(path), "build_or_open_s": round(time.perf_counter() - t, 1),
                          "load_1m": round(os.getloadavg()[0], 2)}), flush=True)
        if not args.skip_cost:
            with Search(EmbeddedStore(path), CentroidQueries(cat)) as search:  # type: ignore[arg-type]
                report["synthetic_cost"] = {"products": search.store.count(), "queries": len(queries),
                                            "load_1m": round(os.getloadavg()[0], 2),
                                            "variants": costs(search, queries, args.repeats, common_brand(search, queries))}
            print(json.dumps({"synthetic_cost": report["synthetic_cost"]}, indent=1), flush=True)
            side_by_side(f"synthetic {args.synthetic:,} embedded (exact kNN + FTS5)", report["synthetic_cost"]["variants"])
        es = None
        if args.es_url:
            es, info = es_store(args.es_url, args.synthetic, args.dims, args.brands, args.es_rebuild)
            print(json.dumps({"es_store": info}), flush=True)
            if not args.skip_cost:
                with Search(es, CentroidQueries(cat)) as search:  # type: ignore[arg-type]
                    report["es_cost"] = {"products": es.count(), **info, "queries": len(queries),
                                         "load_1m": round(os.getloadavg()[0], 2),
                                         "variants": costs(search, queries, args.repeats, common_brand(search, queries))}
                print(json.dumps({"es_cost": report["es_cost"]}, indent=1), flush=True)
                side_by_side(f"synthetic {args.synthetic:,} Elasticsearch int8_hnsw", report["es_cost"]["variants"])
        if args.recall:
            from synthetic import FIELD

            from ctir_es.schema import VectorQuery

            exact = EmbeddedStore(path)
            stores: dict[str, Any] = {}
            for kind in [k for k in args.ann.split(",") if k]:
                t = time.perf_counter()
                stores[kind] = EmbeddedStore(path, vector_index=kind)
                stores[kind].search(None, [VectorQuery(FIELD, cat.query_vectors(1)[0])], 10)  # loads, or builds once
                print(json.dumps({"ann_loaded_or_built": kind, "s": round(time.perf_counter() - t, 1)}), flush=True)
            if es is not None:
                stores["es int8_hnsw"] = es
            report["filtered_knn"] = filtered_recall(exact, stores, cat, args.recall_queries)
            report["filtered_knn_load_1m_at_end"] = round(os.getloadavg()[0], 2)
            recall_table(report["filtered_knn"])
            for s in (exact, *[v for k, v in stores.items() if not k.startswith("es")]):
                s.close()
    report["machine"]["load_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps({"machine": report["machine"]}))
    if args.synthetic:
        out = args.work.parent / f"shop-synthetic-{args.synthetic}{'-es' if args.es_url else ''}.json"
        out.write_text(json.dumps(report, indent=1))
        print(f"report: {out}")


if __name__ == "__main__":
    main()
