"""A real fault: SIGKILL the Elasticsearch node in the middle of a bulk ingest, start it again,
run the same ingest again - every product exactly once, and the ingest says what happened.

It runs on a node of its own (``scripts/elasticsearch-local --cluster ctir-fault``), so the
node the other integration tests share is never killed. Marked ``integration`` and ``slow``;
skipped (with the reason) where Java or Maven are missing, which CI installs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from es_fixtures import es_json, local_es, own_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER = "ctir-fault"
INDEX = "fault-products"
PRODUCTS = 1050


def local(*args: str) -> subprocess.CompletedProcess[str]:
    return local_es(CLUSTER, *args, timeout=300)


def es(url: str, path: str, body: dict | None = None) -> dict:
    return es_json(url, path, body, timeout=10)


@pytest.fixture(scope="module")
def fault_node() -> Iterator[str]:
    with own_cluster(CLUSTER, "--port", "9250") as url:
        yield url


def ingest(flipkart_dir: Path, tiny_text_model_dir: Path, url: str, tmp: Path) -> subprocess.Popen[str]:
    config = tmp / "config.toml"
    # few retries with short back-offs: a dead node is reported within seconds
    config.write_text(
        "[elasticsearch]\nmax_retries = 2\ninitial_backoff = 0.2\nmax_backoff = 0.5\n",
        encoding="utf-8",
    )
    env = {**os.environ, "CTIR_ES_INDEX": INDEX, "CTIR_ES_CACHE_DIR": str(tmp / "cache")}
    env.pop("CTIR_ES_URL", None)
    return subprocess.Popen(
        [
            sys.executable, "-m", "ctir_es.cli", "--config", str(config),
            "ingest", "flipkart", str(flipkart_dir), "--es-url", url,
            "--text-model", str(tiny_text_model_dir), "--no-images", "--batch-size", "2",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def checkpoint(url: str) -> int:
    try:
        hits = es(url, f"/{INDEX}-ctir-meta/_search", {"size": 1})["hits"]["hits"]
    except Exception:  # noqa: BLE001 - no checkpoint index yet
        return 0
    return int(hits[0]["_source"]["position"]) if hits else 0


def test_sigkill_mid_ingest_then_rerun_gives_every_product_once(
    fault_node: str, flipkart_dir: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    url = fault_node
    for name in (INDEX, f"{INDEX}-v1", f"{INDEX}-ctir-meta"):  # leftovers of an aborted run
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/{name}", method="DELETE"), timeout=10)
        except urllib.error.HTTPError:
            pass
    first = ingest(flipkart_dir, tiny_text_model_dir, url, tmp_path)
    deadline = time.monotonic() + 240
    while checkpoint(url) < 100 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the ingest ended before the node could be killed mid-way"
    killed_at = checkpoint(url)
    assert local("stop-node", "es-1", "--kill").returncode == 0
    out, err = first.communicate(timeout=180)
    # the ingest stops with one clear message: the node is unreachable, nothing is lost
    assert first.returncode != 0, out
    assert "Traceback" not in err
    assert "cannot reach Elasticsearch" in err and "run the same ingest again" in err, err

    assert local("start-node", "es-1").returncode == 0
    second = ingest(flipkart_dir, tiny_text_model_dir, url, tmp_path)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    # what was committed before the kill is kept: the rerun skips past it
    resumed = [int(n) for n in re.findall(r"resumed(?: past)?\s+(\d+)", out + err)]
    assert resumed and max(resumed) >= killed_at, out

    assert es(url, f"/{INDEX}/_count")["count"] == PRODUCTS
    dupes = es(
        url,
        f"/{INDEX}/_search",
        {"size": 0, "aggs": {"ids": {"terms": {"field": "id", "size": 2 * PRODUCTS, "min_doc_count": 2}}}},
    )
    assert dupes["aggregations"]["ids"]["buckets"] == []
    distinct = es(url, f"/{INDEX}/_search", {"size": 0, "aggs": {"n": {"cardinality": {"field": "id"}}}})
    assert distinct["aggregations"]["n"]["value"] == PRODUCTS
