#!/usr/bin/env python
"""Single-node Elasticsearch beside the embedded store on the same work: the same synthetic
products and queries (benchmarks/synthetic.py), the same machine, one run.

    CTIR_ES_TEST_URL=http://127.0.0.1:9200 python benchmarks/es_beside.py --n 100000 [--dims 512]

Elasticsearch goes through the project's ``ElasticsearchStore`` (``bulk_load``, no refresh per
chunk, one refresh at the end; ``index_options`` int8_hnsw, the default, and optionally hnsw),
into an index with a unique name that is deleted afterwards. Queries: one ``search`` call per
query = one ``_msearch`` round trip (BM25 multi_match + kNN, k=100 per source), then the same
client-side RRF the embedded store uses. The embedded store is the cached store of
benchmarks/targets.py (built there; exact kNN and, when built, ivf), queried in this process,
interleaved with Elasticsearch round by round. Recall@10 of Elasticsearch's kNN against exact
over a ``num_candidates`` sweep; Elasticsearch's heap and disk from its stats APIs.
"""

from __future__ import annotations

import argparse
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

from memory import machine, mib
from query import HYBRID_WEIGHTS, K
from synthetic import FIELD, Catalogue
from targets import STORES, store_path

from ctir_es.errors import StoreError
from ctir_es.ranking.fusion import fuse
from ctir_es.store.base import IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.elasticsearch.connection import EsConnection
from ctir_es.store.embedded import EmbeddedStore


def es_store(url: str, name: str, index_options: str) -> ElasticsearchStore:
    return ElasticsearchStore(EsConnection(url=url, index=name, request_timeout=120), index_options=index_options,
                              refresh=False)


