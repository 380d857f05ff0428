"""Scale-out for real: a local three-node cluster, one node killed, a rolling restart.

The cluster is started by ``scripts/elasticsearch-local --cluster ctir-three up --nodes 3``
(its own ports, data and logs; 512 MB heap per node) and torn down afterwards. The index has
3 primary shards and 1 replica, so every shard survives the loss of one node. The store is
given all three node URLs: the client fails over between them.

Each test is bounded in time and counts what failed; a product must be indexed exactly once
and every query must answer with the same top 10 as before the failure. Marked
``integration`` and ``slow``; skipped (with the reason) where Java or Maven are missing.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from es_fixtures import es_json, local_es, own_cluster

from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bulk import BulkAborted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER = "ctir-three"
NODES = ("es-1", "es-2", "es-3")
DIMS = 16
PRODUCTS = 3000
SCHEMA = IndexSchema({"v": VectorField(DIMS, "cosine", {"id": "rand@1"})})
CATEGORIES = [("Kitchen", "Cookware"), ("Kitchen", "Cutlery"), ("Home", "Towels"), ("Watches",)]
WORDS = ["steel", "pan", "cotton", "towel", "analog", "watch", "knife", "set", "blue", "large"]


def local(*args: str) -> subprocess.CompletedProcess[str]:
    return local_es(CLUSTER, *args)


def http(url: str, path: str, body: dict | None = None) -> dict:
    return es_json(url, path, body)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[str]]:
    """The URLs of the three nodes, es-1 first."""
    with own_cluster(CLUSTER, "--nodes", "3", "--port", "9260"):
        status = json.loads(local("status").stdout)
        yield [node["url"] for node in status["nodes"]]


def wait_green(urls: list[str]) -> None:
    for url in urls:
        try:
            health = http(url, "/_cluster/health?wait_for_status=green&timeout=120s")
        except OSError:
            continue  # that node is down; ask the next
        assert health["status"] == "green", health
        return
    raise AssertionError("no node answered the health request")


def catalogue(seed: int = 3) -> list[Document]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(PRODUCTS, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = []
    for i in range(PRODUCTS):
        words = " ".join(rng.choice(WORDS, size=3))
        path = CATEGORIES[i % len(CATEGORIES)]
        product = Product(id=f"c{i}", title=f"{words} {i}", categories=(path,))
        docs.append(Document(product, {"v": vectors[i]}))
    return docs


def store_for(urls: list[str], index: str) -> ElasticsearchStore:
    return ElasticsearchStore(
        EsConnection(",".join(urls), index, request_timeout=60),
        shards=3,
        replicas=1,
        chunk_size=100,
        max_retries=8,
        initial_backoff=0.5,
        max_backoff=4.0,
        index_options="hnsw",
    )


def exactly_once(url: str, index: str) -> tuple[int, int]:
    """(``_count``, ids present more than once)."""
    count = http(url, f"/{index}/_count")["count"]
    dupes = http(
        url,
        f"/{index}/_search",
        {"size": 0, "aggs": {"ids": {"terms": {"field": "id", "size": 2 * PRODUCTS, "min_doc_count": 2}}}},
    )["aggregations"]["ids"]["buckets"]
    return count, len(dupes)


QUERIES = [(LexicalQuery(f"{a} {b}"), i) for i, (a, b) in enumerate(zip(WORDS, WORDS[3:] + WORDS[:3]))]


def probe_query(probe: np.ndarray, i: int) -> VectorQuery:
    # HNSW is approximate and every shard copy builds its own graph: candidates covering a
    # whole shard (1,000 products) make each copy's answer the exact one, so "the same top 10
    # from any copy" is a fair test; with 100 candidates about 1 query in 2,000 differed
    return VectorQuery("v", probe[i], "knn", num_candidates=1000)


def top10(store: ElasticsearchStore, probe: np.ndarray) -> list[tuple[list[str], list[str]]]:
    out = []
    for lexical, i in QUERIES:
        runs = store.search(lexical, [probe_query(probe, i)], 10)
        out.append(([h.id for h in runs["bm25"]], [h.id for h in runs["knn"]]))
    return out


@pytest.fixture(scope="module")
def loaded(cluster: list[str]) -> Iterator[tuple[ElasticsearchStore, np.ndarray]]:
    store = store_for(cluster, "three-products")
    store.setup(SCHEMA)
    report = store.bulk_load(catalogue(), checkpoint_key="load")
    assert report.count_after == PRODUCTS
    wait_green(cluster)
    probe = np.random.default_rng(9).normal(size=(len(QUERIES), DIMS)).astype(np.float32)
    yield store, probe
    store.close()


def test_setup_makes_three_shards_with_one_replica(loaded: tuple[ElasticsearchStore, np.ndarray]) -> None:
    store, _ = loaded
    status = store.status()
    assert (status["shards"], status["replicas"]) == (3, 1)
    assert store.cluster_info().data_nodes == 3 and store.cluster_info().default_replicas == 1


def test_node_killed_mid_bulk_load_every_product_once(cluster: list[str]) -> None:
    """SIGKILL es-2 while a bulk load into a 3-shard, 1-replica index runs: the load ends (or
    resumes from its checkpoint) with every product exactly once, and says what it retried."""
    store = store_for(cluster, "three-kill")
    store.setup(SCHEMA)
    wait_green(cluster)
    killed: list[int] = []

    def on_chunk(report: object) -> None:
        if not killed and getattr(report, "written", 0) >= 800:
            killed.append(report.written)
            assert local("stop-node", "es-2", "--kill").returncode == 0

    runs, aborted = 0, []
    report = None
    deadline = time.monotonic() + 300
    while report is None and time.monotonic() < deadline:
        runs += 1
        try:
            report = store.bulk_load(catalogue(), checkpoint_key="kill", on_chunk=on_chunk)
        except BulkAborted as exc:  # retries ran out: run the same load again (resume)
            aborted.append(str(exc)[:200])
    assert report is not None, aborted
    assert killed, "the node was not killed mid-load"
    assert local("start-node", "es-2").returncode == 0
    wait_green(cluster)
    count, dupes = exactly_once(cluster[0], "three-kill")
    print(
        f"\nkill mid-bulk: killed es-2 after {killed[0]} products; {runs} run(s) "
        f"({len(aborted)} aborted and resumed); retries {report.retries}; "
        f"_count {count}; duplicated ids {dupes}"
    )
    assert (count, dupes) == (PRODUCTS, 0)
    store.drop()
    store.close()


def query_loop(
    store: ElasticsearchStore, probe: np.ndarray, expected: list, stop: threading.Event, out: dict
) -> None:
    """Ask the queries in turn until ``stop`` (bounded by 600 s); count answers and failures."""
    deadline = time.monotonic() + 600
    while not stop.is_set() and time.monotonic() < deadline:
        for (lexical, i), want in zip(QUERIES, expected):
            try:
                runs = store.search(lexical, [probe_query(probe, i)], 10)
            except Exception as exc:  # noqa: BLE001 - a failure is the finding: count it
                out["failed"] += 1
                out.setdefault("errors", []).append(str(exc)[:160])
                continue
            out["answered"] += 1
            out["different_bm25"] += [h.id for h in runs["bm25"]] != want[0]
            out["different_knn"] += [h.id for h in runs["knn"]] != want[1]


def test_queries_answer_while_a_node_is_down(loaded: tuple[ElasticsearchStore, np.ndarray], cluster: list[str]) -> None:
    store, probe = loaded
    expected = top10(store, probe)
    assert local("stop-node", "es-3", "--kill").returncode == 0
    out = {"answered": 0, "failed": 0, "different_bm25": 0, "different_knn": 0}
    for _ in range(5):
        for (lexical, i), want in zip(QUERIES, expected):
            try:
                runs = store.search(lexical, [probe_query(probe, i)], 10)
            except Exception as exc:  # noqa: BLE001 - counted
                out["failed"] += 1
                out.setdefault("errors", []).append(str(exc)[:160])
                continue
            out["answered"] += 1
            out["different_bm25"] += [h.id for h in runs["bm25"]] != want[0]
            out["different_knn"] += [h.id for h in runs["knn"]] != want[1]
    health = http(cluster[0], "/_cluster/health")
    print(f"\none node down ({health['status']}, {health['number_of_nodes']} nodes): {out}")
    assert local("start-node", "es-3").returncode == 0
    wait_green(cluster)
    assert out["failed"] == 0 and out["different_bm25"] == out["different_knn"] == 0, out
    assert out["answered"] == 5 * len(QUERIES)


def test_rolling_restart_under_query_load(loaded: tuple[ElasticsearchStore, np.ndarray], cluster: list[str]) -> None:
    """Restart es-1, es-2, es-3 one after the other (SIGTERM, start, wait green) while a
    second thread queries without pause: no failed query reaches the caller."""
    store, probe = loaded
    expected = top10(store, probe)
    out = {"answered": 0, "failed": 0, "different_bm25": 0, "different_knn": 0}
    stop = threading.Event()
    worker = threading.Thread(target=query_loop, args=(store, probe, expected, stop, out))
    worker.start()
    try:
        for node in NODES:
            assert local("stop-node", node).returncode == 0
            time.sleep(2)
            assert local("start-node", node).returncode == 0
            wait_green(cluster)
    finally:
        stop.set()
        worker.join(timeout=120)
    print(f"\nrolling restart of {', '.join(NODES)}: {out}")
    assert out["answered"] > 0
    assert out["failed"] == 0 and out["different_bm25"] == out["different_knn"] == 0, out
