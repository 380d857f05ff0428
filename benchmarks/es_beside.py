#!/usr/bin/env python
"""Single-node Elasticsearch beside the embedded store on the same work: the same synthetic
products and queries (benchmarks/synthetic.py), the same machine, one run.

    CTIR_ES_TEST_URL=http://127.0.0.1:9200 python benchmarks/es_beside.py --n 100000 [--dims 512]
    # the kNN index types side by side, Elasticsearch alone (no embedded store; docs/benchmarks.md)
    CTIR_ES_TEST_URL=http://127.0.0.1:9201 python benchmarks/es_beside.py --n 50000 --dims 384 \
        --es-index-types int8_hnsw,int4_hnsw,bbq_hnsw,hnsw --engines --pipeline-n 0 --minilm-n 20000

Elasticsearch goes through the project's ``ElasticsearchStore`` (``bulk_load``, no refresh per
chunk, one refresh at the end, then a force-merge to one segment), once per kNN index type
(``--es-index-types``: int8_hnsw, the project's default, and hnsw; int4_hnsw and bbq_hnsw for the
quantisation comparison), into indexes with unique names that are deleted afterwards. Per type:
recall@10 against exact kNN over the same vectors (NumPy, brute force), kNN-only and hybrid
latency (p50, p99, the spread of the round medians), the index's size on disk and its off-heap
vector files (9.1+), and for the quantised types a ``rescore_vector.oversample`` sweep
(``--oversample``: recall and the p50 of a plain ``_search``). Ingest is also measured without
and with an ingest pipeline (``--pipeline-n`` products per load, alternating rounds). Queries:
one ``search`` call per query = one ``_msearch`` round trip (BM25 multi_match + kNN, k=100 per
source), then the same client-side RRF the embedded store uses. The embedded stores are the
cached stores of benchmarks/targets.py (one per lexical engine, ``--engines``; with no names,
none), each queried with exact kNN and each ``--ann`` index, in this process, interleaved with
Elasticsearch round by round. Recall@10 against exact over a ``num_candidates`` sweep, on the
synthetic vectors and on real MiniLM text vectors (``--minilm-n``, benchmarks/text_vectors.py);
Elasticsearch's heap and disk from its stats APIs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from memory import machine, machine_line, mib
from query import HYBRID_WEIGHTS, TOP, K
from synthetic import FIELD, Catalogue
from targets import STORES, store_path

from ctir_es.errors import StoreError
from ctir_es.products import Product
from ctir_es.ranking.fusion import fuse
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.elasticsearch.bodies.index import INDEX_OPTION_TYPES, check_index_options
from ctir_es.store.elasticsearch.bodies.search import RESCORE_OVERSAMPLE, rescore_oversample
from ctir_es.store.elasticsearch.cluster import QUANTIZED_INDEX_OPTIONS
from ctir_es.store.elasticsearch.connection import EsConnection
from ctir_es.store.embedded import EmbeddedStore


def es_store(url: str, name: str, index_options: str) -> ElasticsearchStore:
    return ElasticsearchStore(EsConnection(url=url, index=name, request_timeout=120), index_options=index_options,
                              refresh=False)


def load_es(store: ElasticsearchStore, cat: Catalogue, limit: int | None = None, *, merge: bool = True) -> dict[str, Any]:
    """Bulk-load the catalogue (its first ``limit`` products), refresh, force-merge to one segment."""
    store.setup(IndexSchema({FIELD: VectorField(cat.dims, "cosine", {"id": f"synthetic-{cat.dims}"})}))
    n = cat.n if limit is None else min(limit, cat.n)
    t = time.perf_counter()
    report = store.bulk_load(itertools.islice((d for batch in cat.documents(5000) for d in batch), n))
    store.client.indices.refresh(index=store.index)
    secs = time.perf_counter() - t
    merge_s = 0.0
    if merge:
        t = time.perf_counter()
        store.client.options(request_timeout=3600).indices.forcemerge(index=store.index, max_num_segments=1)
        merge_s = time.perf_counter() - t
    return {"n": n, "seconds": secs, "products_per_s": n / secs, "forcemerge_s": merge_s,
            "written": getattr(report, "written", None)}


def off_heap(store: ElasticsearchStore) -> dict[str, int] | None:
    """The vector files of the index (``_stats/dense_vector`` ``off_heap``, Elasticsearch 9.1+),
    bytes: ``vec`` the float vectors, ``veq`` int4/int8 and ``veb`` bbq quantised vectors, ``vex``
    the HNSW graph. What approximate kNN reads per query is the quantised vectors and the graph
    (the floats only for rescoring), so that is the page cache it needs; None on older nodes."""
    try:
        stats = store.client.indices.stats(index=store.index, metric="dense_vector")["_all"]["primaries"]
    except Exception:  # noqa: BLE001 - an older node: no figure, not a failed run
        return None
    heap = (stats.get("dense_vector") or {}).get("off_heap")
    if not heap:
        return None
    return {k.removeprefix("total_").removesuffix("_size_bytes"): int(v) for k, v in heap.items()}


def drop(store: ElasticsearchStore, res: dict[str, Any]) -> None:
    """Delete a benchmark index; a failure is reported with the name, never hidden."""
    try:
        store.drop()
    except (StoreError, OSError) as exc:
        res.setdefault("undeleted", []).append(f"{store.index}: {exc}")


# The only processors this machine's Elasticsearch has are x-pack's (the Maven test distribution
# ships no ingest-common module); a pipeline of the full distribution would add html_strip /
# set / script. What this measures is the ingest node's own cost: every document is parsed into
# an IngestDocument, run through the pipeline and serialised again.
PIPELINE = {"description": "ctir-es benchmark: the ingest node's per-document cost", "processors": []}


def ingest_count(store: ElasticsearchStore) -> int:
    """Documents the cluster's ingest nodes have run through any pipeline so far."""
    nodes = store.client.nodes.stats(metric="ingest")["nodes"]
    return sum(nd["ingest"]["total"]["count"] for nd in nodes.values())


