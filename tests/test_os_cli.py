"""The CLI on OpenSearch: ``--os-url`` on the commands that open a store, end to end on a real
node (a small catalogue, the tiny text model, no images), with the same answers as the
embedded store where they must be the same; and both URLs at once as one clear error.
Marked ``integration`` (``CTIR_ES_OS_TEST_URL``) except the last test, which needs no node."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from os_fixtures import os_url  # noqa: F401 - a fixture
from test_eval_cli import catalogue

from ctir_es.cli.main import cli
from ctir_es.store.elasticsearch import EsConnection
from ctir_es.store.opensearch import OpenSearchStore


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_text_model_dir: Path) -> Path:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CTIR_ES_TEXT_MODEL", str(tiny_text_model_dir))
    monkeypatch.setenv("CTIR_ES_CLIP_WEIGHTS", "none")
    for var in ("CTIR_ES_URL", "CTIR_ES_OS_URL", "CTIR_ES_STORE", "CTIR_ES_INDEX"):
        monkeypatch.delenv(var, raising=False)
    jsonl = tmp_path / "products.jsonl"
    jsonl.write_text("".join(json.dumps(p.to_json()) + "\n" for p in catalogue(120)), encoding="utf-8")
    return jsonl


def invoker(*where: str) -> Callable[..., str]:
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, *where], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    return run


@pytest.mark.integration
def test_the_commands_on_opensearch_answer_as_on_the_embedded_store(
    env: Path, tmp_path: Path, os_url: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("CTIR_ES_INDEX", f"ctir-test-{uuid.uuid4().hex[:12]}")
    on_os = invoker("--os-url", os_url)
    embedded = invoker("--store", str(tmp_path / "store.db"))
    try:
        for run in (on_os, embedded):
            run("ingest", "jsonl", str(env))
        stats = json.loads(on_os("stats", "--json"))
        assert stats["backend"] == "opensearch" and stats["products"] == 120
        assert json.loads(on_os("es", "status", "--json"))["cluster"]["knn"] is True
        assert "cluster: OpenSearch" in on_os("es", "status") and "opensearch-knn" in on_os("es", "status")
        query = ["query", "Kitchen > Cookware", "--k", "10", "--weight", "bm25=0", "--json"]  # kNN alone
        mine, theirs = (json.loads(run(*query)) for run in (on_os, embedded))
        assert [r["id"] for r in mine["results"]] == [r["id"] for r in theirs["results"]]
        text = ["categorize", "--text", "steel Pans set", "--json"]
        mine, theirs = (json.loads(run(*text)) for run in (on_os, embedded))
        assert mine["categories"][0]["path"] == theirs["categories"][0]["path"]
        audit = json.loads(on_os("audit", "--k", "5", "--json"))
        assert audit["audited"] == 120 and len(audit["entries"]) == 5
        # --hide-categories works on a scratch index of the same engine, dropped afterwards
        calibrated = json.loads(on_os("calibrate", "--dry-run", "--hide-categories", "--json"))
        assert calibrated["stored"] is False and '"hidden_products"' in json.dumps(calibrated)
        left = OpenSearchStore(EsConnection(os_url, "ctir-test")).client.indices.get(index="*-calibration-*").body
        assert left == {}
    finally:
        on_os("es", "drop", "--yes")


def test_two_urls_are_one_clear_error(env: Path) -> None:
    result = CliRunner().invoke(cli, ["stats", "--os-url", "http://127.0.0.1:9400", "--es-url",
                                      "http://127.0.0.1:9200"])
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "unset one" in result.output and "Traceback" not in result.output