def load_es(store: ElasticsearchStore, cat: Catalogue) -> dict[str, Any]:
    store.setup(IndexSchema({FIELD: VectorField(cat.dims, "cosine", {"id": f"synthetic-{cat.dims}"})}))
    t = time.perf_counter()
    report = store.bulk_load(d for batch in cat.documents(5000) for d in batch)
    store.client.indices.refresh(index=store.index)
    secs = time.perf_counter() - t
    t = time.perf_counter()
    store.client.indices.forcemerge(index=store.index, max_num_segments=1, request_timeout=3600)
    merge_s = time.perf_counter() - t
    return {"seconds": secs, "products_per_s": cat.n / secs, "forcemerge_s": merge_s,
            "written": getattr(report, "written", None)}


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--url", default=os.environ.get("CTIR_ES_TEST_URL", "http://127.0.0.1:9200"))
    p.add_argument("--engine", default="fts5", help="lexical engine of the embedded store to compare")
    p.add_argument("--ann", default="ivf", help="approximate index of the embedded store (beside exact)")
    p.add_argument("--candidates", type=int, nargs="+", default=[100, 200, 500])
    p.add_argument("--root", type=Path, default=STORES)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    cat = Catalogue(a.n, a.dims)
    qv, qt = cat.query_vectors(a.queries), cat.query_texts(a.queries)
    path = store_path(a.n, a.dims, a.engine, a.root)
    if not path.exists():
        sys.exit(f"no embedded store at {path}: run `python benchmarks/targets.py ingest --n {a.n} --dims {a.dims} "
                 f"--engine {a.engine}` first")
    name = f"bench-{uuid.uuid4().hex[:10]}"
    es = es_store(a.url, name, "int8_hnsw")
    res: dict[str, Any] = {"machine": machine(), "n": a.n, "dims": a.dims, "es_index": name,
                           "command": " ".join(["python", "benchmarks/es_beside.py", *sys.argv[1:]])}
    try:
        nodes_info = es.client.nodes.info()["nodes"]  # (not GET /: this node answers it with 405)
        res["es_version"] = next(iter(nodes_info.values()))["version"]
        res["es_ingest"] = load_es(es, cat)
        stats = es.client.indices.stats(index=es.index)["_all"]["primaries"]
        res["es_disk_bytes"] = stats["store"]["size_in_bytes"]
        nodes = es.client.nodes.stats(metric="jvm")["nodes"]
        res["es_heap_used_bytes"] = sum(nd["jvm"]["mem"]["heap_used_in_bytes"] for nd in nodes.values())
        res["es_heap_max_bytes"] = sum(nd["jvm"]["mem"]["heap_max_in_bytes"] for nd in nodes.values())

        emb = {"exact": EmbeddedStore(path)}
        if a.ann:
            emb[a.ann] = EmbeddedStore(path, vector_index=a.ann)

        def hybrid(store: Any) -> Any:
            def run(i: int) -> Any:
                runs = store.search(LexicalQuery(qt[i]), [VectorQuery(FIELD, qv[i], "text")], K)
                return fuse("rrf", runs, HYBRID_WEIGHTS)
            return run

        systems = {"elasticsearch int8_hnsw": hybrid(es), **{f"embedded {k}": hybrid(s) for k, s in emb.items()}}
        for fn in systems.values():  # warm-up
            timed(fn, min(50, a.queries))
        samples: dict[str, list[float]] = {k: [] for k in systems}
        medians: dict[str, list[float]] = {k: [] for k in systems}
        for r in range(a.rounds):  # interleaved rounds, order alternating
            order = list(systems) if r % 2 == 0 else list(reversed(systems))
            for key in order:
                t = timed(systems[key], a.queries)
                samples[key] += t
                medians[key].append(float(np.median(t)))
        res["hybrid"] = {k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)),
                             "round_p50_min_ms": min(medians[k]), "round_p50_max_ms": max(medians[k])}
                         for k, v in samples.items()}
        # recall@10 of Elasticsearch's kNN against exact (the embedded exact store's answer)
        truth = [[h.id for h in emb["exact"].search(None, [VectorQuery(FIELD, q, "t")], 10)["t"]] for q in qv]
        sweep = {}
        for nc in a.candidates:
            got = [[h.id for h in es.search(None, [VectorQuery(FIELD, q, "t", num_candidates=nc)], 10)["t"]] for q in qv]
            sweep[nc] = float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)]))
        res["es_recall_at_10"] = sweep
        if a.ann:
            got = [[h.id for h in emb[a.ann].search(None, [VectorQuery(FIELD, q, "t")], 10)["t"]] for q in qv]
            res["embedded_recall_at_10"] = {a.ann: float(np.mean([len(set(g) & set(t)) / 10
                                                                  for g, t in zip(got, truth, strict=True)]))}
        res["embedded_disk_bytes"] = sum(f.stat().st_size for f in path.parent.glob(path.name + "*") if f.is_file())
        for s in emb.values():
            s.close()
    finally:
        try:
            es.drop()
            res["es_index_deleted"] = True
        except (StoreError, OSError) as exc:  # report, never hide: the name is printed for manual cleanup
            res["es_index_deleted"] = f"could not delete {name}: {exc}"
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(tables(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


def tables(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [(f"Machine: {m['cpu']}, {m['cores']} cores; load average at start {m['load_avg']}, at end {res['load_avg_end']}; "
           f"Elasticsearch {res.get('es_version')} (single node, same machine). Command: `{res['command']}`"), "",
           (f"{res['n']:,} products x {res['dims']} dims. Elasticsearch bulk ingest (no ingest pipeline): "
           f"{res['es_ingest']['products_per_s']:,.0f} products/s ({res['es_ingest']['seconds']:.0f} s + force-merge "
           f"{res['es_ingest']['forcemerge_s']:.0f} s); disk {mib(res['es_disk_bytes'])} (embedded store "
           f"{mib(res['embedded_disk_bytes'])}); heap used {mib(res['es_heap_used_bytes'])} of {mib(res['es_heap_max_bytes'])}."), "",
           "| system | hybrid p50 ms | p99 ms | round p50 min-max | vs Elasticsearch p50 |", "|---|---|---|---|---|"]
    es = res["hybrid"]["elasticsearch int8_hnsw"]["p50_ms"]
    for k, v in res["hybrid"].items():
        out.append(f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['round_p50_min_ms']:.2f}-{v['round_p50_max_ms']:.2f} | "
                   f"{es / v['p50_ms']:.1f}x faster |" if not k.startswith("elastic") else
                   f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['round_p50_min_ms']:.2f}-{v['round_p50_max_ms']:.2f} | 1.0x |")
    out += ["", "Recall@10 against exact kNN: Elasticsearch int8_hnsw "
            + ", ".join(f"num_candidates {k}: {v:.3f}" for k, v in res["es_recall_at_10"].items())
            + ("; embedded " + ", ".join(f"{k}: {v:.3f}" for k, v in res.get("embedded_recall_at_10", {}).items())),
            f"Elasticsearch index {res['es_index']} deleted: {res['es_index_deleted']}"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