def pipeline_ingest(url: str, cat: Catalogue, n: int, res: dict[str, Any], rounds: int = 2) -> dict[str, Any]:
    """The same ``n`` products bulk-loaded into fresh int8_hnsw indexes without and with an ingest
    pipeline (``index.default_pipeline``), no force-merge, in ``rounds`` alternating rounds (the
    first index of a run pays for warming up); products/s of each load."""
    out: dict[str, Any] = {"n": n, "rounds": rounds, "without": [], "with": [], "pipeline_docs": 0}
    pid = f"bench-{uuid.uuid4().hex[:10]}"
    client = es_store(url, pid, "int8_hnsw").client
    try:
        client.ingest.put_pipeline(id=pid, **PIPELINE)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
        return {"error": f"PUT _ingest/pipeline failed: {exc}"}
    try:
        for r in range(rounds):
            for variant in (("without", "with") if r % 2 == 0 else ("with", "without")):
                store = es_store(url, f"bench-{uuid.uuid4().hex[:10]}", "int8_hnsw")
                try:
                    store.setup(IndexSchema({FIELD: VectorField(cat.dims, "cosine", {"id": f"synthetic-{cat.dims}"})}))
                    if variant == "with":
                        store.client.indices.put_settings(index=store.index, settings={"index.default_pipeline": pid})
                    before = ingest_count(store)
                    out[variant].append(load_es(store, cat, n, merge=False)["products_per_s"])
                    out["pipeline_docs"] += ingest_count(store) - before
                finally:
                    drop(store, res)
    finally:
        with contextlib.suppress(Exception):
            client.ingest.delete_pipeline(id=pid)
    return out


def index_types(values: list[str]) -> list[str]:
    """``--es-index-types int8_hnsw,bbq_hnsw`` or ``int8_hnsw bbq_hnsw``: known types, in order, once."""
    out: list[str] = []
    for v in values:
        for t in (x.strip() for x in v.split(",")):
            if t and t not in out:
                out.append(t)
    bad = [t for t in out if t not in INDEX_OPTION_TYPES]
    if bad or not out:
        sys.exit(f"unknown --es-index-types {', '.join(bad) or '(none)'}; supported: {', '.join(INDEX_OPTION_TYPES)}")
    return out


