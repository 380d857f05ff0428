"""scripts/opensearch-local: its answers without a node (status of a stopped node, the pom it
assembles lang-painless from, the JVM paths it fixes), and, against a real node, what the
node holds: the k-NN plugin, the assembled lang-painless and analysis-common (the english
analyser), no security plugin, loopback only, and a Lucene HNSW cosine ``knn_vector`` that
indexes and answers a filtered ``knn`` query.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from os_fixtures import SCRIPT, local_os, os_json, os_url, own_os_node  # noqa: F401 - fixture

SCRIPTS = SCRIPT.parent
sys.path.insert(0, str(SCRIPTS))
import local_node
import opensearch_local


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script with its state under ``home`` (never the machine's real nodes)."""
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "CTIR_ES_LOCAL_HOME": str(home)},
    )  # fmt: skip


def write_state(home: Path, name: str, engine: str, pid: int | None) -> None:
    node = {"name": "os-1", "http_port": 9499, "transport_port": 9599,
            "dir": str(home / "clusters" / name / "os-1"), "pid": pid}
    state = {"name": name, "version": "2.19.1", "java_home": "/usr", "heap": "1g",
             "nodes": [node], "engine": engine}
    path = home / "clusters" / name / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(state), encoding="utf-8")


# ---------------------------------------------------------------- without a node


def test_status_without_a_cluster_says_so(tmp_path: Path) -> None:
    done = run(tmp_path, "status")
    assert done.returncode == 3
    assert json.loads(done.stdout) == {"cluster": "ctir-os", "running": False, "nodes": []}
    assert "no local OpenSearch 'ctir-os'" in done.stderr and "opensearch-local up" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_of_a_stopped_node_says_so(tmp_path: Path) -> None:
    # our own pid is alive but is no OpenSearch (its command line lacks org.opensearch)
    write_state(tmp_path, "ctir-os", "opensearch", os.getpid())
    done = run(tmp_path, "status")
    assert done.returncode == 3
    out = json.loads(done.stdout)
    assert out["running"] is False and out["nodes"][0]["running"] is False
    assert "health" not in out
    assert "'ctir-os' is stopped" in done.stderr
    url = run(tmp_path, "url")
    assert url.returncode == 1 and "is not running" in url.stderr and "Traceback" not in url.stderr


def test_an_elasticsearch_cluster_is_not_taken_for_an_opensearch_one(tmp_path: Path) -> None:
    write_state(tmp_path, "ctir-local", "elasticsearch", None)
    done = run(tmp_path, "--cluster", "ctir-local", "status")
    assert done.returncode == 1
    assert "is a elasticsearch cluster" in done.stderr and "scripts/elasticsearch-local" in done.stderr
    assert "Traceback" not in done.stderr


def test_down_without_a_cluster_is_not_an_error(tmp_path: Path) -> None:
    done = run(tmp_path, "down")
    assert done.returncode == 0 and "no local cluster 'ctir-os'" in done.stderr


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        args = opensearch_local.parser().parse_args(["up", "--port", str(port)])
        # the distribution step is skipped: only the port check is under test
        original = opensearch_local.prepare
        opensearch_local.prepare = lambda *a, **k: tmp_path  # type: ignore[assignment]
        os.environ["CTIR_ES_LOCAL_HOME"] = str(tmp_path)
        try:
            with pytest.raises(local_node.LocalNodeError, match=f"port {port} on 127.0.0.1 is taken"):
                opensearch_local.cmd_up(args)
        finally:
            opensearch_local.prepare = original  # type: ignore[assignment]
            del os.environ["CTIR_ES_LOCAL_HOME"]


POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <dependencies>
    <dependency><groupId>org.antlr</groupId><artifactId>antlr4-runtime</artifactId>
      <version>4.13.1</version><scope>compile</scope>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>org.opensearch.plugin</groupId>
      <artifactId>opensearch-scripting-painless-spi</artifactId><version>2.19.1</version></dependency>
    <dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13</version>
      <scope>test</scope></dependency>
    <dependency><groupId>x</groupId><artifactId>optional-one</artifactId><version>1</version>
      <optional>true</optional></dependency>
  </dependencies>
