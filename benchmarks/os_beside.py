#!/usr/bin/env python
"""OpenSearch beside Elasticsearch and the embedded store on the same work: the same synthetic
products and queries (benchmarks/synthetic.py), the same machine, one run (issue 27 item 5).

    python benchmarks/os_beside.py --n 100000 --dims 512 \
        --os-url http://127.0.0.1:9400 --es-url http://127.0.0.1:9200 --json /tmp/os_beside.json

OpenSearch goes through the project's ``OpenSearchStore`` (``knn_vector``, Lucene engine, HNSW,
cosinesimil), Elasticsearch through ``ElasticsearchStore`` (``--es-index-types``: hnsw, the
float HNSW the OpenSearch index is, and int8_hnsw, ctir-es's default), both with ``bulk_load``
(no refresh per chunk), one refresh, then a force-merge to one segment, into indexes with
unique names that are deleted afterwards. The embedded store is ingested in this run too
(benchmarks/targets.py's ingest case, ``--engine``), then queried with exact kNN and each
``--ann`` index. Per system: bulk ingest products/s, disk, hybrid latency (one ``search`` call
= BM25 + kNN, k=100 per source, one ``_msearch`` round trip on the servers, then the same
client-side RRF), p50/p99 over interleaved rounds, and recall@10 against exact kNN (NumPy
brute force) over a candidates sweep: ``num_candidates`` on Elasticsearch, the same number as
``method_parameters.ef_search`` on OpenSearch (what ``VectorQuery.num_candidates`` becomes in
each store's body).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import targets
from es_beside import drop, es_store, exact_ids, index_types, knn_ids, load_es, recall, timed
from memory import machine, machine_line, mib
from query import HYBRID_WEIGHTS, TOP, K
from synthetic import FIELD, Catalogue

from ctir_es.ranking.fusion import fuse
from ctir_es.schema import LexicalQuery, VectorQuery
from ctir_es.store.elasticsearch.connection import EsConnection
from ctir_es.store.embedded import EmbeddedStore


def os_store(url: str, name: str) -> Any:
    from ctir_es.store.opensearch import OpenSearchStore

    return OpenSearchStore(EsConnection(url=url, index=name, request_timeout=120), index_options="hnsw",
                           refresh=False)


def node_facts(store: Any) -> dict[str, Any]:
    """The node's version and heap (``_nodes``, ``_nodes/stats/jvm``)."""
    info = next(iter(store.client.nodes.info()["nodes"].values()))
    jvm = next(iter(store.client.nodes.stats(metric="jvm")["nodes"].values()))["jvm"]["mem"]
    return {"version": info["version"], "heap_used_bytes": jvm["heap_used_in_bytes"],
            "heap_max_bytes": jvm["heap_max_in_bytes"]}


def settled_disk_bytes(store: Any, timeout: float = 120) -> int:
    """The index's size once the segments a force-merge replaced are gone: OpenSearch still
    counted them when its ``_forcemerge`` answered (2.4x the settled size at 100k x 512,
    Elasticsearch had dropped them), so refresh, flush and read ``_stats/store`` until two
    reads a second apart agree."""
    store.client.indices.refresh(index=store.index)
    store.client.indices.flush(index=store.index)
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = int(store.client.indices.stats(index=store.index, metric="store")["_all"]["primaries"]["store"][
            "size_in_bytes"])
        if size == last:
            return size
        last = size
        time.sleep(1.0)
    return last