def exact_ids(cat: Catalogue, queries: np.ndarray, k: int = 10) -> list[list[str]]:
    """Exact kNN (cosine on unit vectors = dot product) over the catalogue's own vectors, by brute
    force in NumPy, in the batches ``Catalogue.documents`` draws them in (same vectors, same ids)."""
    leaves, centroids = cat.leaves(), cat.centroids()
    scores = np.concatenate([queries @ cat.vectors(s, min(cat.n, s + 5000), leaves, centroids).T
                             for s in range(0, cat.n, 5000)], axis=1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[f"p{i:07d}" for i in row] for row in top.tolist()]


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def recall(got: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)]))


def knn_ids(store: Any, queries: np.ndarray, field: str, num_candidates: int | None = None) -> list[list[str]]:
    return [[h.id for h in store.search(None, [VectorQuery(field, q, "t", num_candidates=num_candidates)], 10)["t"]]
            for q in queries]


def raw_knn_ids(store: ElasticsearchStore, queries: np.ndarray, field: str, num_candidates: int,
                oversample: float) -> tuple[list[list[str]], list[float]]:
    """Top-10 ids of a plain ``knn`` search with ``rescore_vector.oversample`` set by hand (0: no
    rescoring, the quantised scores as they are), which the store sets by type (rescore_oversample);
    and each call's time in ms (one ``_search`` round trip)."""
    out, ms = [], []
    for q in queries:
        knn = {"field": field, "query_vector": [float(x) for x in q], "k": 10, "num_candidates": num_candidates,
               "rescore_vector": {"oversample": oversample}}
        t = time.perf_counter()
        hits = store.client.search(index=store.index, knn=knn, size=10, source=False)["hits"]["hits"]
        ms.append((time.perf_counter() - t) * 1000)
        out.append([h["_id"] for h in hits])
    return out, ms


def oversample_sweep(store: ElasticsearchStore, queries: np.ndarray, field: str, truth: list[list[str]],
                     oversamples: list[float], num_candidates: int = 100, rounds: int = 2) -> dict[str, Any]:
    """Recall@10 and kNN latency per oversample, in ``rounds`` rounds of alternating order."""
    ids: dict[float, list[list[str]]] = {}
    samples: dict[float, list[float]] = {o: [] for o in oversamples}
    medians: dict[float, list[float]] = {o: [] for o in oversamples}
    for r in range(rounds):
        for o in (oversamples if r % 2 == 0 else list(reversed(oversamples))):
            got, ms = raw_knn_ids(store, queries, field, num_candidates, o)
            ids.setdefault(o, got)
            samples[o] += ms
            medians[o].append(float(np.median(ms)))
    return {f"{o:g}": {"recall": recall(ids[o], truth), "p50_ms": float(np.percentile(samples[o], 50)),
                       "round_p50_min_ms": min(medians[o]), "round_p50_max_ms": max(medians[o])}
            for o in oversamples}


def sweep_text(sweep: dict[str, Any]) -> str:
    """``0: 0.493 (3.10 ms), 3: ...``; older result files hold the recall alone."""
    return ", ".join(f"{o}: {v:.3f}" if not isinstance(v, dict) else f"{o}: {v['recall']:.3f} ({v['p50_ms']:.2f} ms)"
                     for o, v in sweep.items())


