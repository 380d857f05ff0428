"""Real faults during an ingest into OpenSearch: SIGKILL the ingest process mid-way, or SIGKILL
the OpenSearch node mid-way; then run the same ingest again - every product exactly once, and
the rerun says where it resumed.

- The process kill runs on the node the integration tests share (``CTIR_ES_OS_TEST_URL``), on an
  index of its own.
- The node kill runs on a node of its own (``scripts/opensearch-local --cluster ctir-os-fault``,
  port 9450), so the shared node is never killed; skipped (with the reason) without Java or
  Maven, which CI installs.

Marked ``integration`` and ``slow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from os_fixtures import local_os, os_json, os_url, own_os_node  # noqa: F401 - os_url is a fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRODUCTS = 1050
FAULT_CLUSTER = "ctir-os-fault"


def ingest(flipkart_dir: Path, model: Path, url: str, index: str, tmp: Path) -> subprocess.Popen[str]:
    """``ctir-es ingest flipkart`` into ``index`` on ``url``, two products per batch (a
    checkpoint after each), in a process of its own."""
    config = tmp / "config.toml"
    # few retries with short back-offs: a dead node is reported within seconds
    config.write_text(
        "[opensearch]\nmax_retries = 2\ninitial_backoff = 0.2\nmax_backoff = 0.5\n", encoding="utf-8"
    )
    # the index name is the one setting both engines share (CTIR_ES_INDEX, or [opensearch] index)
    env = {**os.environ, "CTIR_ES_INDEX": index, "CTIR_ES_CACHE_DIR": str(tmp / "cache")}
    for name in ("CTIR_ES_URL", "CTIR_ES_OS_URL", "CTIR_ES_OS_INDEX"):
        env.pop(name, None)
    return subprocess.Popen(
        [
            sys.executable, "-m", "ctir_es.cli", "--config", str(config),
            "ingest", "flipkart", str(flipkart_dir), "--os-url", url,
            "--text-model", str(model), "--no-images", "--batch-size", "2",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def checkpoint(url: str, index: str) -> int:
    """The position the ingest recorded last (0 before its first checkpoint)."""
    try:
        hits = os_json(url, f"/{index}-ctir-meta/_search", {"size": 1}, timeout=10)["hits"]["hits"]
    except (urllib.error.URLError, OSError, ValueError):  # no checkpoint index yet, or the node is down
        return 0
    return int(hits[0]["_source"]["position"]) if hits else 0


def wait_for_checkpoint(proc: subprocess.Popen[str], url: str, index: str, at_least: int) -> int:
    deadline = time.monotonic() + 300
    while checkpoint(url, index) < at_least and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        _, err = proc.communicate()
        pytest.fail(f"the ingest ended before it could be killed mid-way (exit {proc.returncode}): {err[-1500:]}")
    return checkpoint(url, index)


def assert_every_product_once(url: str, index: str, out: str, err: str, killed_at: int) -> None:
    # what was committed before the kill is kept: the rerun skips past it
    resumed = [int(n) for n in re.findall(r"resumed(?: past)?\s+(\d+)", out + err)]
    assert resumed and max(resumed) >= killed_at, out + err
    os_json(url, f"/{index}/_refresh", {})
    assert os_json(url, f"/{index}/_count")["count"] == PRODUCTS
    dupes = os_json(url, f"/{index}/_search", {
        "size": 0, "aggs": {"ids": {"terms": {"field": "id", "size": 2 * PRODUCTS, "min_doc_count": 2}}},
    })  # fmt: skip
    assert dupes["aggregations"]["ids"]["buckets"] == []
    distinct = os_json(url, f"/{index}/_search", {"size": 0, "aggs": {"n": {"cardinality": {"field": "id"}}}})
    assert distinct["aggregations"]["n"]["value"] == PRODUCTS


def drop(url: str, index: str) -> None:
    for name in (index, f"{index}-v1", f"{index}-ctir-meta"):
        with contextlib.suppress(urllib.error.URLError, OSError):
            os_json(url, f"/{name}", method="DELETE", timeout=30)


@pytest.fixture
def index(os_url: str) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    name = f"os-kill-{uuid.uuid4().hex[:10]}"
    yield name
    drop(os_url, name)


def test_sigkill_of_the_ingest_then_rerun_gives_every_product_once(
    os_url: str, index: str, flipkart_dir: Path, tiny_text_model_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    first = ingest(flipkart_dir, tiny_text_model_dir, os_url, index, tmp_path)
    try:
        killed_at = wait_for_checkpoint(first, os_url, index, 100)
        first.send_signal(signal.SIGKILL)  # kill -9: no handler, no flush, no goodbye
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert killed_at < PRODUCTS

    second = ingest(flipkart_dir, tiny_text_model_dir, os_url, index, tmp_path)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert_every_product_once(os_url, index, out, err, killed_at)


def node_pid(cluster: str) -> int:
    status = local_os(cluster, "status")
    assert status.returncode == 0, status.stderr
    return int(json.loads(status.stdout)["nodes"][0]["pid"])


def test_sigkill_of_the_node_mid_ingest_then_rerun_gives_every_product_once(
    flipkart_dir: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    index = "fault-products"
    with own_os_node(FAULT_CLUSTER, "--port", "9450") as url:
        drop(url, index)  # leftovers of an aborted run
        first = ingest(flipkart_dir, tiny_text_model_dir, url, index, tmp_path)
        try:
            killed_at = wait_for_checkpoint(first, url, index, 100)
            os.kill(node_pid(FAULT_CLUSTER), signal.SIGKILL)
            out, err = first.communicate(timeout=180)
        finally:
            if first.poll() is None:
                first.kill()
        # the ingest stops with one clear message: the node is unreachable, nothing is lost
        assert first.returncode not in (0, -signal.SIGKILL), out
        assert "Traceback" not in err
        assert "run the same ingest again" in err, err[-2000:]

        again = local_os(FAULT_CLUSTER, "up")
        assert again.returncode == 0, again.stderr[-2000:]
        second = ingest(flipkart_dir, tiny_text_model_dir, url, index, tmp_path)
        out, err = second.communicate(timeout=600)
        assert second.returncode == 0, err[-2000:]
        assert_every_product_once(url, index, out, err, killed_at)
