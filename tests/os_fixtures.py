"""The real OpenSearch the integration tests share: ``os_url`` (one node per session).

The node is the one named by ``CTIR_ES_OS_TEST_URL`` (CI starts a local node with
``scripts/opensearch-local up`` and exports the URL it prints under this name). Not
``CTIR_ES_OS_URL``: that is the product's own setting, and every command a test runs would take
it and use OpenSearch (conftest.py drops it from the tests' environment). A URL that is set but does not answer,
is not healthy or lacks the k-NN plugin FAILS the tests. Without the variable the tests are
skipped with a reason naming the script (there is no OpenSearch container fallback: no Docker
engine runs here). Import the fixture into a test module (``from os_fixtures import os_url``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

OS_URL_VAR = "CTIR_ES_OS_TEST_URL"
NO_NODE = (
    f"no OpenSearch: set {OS_URL_VAR} (start a local node with `scripts/opensearch-local up`, "
    "or `make os-up`, and set it to the URL it prints)"
)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "opensearch-local"


def os_json(
    url: str, path: str, body: Any = None, method: str | None = None, timeout: float = 60
) -> Any:
    """One JSON request to a node (GET without ``body``, POST with it, or ``method``)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url.rstrip('/')}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read().decode()
    return json.loads(raw) if raw else None


def node_problem(url: str) -> str | None:
    """Why the node at ``url`` cannot serve the tests, or None when it is healthy and has k-NN."""
    try:
        health = os_json(url, "/_cluster/health?wait_for_status=yellow&timeout=30s", timeout=40)
        plugins = os_json(url, "/_cat/plugins?format=json", timeout=10)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"does not answer: {type(exc).__name__}: {str(exc)[:200]}"
    if health.get("timed_out"):
        return f"is not healthy: status {health.get('status')}"
    names = {p.get("component") for p in plugins or []}
    if "opensearch-knn" not in names:
        return f"has no k-NN plugin (plugins: {', '.join(sorted(map(str, names))) or 'none'})"
    return None


@pytest.fixture(scope="session")
def os_url() -> Iterator[str]:
    """The URL of one healthy OpenSearch node with the k-NN plugin, for the whole session."""
    url = os.environ.get(OS_URL_VAR, "").strip()
    if not url:
        pytest.skip(NO_NODE)
    problem = node_problem(url)
    if problem:
        pytest.fail(f"{OS_URL_VAR}={url} is set but the node {problem}", pytrace=False)
    yield url.rstrip("/")


# ---------------------------------------------------------------- nodes a test starts itself


def local_os(cluster: str, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """``scripts/opensearch-local --cluster CLUSTER ARGS...`` (output captured)."""
    return subprocess.run(
        [str(SCRIPT), "--cluster", cluster, *args],
        check=False, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def java_and_maven_missing() -> str | None:
    """Why this machine cannot start a local node (no Java or no Maven), or None."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing and not os.environ.get("OPENSEARCH_JAVA_HOME"):
        return f"starting a local OpenSearch with {SCRIPT.name} needs {', '.join(missing)}"
    return None


@contextmanager
def own_os_node(cluster: str, *up_args: str) -> Iterator[str]:
    """Start a node of the test's own (skipped, with the reason, without Java or Maven), yield
    its URL, and purge it afterwards."""
    reason = java_and_maven_missing()
    if reason:
        pytest.skip(reason)
    up = local_os(cluster, "up", *up_args)
    if up.returncode != 0:
        pytest.fail(f"{SCRIPT.name} up {' '.join(up_args)} failed: {up.stderr[-2000:]}", pytrace=False)
    try:
        yield up.stdout.strip().split("=", 1)[1]
    finally:
        local_os(cluster, "down", "--purge")