def minilm_recall(url: str, options: list[str], n: int, candidates: list[int], res: dict[str, Any],
                  oversamples: list[float] | None = None) -> dict[str, Any]:
    """Recall@10 of Elasticsearch's kNN against exact on real text vectors: ``n`` MiniLM title
    vectors and 200 MiniLM queries (benchmarks/text_vectors.py), per index type and num_candidates."""
    import text_vectors

    docs, queries = text_vectors.load(n, 1000)
    docs, queries = np.asarray(docs[:n], dtype=np.float32), queries[:200]
    truth = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    truth_ids = [[f"m{i}" for i in row] for row in truth.tolist()]
    titles = text_vectors.titles(n)
    out: dict[str, Any] = {"n": n, "dims": int(docs.shape[1]), "queries": len(queries)}
    for opt in options:
        store = es_store(url, f"bench-{uuid.uuid4().hex[:10]}", opt)
        try:
            store.setup(IndexSchema({"t": VectorField(docs.shape[1], "cosine", {"id": "all-MiniLM-L6-v2"})}))
            store.bulk_load(Document(Product(id=f"m{i}", title=titles[i]), {"t": docs[i]}) for i in range(n))
            store.client.indices.refresh(index=store.index)
            store.client.options(request_timeout=3600).indices.forcemerge(index=store.index, max_num_segments=1)
            out[opt] = {**{nc: recall(knn_ids(store, queries, "t", nc), truth_ids) for nc in candidates},
                        "default": recall(knn_ids(store, queries, "t"), truth_ids)}
            if oversamples and opt in QUANTIZED_INDEX_OPTIONS:
                out.setdefault("oversample", {})[opt] = oversample_sweep(store, queries, "t", truth_ids, oversamples)
        finally:
            drop(store, res)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--url", default=os.environ.get("CTIR_ES_TEST_URL", "http://127.0.0.1:9200"))
    p.add_argument("--engines", nargs="*", default=["tantivy", "fts5"],
                   help="lexical engines of the embedded stores to compare (built by targets.py); none: Elasticsearch alone")
    p.add_argument("--ann", nargs="*", default=["ivf", "hnsw"], help="approximate indexes of the embedded store (beside exact)")
    p.add_argument("--es-index-types", "--es-index-options", dest="es_index_types", nargs="+", default=["int8_hnsw", "hnsw"],
                   help="Elasticsearch kNN index types, one index each on the same data (comma or space separated), "
                        f"of {', '.join(INDEX_OPTION_TYPES)}")
    p.add_argument("--candidates", type=int, nargs="+", default=[10, 20, 50, 100, 200, 500])
    p.add_argument("--oversample", type=float, nargs="*", default=[0, 3, 5, 10],
                   help="rescore_vector.oversample sweep of the quantised types at num_candidates 100 (0: no rescoring): "
                        "recall@10 and kNN p50 (one _search per query, 2 rounds)")
    p.add_argument("--pipeline-n", type=int, default=20_000, help="products for the with/without ingest pipeline figure (0: skip)")
    p.add_argument("--minilm-n", type=int, default=100_000, help="MiniLM title vectors for the recall sweep (0: skip)")
    p.add_argument("--root", type=Path, default=STORES)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    a.es_index_types = index_types(a.es_index_types)
    for t in a.es_index_types:  # bbq_hnsw needs >= 64 dims, int4_hnsw an even number: say so before any work
        try:
            check_index_options(t, a.dims, FIELD)
        except Exception as exc:  # noqa: BLE001 - ConfigError, shown as the reason to stop
            sys.exit(str(exc))
    cat = Catalogue(a.n, a.dims)
    qv, qt = cat.query_vectors(a.queries), cat.query_texts(a.queries)
    paths = {engine: store_path(a.n, a.dims, engine, a.root) for engine in a.engines}
    for engine, path in paths.items():
        if not path.exists():
            sys.exit(f"no embedded store at {path}: run `python benchmarks/targets.py ingest --n {a.n} --dims {a.dims} "
                     f"--engine {engine}` first")
    res: dict[str, Any] = {"machine": machine(), "n": a.n, "dims": a.dims, "queries": a.queries, "rounds": a.rounds,
                           "command": " ".join(["python", "benchmarks/es_beside.py", *sys.argv[1:]])}
    es_stores = {opt: es_store(a.url, f"bench-{uuid.uuid4().hex[:10]}", opt) for opt in a.es_index_types}
    emb: dict[str, EmbeddedStore] = {}
    try:
        client = next(iter(es_stores.values())).client
        res["es_version"] = next(iter(client.nodes.info()["nodes"].values()))["version"]
        cluster = next(iter(es_stores.values())).session.cluster_info()
        res["es_licence"] = cluster.licence_type
        for opt in es_stores:  # an 8.x node without a type stops here, with the reason
            ok, why = cluster.index_options_support(opt)
            if not ok:
                sys.exit(why)
        if a.pipeline_n:
            print(f"ingest pipeline figure ({a.pipeline_n:,} products per load, 4 loads) ...", file=sys.stderr, flush=True)
            res["pipeline"] = pipeline_ingest(a.url, cat, a.pipeline_n, res)
        res["es"] = {}
        for opt, es in es_stores.items():
            print(f"loading {a.n:,} products into Elasticsearch ({opt}) ...", file=sys.stderr, flush=True)
            ingest = load_es(es, cat)
            stats = es.client.indices.stats(index=es.index)["_all"]["primaries"]
            rescore = cluster.rescore_vector(opt)
            res["es"][opt] = {"ingest": ingest, "disk_bytes": stats["store"]["size_in_bytes"],
                              "rescore_vector": rescore, "oversample": rescore_oversample(opt) if rescore else 0.0,
                              "off_heap": off_heap(es)}
        nodes = client.nodes.stats(metric="jvm")["nodes"]
        res["es_heap_used_bytes"] = sum(nd["jvm"]["mem"]["heap_used_in_bytes"] for nd in nodes.values())
        res["es_heap_max_bytes"] = sum(nd["jvm"]["mem"]["heap_max_in_bytes"] for nd in nodes.values())

        for engine, path in paths.items():
            for kind in ["exact", *a.ann]:
                emb[f"{kind}, {engine}"] = EmbeddedStore(path, vector_index=kind)

        def hybrid(store: Any) -> Any:
            def run(i: int) -> Any:
                runs = store.search(LexicalQuery(qt[i]), [VectorQuery(FIELD, qv[i], "text")], K)
                return fuse("rrf", runs, HYBRID_WEIGHTS, limit=TOP)
            return run

        def knn(store: Any) -> Any:
            def run(i: int) -> Any:
                return store.search(None, [VectorQuery(FIELD, qv[i], "text")], K)
            return run

        systems = {**{f"elasticsearch {opt}": hybrid(es) for opt, es in es_stores.items()},
                   **{f"embedded {k}": hybrid(s) for k, s in emb.items()},
                   **{f"knn elasticsearch {opt}": knn(es) for opt, es in es_stores.items()}}
        for fn in systems.values():  # warm-up (an embedded ANN index never built is built here)
            timed(fn, min(50, a.queries))
        samples: dict[str, list[float]] = {k: [] for k in systems}
        medians: dict[str, list[float]] = {k: [] for k in systems}
        for r in range(a.rounds):  # interleaved rounds, order alternating
            order = list(systems) if r % 2 == 0 else list(reversed(systems))
            for key in order:
                t = timed(systems[key], a.queries)
                samples[key] += t
                medians[key].append(float(np.median(t)))
        figures = {k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)),
                       "round_p50_min_ms": min(medians[k]), "round_p50_max_ms": max(medians[k])}
                   for k, v in samples.items()}
        res["hybrid"] = {k: v for k, v in figures.items() if not k.startswith("knn ")}
        res["es_knn"] = {k.removeprefix("knn elasticsearch "): v for k, v in figures.items() if k.startswith("knn ")}
        # recall@10 of each kNN against exact kNN over the same vectors (NumPy brute force), same
        # queries; "default" is the store's own num_candidates (what ctir-es asks for)
        truth = exact_ids(cat, qv)
        res["es_recall_at_10"] = {opt: {**{nc: recall(knn_ids(es, qv, FIELD, nc), truth) for nc in a.candidates},
                                        "default": recall(knn_ids(es, qv, FIELD), truth)}
                                  for opt, es in es_stores.items()}
        if cluster.rescore_vector("int8_hnsw"):  # query-side rescore_vector: 8.18+
            res["es_oversample_recall_at_10"] = {opt: oversample_sweep(es, qv, FIELD, truth, a.oversample)
                                                 for opt, es in es_stores.items() if opt in QUANTIZED_INDEX_OPTIONS}
        res["embedded_recall_at_10"] = {kind: recall(knn_ids(emb[f"{kind}, {first}"], qv, FIELD), truth)
                                        for first in list(paths)[:1] for kind in ["exact", *a.ann]}
        res["embedded_disk_bytes"] = {engine: sum(f.stat().st_size for f in path.parent.glob(path.name + "*") if f.is_file())
                                      + sum(f.stat().st_size for f in path.parent.glob(path.name + ".lexical/*"))
                                      for engine, path in paths.items()}
    finally:
        for s in emb.values():
            s.close()
        for es in es_stores.values():
            drop(es, res)
    if a.minilm_n:
        print(f"MiniLM recall sweep ({a.minilm_n:,} vectors per index type) ...", file=sys.stderr, flush=True)
        try:  # everything above is kept if this part fails
            res["minilm_recall"] = minilm_recall(a.url, a.es_index_types, a.minilm_n, a.candidates, res,
                                                 a.oversample if res.get("es_oversample_recall_at_10") else None)
        except Exception as exc:  # noqa: BLE001 - reported with the results, not instead of them
            res["minilm_recall"] = {"error": f"{type(exc).__name__}: {exc}"}
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(tables(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


def vector_files(heap: dict[str, int] | None) -> str:
    if not heap:
        return "n/a"
    q = heap.get("veq", 0) + heap.get("veb", 0)
    return f"{heap.get('vec', 0) / 2**20:.1f} / {q / 2**20:.1f} / {heap.get('vex', 0) / 2**20:.1f}"


def tables(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [(f"{machine_line(m, res['load_avg_end'])}; "
           f"Elasticsearch {res.get('es_version')} (single node, same machine). Command: `{res['command']}`"), "",
           f"{res['n']:,} products x {res['dims']} dims.", "",
           "| Elasticsearch index | bulk ingest products/s | seconds | force-merge s | disk |", "|---|---|---|---|---|"]
    for opt, v in res["es"].items():
        i = v["ingest"]
        out.append(f"| {opt} | {i['products_per_s']:,.0f} | {i['seconds']:.0f} | {i['forcemerge_s']:.0f} | {mib(v['disk_bytes'])} |")
    out += ["", ("Embedded store on disk (with its ANN indexes and lexical index): "
                 + ", ".join(f"{e} {mib(b)}" for e, b in res["embedded_disk_bytes"].items()) + ". "
                 if res["embedded_disk_bytes"] else "No embedded store in this run. ")
            + f"Elasticsearch heap used {mib(res['es_heap_used_bytes'])} of {mib(res['es_heap_max_bytes'])}."]
    if res.get("es_knn"):  # runs before the side-by-side table have no kNN-only figures
        out += ["", (f"Elasticsearch kNN index types side by side ({res.get('es_licence')} licence): recall@10 against exact "
                     "kNN over the same vectors at the num_candidates ctir-es asks for (max(100, 2k)); kNN alone and hybrid "
                     "(BM25 + kNN in one _msearch, client-side RRF), p50 (round p50 min-max) / p99 over "
                     f"{res.get('queries')} queries x {res.get('rounds')} interleaved rounds; disk after a force-merge to one segment; "
                     "off-heap vector files from _stats/dense_vector (9.1+): floats, quantised vectors, HNSW graph."),
                "", ("| index type | rescore_vector | recall@10 | kNN p50 ms (min-max) | kNN p99 | hybrid p50 ms (min-max) "
                     "| hybrid p99 | disk | disk B/product | floats / quantised / graph MiB |"),
                "|---|---|---|---|---|---|---|---|---|---|"]
        for opt, v in res["es"].items():
            kn, hy = res["es_knn"][opt], res["hybrid"][f"elasticsearch {opt}"]
            oversample = v.get("oversample", RESCORE_OVERSAMPLE)  # results written before it was recorded: 3
            out.append(f"| {opt} | {f'oversample {oversample:g}' if v.get('rescore_vector') else 'no'} | "
                       f"{res['es_recall_at_10'][opt]['default']:.3f} | "
                       f"{kn['p50_ms']:.2f} ({kn['round_p50_min_ms']:.2f}-{kn['round_p50_max_ms']:.2f}) | {kn['p99_ms']:.2f} | "
                       f"{hy['p50_ms']:.2f} ({hy['round_p50_min_ms']:.2f}-{hy['round_p50_max_ms']:.2f}) | {hy['p99_ms']:.2f} | "
                       f"{mib(v['disk_bytes'])} | {v['disk_bytes'] / res['n']:,.0f} | {vector_files(v.get('off_heap'))} |")
    pl = res.get("pipeline")
    if pl:
        out += [""] + ([f"Ingest pipeline figure: error {pl['error']}"] if "error" in pl else [
            (f"Ingest pipeline ({pl['n']:,} products per load into fresh int8_hnsw indexes, no force-merge, "
             f"{pl['rounds']} alternating rounds; a pipeline with no processors, {pl['pipeline_docs']:,} documents went "
             f"through it): without {' / '.join(f'{x:,.0f}' for x in pl['without'])} products/s, "
             f"with {' / '.join(f'{x:,.0f}' for x in pl['with'])} products/s.")])
    out += ["", "| system | hybrid p50 ms | p99 ms | round p50 min-max | fastest Elasticsearch p50 / this p50 |",
            "|---|---|---|---|---|"]
    es_best = min(v["p50_ms"] for k, v in res["hybrid"].items() if k.startswith("elasticsearch"))
    for k, v in res["hybrid"].items():
        out.append(f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['round_p50_min_ms']:.2f}-{v['round_p50_max_ms']:.2f} | "
                   f"{es_best / v['p50_ms']:.1f}x |")
    out += ["", "Recall@10 against exact kNN on these synthetic clustered vectors, per num_candidates:"]
    for opt, sweep in res["es_recall_at_10"].items():
        out.append(f"- Elasticsearch {opt}: " + ", ".join(f"{nc}: {r:.3f}" for nc, r in sweep.items()))
    if res.get("es_oversample_recall_at_10"):
        out.append("- rescore_vector.oversample at num_candidates 100 (0: quantised scores, no rescoring; ctir-es asks "
                   f"for {RESCORE_OVERSAMPLE:g}, bbq {rescore_oversample('bbq_hnsw'):g}), recall (kNN p50 of a plain _search): "
                   + "; ".join(f"{opt} " + sweep_text(sw) for opt, sw in res["es_oversample_recall_at_10"].items()))
    if res["embedded_recall_at_10"]:
        out.append("- embedded: " + ", ".join(f"{k}: {r:.3f}" for k, r in res["embedded_recall_at_10"].items()))
    mr = res.get("minilm_recall")
    if mr and "error" in mr:
        out += ["", f"Recall@10 on MiniLM text vectors: error {mr['error']}"]
    elif mr:
        out += ["", (f"Recall@10 against exact on real text vectors ({mr['n']:,} MiniLM title vectors, {mr['dims']} dims, "
                     f"{mr['queries']} MiniLM queries; benchmarks/text_vectors.py), per num_candidates:"), "",
                "| index | " + " | ".join(str(nc) for nc in next(v for k, v in mr.items() if isinstance(v, dict) and k != "oversample")) + " |",
                "|---|" + "---|" * len(next(v for k, v in mr.items() if isinstance(v, dict) and k != "oversample"))]
        for opt, sweep in mr.items():
            if isinstance(sweep, dict) and opt != "oversample":
                out.append(f"| {opt} | " + " | ".join(f"{r:.3f}" for r in sweep.values()) + " |")
        if mr.get("oversample"):
            out += ["", "MiniLM, rescore_vector.oversample at num_candidates 100, recall (kNN p50 of a plain _search): "
                    + "; ".join(f"{opt} " + sweep_text(sw) for opt, sw in mr["oversample"].items())]
    out.append("")
    out.append("Benchmark indexes deleted" + (f", except: {res['undeleted']}" if res.get("undeleted") else ": all"))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
