"""The real Elasticsearch the integration tests share: ``es_connection`` (one cluster per
session) and ``make_store`` (stores on per-test indices, dropped afterwards).

The cluster is the one named by ``CTIR_ES_TEST_URL`` (CI starts a local node with
``scripts/elasticsearch-local up``); a URL that is set but does not answer FAILS the tests.
Without the variable, testcontainers starts one where a Docker engine answers; otherwise the
tests are skipped with a reason naming the script. Import both fixtures into a test module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection

ES_IMAGE = os.environ.get(
    "CTIR_ES_TEST_IMAGE", "docker.elastic.co/elasticsearch/elasticsearch:8.19.21"
)
NO_DOCKER = (
    "no Elasticsearch: set CTIR_ES_TEST_URL (start a local node with `scripts/elasticsearch-local up`, "
    "or `make es-up`) or run a Docker engine (testcontainers)"
)


def docker_unavailable() -> str | None:
    """Why no container can be started here, or None when a Docker engine answers."""
    try:
        import docker

        client = docker.from_env(timeout=3)  # type: ignore[attr-defined]
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - no socket, engine down, no permission, no package
        return f"{NO_DOCKER} ({type(exc).__name__})"
    return None


def cluster_problem(conn: EsConnection) -> str | None:
    """Why the cluster at ``conn`` cannot serve the tests, or None when it is healthy."""
    store = ElasticsearchStore(conn)
    try:
        health = store.client.cluster.health(wait_for_status="yellow", timeout="30s").body
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
        return f"does not answer: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        store.close()
    if health.get("timed_out"):
        return f"is not healthy: status {health.get('status')}"
    return None


@pytest.fixture(scope="session")
def es_connection() -> Iterator[EsConnection]:
    """One cluster for the whole session."""
    url = os.environ.get("CTIR_ES_TEST_URL")
    if url:
        conn = EsConnection.from_env(url=url, index="ctir-test", request_timeout=60)
        problem = cluster_problem(conn)
        if problem:
            pytest.fail(f"CTIR_ES_TEST_URL={conn.redacted_url} is set but {problem}", pytrace=False)
        yield conn
        return
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    try:  # testcontainers >= 4.x moved modules under ``community`` in some releases
        from testcontainers.community.elasticsearch import ElasticSearchContainer
    except ImportError:
        from testcontainers.elasticsearch import ElasticSearchContainer  # type: ignore[no-redef]

    container = (
        ElasticSearchContainer(ES_IMAGE, mem_limit="2g")
        .with_env("discovery.type", "single-node")
        .with_env("ES_JAVA_OPTS", "-Xms1g -Xmx1g")
        .with_env("cluster.routing.allocation.disk.threshold_enabled", "false")
        .with_env("xpack.license.self_generated.type", "trial")
    )
    with container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(container.port)
        yield EsConnection(f"http://{host}:{port}", "ctir-test", request_timeout=60)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Iterator[Search]:
    """The bundled sample in the embedded store (tiny text model, no CLIP): what an Elasticsearch
    result is compared with."""
    from service_support import sample_search

    search, _ = sample_search(tmp_path_factory.mktemp("emb"), tiny_text_model_dir, None)
    yield search
    search.close()


@pytest.fixture
def make_store(es_connection: EsConnection) -> Iterator[Callable[..., ElasticsearchStore]]:
    """Stores on per-test indices (``make_store(name)`` reopens one); all dropped afterwards."""
    made: list[ElasticsearchStore] = []
    default = f"ctir-test-{uuid.uuid4().hex[:12]}"

    def make(index: str | None = None, **options: object) -> ElasticsearchStore:
        options.setdefault("initial_backoff", 0.1)
        # float HNSW: exact scores, which the contract compares with the embedded store's
        options.setdefault("index_options", "hnsw")
        store = ElasticsearchStore(es_connection.with_index(index or default), **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        try:
            store.drop()
        finally:
            store.close()




# ---------------------------------------------------------------- clusters a test starts itself
# (the kill and scale-out tests SIGKILL nodes, so they never touch the shared node)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "elasticsearch-local"


def local_es(cluster: str, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """``scripts/elasticsearch-local --cluster CLUSTER ARGS...`` (output captured)."""
    return subprocess.run(
        [str(SCRIPT), "--cluster", cluster, *args],
        check=False, capture_output=True, text=True, timeout=timeout,
    )


def es_json(url: str, path: str, body: dict[str, Any] | None = None, timeout: float = 130) -> Any:
    """One JSON request to a node (GET without ``body``, POST with it)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


@contextmanager
def own_cluster(cluster: str, *up_args: str) -> Iterator[str]:
    """Start a cluster of the test's own (skipped, with the reason, without Java or Maven),
    yield the first node's URL, and purge it afterwards."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing and not os.environ.get("ES_JAVA_HOME"):
        pytest.skip(f"this test starts its own nodes with {SCRIPT.name}: {', '.join(missing)} missing")
    up = local_es(cluster, "up", *up_args)
    if up.returncode != 0:
        pytest.fail(f"{SCRIPT.name} up {' '.join(up_args)} failed: {up.stderr[-2000:]}", pytrace=False)
    try:
        yield up.stdout.strip().split("=", 1)[1]
    finally:
        local_es(cluster, "down", "--purge")
