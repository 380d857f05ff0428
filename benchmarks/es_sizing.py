"""Elasticsearch sizing figures for docs/scaling.md, measured on a real node.

For each ``index_options`` type: bulk ingest rate of ready vectors through
``ElasticsearchStore.bulk_load``, disk per product after a force merge, hybrid (BM25 + kNN)
latency through ``_msearch`` (p50/p99), and kNN recall@10 against the exact neighbours over a
``num_candidates`` sweep. Synthetic products: 8-word titles from a 5,000-word vocabulary, a
3-level category path, unit vectors with some cluster structure.

    scripts/elasticsearch-local up
    python benchmarks/es_sizing.py --url http://127.0.0.1:9200 --products 20000 --dims 384

Prints one table and, with ``--json FILE``, writes the figures. State the machine and its load
(``uptime``) with any figure you quote: the run does not control them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bodies.index import bytes_per_product

TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw")
# off-heap memory per vector for fast kNN, Elasticsearch's own estimates
# (reference: how-to/knn-search, "Ensure data nodes have enough memory"), plus the HNSW
# graph: about 4 bytes x m (16) links per vector
MEMORY_PER_VECTOR = {
    "hnsw": lambda d: d * 4,
    "int8_hnsw": lambda d: d + 4,
    "int4_hnsw": lambda d: d / 2 + 4,
    "bbq_hnsw": lambda d: d / 8 + 14,
}
GRAPH_BYTES = 4 * 16


def catalogue(n: int, dims: int, seed: int = 5) -> tuple[list[Document], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    centres = rng.normal(size=(64, dims)).astype(np.float32)
    vectors = centres[rng.integers(0, 64, n)] + 0.7 * rng.normal(size=(n, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = []
    zipf = rng.zipf(1.3, size=(n, 8)) % len(vocab)
    for i in range(n):
        title = " ".join(vocab[j] for j in zipf[i])
        path = (f"c{i % 7}", f"c{i % 7}-{i % 31}", f"c{i % 7}-{i % 31}-{i % 97}")
        docs.append(Document(Product(id=f"p{i}", title=title, categories=(path,)), {"v": vectors[i]}))
    return docs, vectors


def http(url: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{url}{path}", method=method)
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read().decode())


def measure(url: str, option: str, docs: list[Document], vectors: np.ndarray, queries: int) -> dict[str, Any]:
    dims = vectors.shape[1]
    index = f"sizing-{option.replace('_', '-')}"
    store = ElasticsearchStore(EsConnection(url, index, request_timeout=600), index_options=option,
                               replicas=0, refresh=False, chunk_size=1000)
    store.drop()
    store.setup(IndexSchema({"v": VectorField(dims, "cosine", {"id": "synthetic@1"})}))
    started = time.perf_counter()
    report = store.bulk_load(docs)
    ingest = time.perf_counter() - started
    live = store.status()["live"]
    http(url, f"/{live}/_forcemerge?max_num_segments=1", "POST")
    stats = http(url, f"/{live}/_stats/store")
    size = stats["indices"][live]["primaries"]["store"]["size_in_bytes"]
    rng = np.random.default_rng(17)
    probe = vectors[rng.integers(0, len(vectors), queries)] + 0.1 * rng.normal(size=(queries, dims))
    probe = (probe / np.linalg.norm(probe, axis=1, keepdims=True)).astype(np.float32)
    words = [d.product.title.split()[:2] for d in docs[:queries]]
    exact = [set(np.argsort(-(vectors @ q))[:10]) for q in probe]
    recall: dict[int, float] = {}
    for candidates in (20, 50, 100, 200):
        got = []
        for q, want in zip(probe, exact):
            hits = store.search(None, [VectorQuery("v", q, num_candidates=candidates)], 10)["v"]
            got.append(len(want & {int(h.id[1:]) for h in hits}) / 10)
        recall[candidates] = round(statistics.fmean(got), 4)
    latencies = []
    for q, w in zip(probe, words):
        t0 = time.perf_counter()
        store.search(LexicalQuery(" ".join(w)), [VectorQuery("v", q, "knn")], 10)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    store.drop()
    store.close()
    return {
        "index_options": option,
        "products": len(docs),
        "dims": dims,
        "ingest_products_per_s": round(report.count_after / ingest),
        "disk_bytes_per_product": round(size / len(docs)),
        "estimated_bytes_per_product": round(bytes_per_product(store_schema(dims), option)),
        "knn_memory_bytes_per_vector": round(MEMORY_PER_VECTOR[option](dims) + GRAPH_BYTES),
        "hybrid_p50_ms": round(latencies[len(latencies) // 2], 2),
        "hybrid_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "recall_at_10": recall,
    }


def store_schema(dims: int) -> IndexSchema:
    return IndexSchema({"v": VectorField(dims)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CTIR_ES_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    docs, vectors = catalogue(args.products, args.dims)
    load = os.getloadavg()
    rows = [measure(args.url, t, docs, vectors, args.queries) for t in args.types.split(",")]
    print(f"{args.products} products x {args.dims} dims, load average at start {load[0]:.1f}")
    head = ("index_options", "ingest/s", "disk B/prod", "est. B/prod", "kNN mem B/vec",
            "hybrid p50 ms", "p99 ms", "recall@10 nc=20/50/100/200")
    print(" | ".join(head))
    for r in rows:
        rec = "/".join(f"{r['recall_at_10'][c]:.3f}" for c in (20, 50, 100, 200))
        print(f"{r['index_options']} | {r['ingest_products_per_s']} | {r['disk_bytes_per_product']} | "
              f"{r['estimated_bytes_per_product']} | {r['knn_memory_bytes_per_vector']} | "
              f"{r['hybrid_p50_ms']} | {r['hybrid_p99_ms']} | {rec}")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