</project>
"""


def test_the_pom_gives_compile_dependencies_and_wildcard_exclusions(tmp_path: Path) -> None:
    pom = tmp_path / "lang-painless.pom"
    pom.write_text(POM, encoding="utf-8")
    assert opensearch_local.pom_dependencies(pom) == [
        ("org.antlr", "antlr4-runtime", "4.13.1", True),
        ("org.opensearch.plugin", "opensearch-scripting-painless-spi", "2.19.1", False),
    ]
    pom.write_text(POM.replace("<version>2.19.1</version>", "<version>${os}</version>"), encoding="utf-8")
    with pytest.raises(local_node.LocalNodeError, match="without a plain version"):
        opensearch_local.pom_dependencies(pom)


def test_jvm_paths_are_made_absolute(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    options = tmp_path / "config" / "jvm.options"
    options.write_text(
        "-XX:HeapDumpPath=data\n-XX:ErrorFile=logs/hs_err_pid%p.log\n"
        "9-:-Xlog:gc*,gc+age=trace,safepoint:file=logs/gc.log:utctime,pid,tags:filecount=32\n",
        encoding="utf-8",
    )
    opensearch_local.absolute_jvm_paths(tmp_path)
    text = options.read_text(encoding="utf-8")
    assert f"-XX:HeapDumpPath={tmp_path}/data\n" in text
    assert f"-XX:ErrorFile={tmp_path}/logs/hs_err_pid%p.log" in text
    assert f"file={tmp_path}/logs/gc.log:" in text


# ---------------------------------------------------------------- against a real node


@pytest.fixture
def index(os_url: str) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    name = f"ctir-os-local-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(urllib.error.URLError, OSError):  # the index may not exist
        os_json(os_url, f"/{name}", method="DELETE", timeout=30)


@pytest.mark.integration
def test_the_node_has_knn_and_painless_and_no_security(os_url: str) -> None:  # noqa: F811
    nodes = os_json(os_url, "/_nodes/plugins,http")["nodes"]
    (node,) = nodes.values()
    assert node["version"].startswith("2.")
    plugins = {p["name"] for p in node["plugins"]}
    modules = {m["name"] for m in node["modules"]}
    assert "opensearch-knn" in plugins
    assert "lang-painless" in modules | plugins
    assert "analysis-common" in modules | plugins
    assert "opensearch-security" not in plugins
    knn = next(p for p in node["plugins"] if p["name"] == "opensearch-knn")
    assert knn["extended_plugins"] == ["lang-painless"]
    assert node["http"]["publish_address"].startswith("127.0.0.1:")


@pytest.mark.integration
def test_the_english_analyser_stems(os_url: str) -> None:  # noqa: F811
    """analysis-common, assembled by the script: category names are plural, titles singular."""
    tokens = os_json(os_url, "/_analyze", {"analyzer": "english", "text": "Blenders and Cookwares"})["tokens"]
    assert [t["token"] for t in tokens] == ["blender", "cookwar"]


@pytest.mark.integration
def test_lucene_hnsw_cosine_indexes_and_answers_a_filtered_knn_query(os_url: str, index: str) -> None:  # noqa: F811
    os_json(os_url, f"/{index}", {
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {"properties": {
            "v": {"type": "knn_vector", "dimension": 3, "method": {
                "engine": "lucene", "name": "hnsw", "space_type": "cosinesimil",
                "parameters": {"m": 16, "ef_construction": 100}}},
            "category": {"type": "keyword"},
        }},
    }, method="PUT")  # fmt: skip
    docs = {"1": ([1, 0, 0], "a"), "2": ([0.9, 0.1, 0], "b"), "3": ([0, 1, 0], "a"), "4": ([0.7, 0.7, 0], "a")}
    for doc_id, (vector, category) in docs.items():
        os_json(os_url, f"/{index}/_doc/{doc_id}", {"v": vector, "category": category}, method="PUT")
    os_json(os_url, f"/{index}/_refresh", {})

    def knn(body: dict) -> list[tuple[str, float]]:
        hits = os_json(os_url, f"/{index}/_search", {"size": 4, "query": {"knn": {"v": body}}})
        return [(h["_id"], h["_score"]) for h in hits["hits"]["hits"]]

    plain = knn({"vector": [1, 0, 0], "k": 4})
    assert [doc for doc, _ in plain] == ["1", "2", "4", "3"]
    # the Lucene engine's cosinesimil score is (1 + cosine) / 2
    assert plain[0][1] == pytest.approx(1.0)
    assert plain[3][1] == pytest.approx(0.5)
    filtered = knn({"vector": [1, 0, 0], "k": 4, "filter": {"term": {"category": "a"}}})
    assert [doc for doc, _ in filtered] == ["1", "4", "3"]
    # the node survived the writes and the flush (a native engine would have killed it)
    assert os_json(os_url, "/_cluster/health")["status"] in ("green", "yellow")


@pytest.mark.integration
@pytest.mark.slow
def test_up_status_url_down_on_a_node_of_its_own() -> None:
    cluster = "ctir-os-selftest"
    with own_os_node(cluster, "--port", "9460") as url:
        assert url.startswith("http://127.0.0.1:")
        status = local_os(cluster, "status")
        assert status.returncode == 0, status.stderr
        out = json.loads(status.stdout)
        assert out["running"] is True and out["health"]["status"] in ("green", "yellow")
        assert local_os(cluster, "url").stdout.strip() == url
        again = local_os(cluster, "up")  # already running: the same URL, nothing restarted
        assert again.returncode == 0 and again.stdout.strip() == f"CTIR_ES_OS_URL={url}"
        pid = out["nodes"][0]["pid"]
        assert local_os(cluster, "down").returncode == 0
        stopped = local_os(cluster, "status")
        assert stopped.returncode == 3 and json.loads(stopped.stdout)["running"] is False
        assert not local_node.alive(pid, opensearch_local.MARKER)