def tree_bytes(folder: Path) -> int:
    """Every file under ``folder`` (the embedded store alone in its temporary folder: the SQLite
    file, its vector files, ANN indexes and lexical index)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--os-url", default=os.environ.get("CTIR_ES_OS_URL", "http://127.0.0.1:9400"))
    p.add_argument("--es-url", default=os.environ.get("CTIR_ES_TEST_URL", "http://127.0.0.1:9200"),
                   help="Elasticsearch beside it ('' for none)")
    p.add_argument("--es-index-types", nargs="+", default=["hnsw", "int8_hnsw"])
    p.add_argument("--engine", default="tantivy", help="the embedded store's lexical engine ('' for no embedded store)")
    p.add_argument("--ann", nargs="*", default=["hnsw"], help="approximate indexes of the embedded store (beside exact)")
    p.add_argument("--candidates", type=int, nargs="+", default=[10, 20, 50, 100, 200, 500])
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    es_types = index_types(a.es_index_types) if a.es_url else []
    cat = Catalogue(a.n, a.dims)
    qv, qt = cat.query_vectors(a.queries), cat.query_texts(a.queries)
    res: dict[str, Any] = {"machine": machine(), "n": a.n, "dims": a.dims, "queries": a.queries, "rounds": a.rounds,
                           "uptime_start": os.popen("uptime").read().strip(),
                           "command": " ".join(["python", "benchmarks/os_beside.py", *sys.argv[1:]])}
    servers: dict[str, Any] = {"opensearch hnsw (lucene)": os_store(a.os_url, f"bench-{uuid.uuid4().hex[:10]}")}
    for t in es_types:
        servers[f"elasticsearch {t}"] = es_store(a.es_url, f"bench-{uuid.uuid4().hex[:10]}", t)
    emb: dict[str, EmbeddedStore] = {}
    tmp = tempfile.TemporaryDirectory(prefix="os-beside-")
    res["ingest"], res["disk_bytes"], res["nodes"] = {}, {}, {}
    try:
        for name, store in servers.items():
            print(f"loading {a.n:,} products into {name} ...", file=sys.stderr, flush=True)
            res["ingest"][name] = load_es(store, cat)
            res["disk_bytes"][name] = settled_disk_bytes(store)
            res["nodes"][name.split()[0]] = node_facts(store)
        if a.engine:
            print(f"ingesting {a.n:,} products into the embedded store ({a.engine}) ...", file=sys.stderr, flush=True)
            ns = argparse.Namespace(n=a.n, dims=a.dims, engine=a.engine, root=Path(tmp.name))
            got = targets.case_ingest(ns)
            path = targets.store_path(a.n, a.dims, a.engine, Path(tmp.name))
            res["ingest"][f"embedded {a.engine}"] = {"n": a.n, "seconds": got["seconds"],
                                                      "products_per_s": got["products_per_s"]}
            for kind in ["exact", *a.ann]:
                emb[f"embedded {kind}, {a.engine}"] = EmbeddedStore(path, vector_index=kind)

        def hybrid(store: Any) -> Any:
            def run(i: int) -> Any:
                runs = store.search(LexicalQuery(qt[i]), [VectorQuery(FIELD, qv[i], "text")], K)
                return fuse("rrf", runs, HYBRID_WEIGHTS, limit=TOP)
            return run

        systems = {**{k: hybrid(s) for k, s in servers.items()}, **{k: hybrid(s) for k, s in emb.items()}}
        print("hybrid latency ...", file=sys.stderr, flush=True)
        for fn in systems.values():  # warm-up (an embedded ANN index never built is built here)
            timed(fn, min(50, a.queries))
        if a.engine:
            res["disk_bytes"][f"embedded {a.engine}"] = tree_bytes(Path(tmp.name))
        samples: dict[str, list[float]] = {k: [] for k in systems}
        medians: dict[str, list[float]] = {k: [] for k in systems}
        for r in range(a.rounds):  # interleaved rounds, order alternating
            for key in (list(systems) if r % 2 == 0 else list(reversed(systems))):
                t = timed(systems[key], a.queries)
                samples[key] += t
                medians[key].append(float(np.median(t)))
        res["hybrid"] = {k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)),
                             "round_p50_min_ms": min(medians[k]), "round_p50_max_ms": max(medians[k])}
                         for k, v in samples.items()}
        print("recall sweep ...", file=sys.stderr, flush=True)
        truth = exact_ids(cat, qv)
        res["recall_at_10"] = {name: {**{str(nc): recall(knn_ids(s, qv, FIELD, nc), truth) for nc in a.candidates},
                                      "default": recall(knn_ids(s, qv, FIELD), truth)}
                               for name, s in servers.items()}
        res["recall_at_10"].update({k: {"default": recall(knn_ids(s, qv, FIELD), truth)} for k, s in emb.items()})
    finally:
        for s in emb.values():
            s.close()
        for s in servers.values():
            drop(s, res)
        tmp.cleanup()
    res["uptime_end"] = os.popen("uptime").read().strip()
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(tables(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


def tables(res: dict[str, Any]) -> str:
    nodes = ", ".join(f"{k} {v['version']} (heap used {mib(v['heap_used_bytes'])} of {mib(v['heap_max_bytes'])})"
                      for k, v in res["nodes"].items())
    out = [f"{machine_line(res['machine'], res['load_avg_end'])}; single nodes on the same machine: {nodes}.",
           f"`uptime` at start: {res['uptime_start']}; at end: {res['uptime_end']}.",
           f"Command: `{res['command']}`", "",
           (f"{res['n']:,} products x {res['dims']} dims; hybrid = BM25 + kNN (k=100 per source) + client-side RRF, "
            f"p50 / p99 over {res['queries']} queries x {res['rounds']} interleaved rounds; servers: disk after a "
            "force-merge to one segment, refresh and flush (until the size is stable)."), "",
           "| system | ingest products/s | ingest s | force-merge s | disk | hybrid p50 ms | p99 ms | round p50 min-max | recall@10 (default candidates) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, h in res["hybrid"].items():
        base = f"embedded {name.rsplit(', ', 1)[1]}" if name.startswith("embedded ") else name
        i, disk = res["ingest"][base], res["disk_bytes"].get(base)
        merge = f"{i['forcemerge_s']:.0f}" if "forcemerge_s" in i else "-"
        out.append(f"| {name} | {i['products_per_s']:,.0f} | {i['seconds']:.0f} | {merge} | "
                   f"{mib(disk) if disk else '-'} | {h['p50_ms']:.2f} | {h['p99_ms']:.2f} | "
                   f"{h['round_p50_min_ms']:.2f}-{h['round_p50_max_ms']:.2f} | "
                   f"{res['recall_at_10'][name]['default']:.3f} |")
    sweeps = {k: v for k, v in res["recall_at_10"].items() if len(v) > 1}
    if sweeps:
        cands = [c for c in next(iter(sweeps.values())) if c != "default"]
        out += ["", ("Recall@10 against exact kNN per candidates (Elasticsearch num_candidates, OpenSearch "
                     "method_parameters.ef_search):"), "", "| system | " + " | ".join(cands) + " | default |",
                "|---|" + "---|" * (len(cands) + 1)]
        for name, sweep in sweeps.items():
            out.append(f"| {name} | " + " | ".join(f"{sweep[c]:.3f}" for c in cands) + f" | {sweep['default']:.3f} |")
    out += ["", "Benchmark indexes deleted" + (f", except: {res['undeleted']}" if res.get("undeleted") else ": all")]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
