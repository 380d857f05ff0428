"""``ctir-es es ...`` and ``ctir-es kibana setup`` against the stub Elasticsearch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from es_stub import EsState, EsStub, start

from ctir_es.cli.main import cli
from ctir_es.schema import IndexSchema, VectorField

SCHEMA = IndexSchema({"title_vector": VectorField(4, "cosine", {"id": "tiny@1", "dims": 4})})


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[EsStub]:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "none.toml"))
    for var in ("CTIR_ES_URL", "CTIR_ES_INDEX", "CTIR_ES_API_KEY", "CTIR_ES_USERNAME", "CTIR_ES_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    server = start(EsState())
    yield server
    server.stop()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def schema_file(tmp_path: Path, schema: IndexSchema = SCHEMA) -> str:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema.to_json()), encoding="utf-8")
    return str(path)


def test_lifecycle_commands(stub: EsStub, tmp_path: Path) -> None:
    code, out = run("es", "setup", "--es-url", stub.url, "--schema", schema_file(tmp_path),
                    "--index-options", "hnsw")
    assert code == 0, out
    assert "products -> products-v1" in out and "hnsw" in out and "title_vector: 4 dims" in out
    code, out = run("es", "status", "--es-url", stub.url, "--json")
    status = json.loads(out)
    assert status["live"] == "products-v1" and status["index_options"] == "hnsw"
    code, out = run("es", "status", "--es-url", stub.url)
    assert "server-side rrf: no (the rrf retriever needs an enterprise or trial licence" in out
    stub.state.indices["products-v1"]["docs"]["p1"] = {"id": "p1"}
    code, out = run("es", "reindex", "--es-url", stub.url, "--index-options", "int8_hnsw")
    assert code == 0, out
    assert "products-v1 -> products-v2 (1 products, int8_hnsw, 1 shard(s), copied server-side); old version kept" in out
    code, out = run("es", "swap", "products-v1", "--es-url", stub.url)
    assert code == 0 and stub.state.aliases == {"products": ["products-v1"]}
    code, out = run("es", "drop", "--es-url", stub.url, "--yes")
    assert code == 0 and stub.state.indices == {}


def test_mismatch_is_one_clear_error(stub: EsStub, tmp_path: Path) -> None:
    assert run("es", "setup", "--es-url", stub.url, "--schema", schema_file(tmp_path))[0] == 0
    other = IndexSchema({"title_vector": VectorField(8, "cosine", {"id": "tiny@1"})})
    code, out = run("es", "setup", "--es-url", stub.url, "--schema", schema_file(tmp_path, other))
    assert code == 1
    assert "Error: index 'products -> products-v1' does not fit the encoders in use" in out
    assert "ctir-es es swap products-v2" in out and "Traceback" not in out


def test_unreachable_cluster(stub: EsStub) -> None:
    code, out = run("es", "status", "--es-url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach Elasticsearch at http://127.0.0.1:9" in out


def test_kibana_dry_run_prints_the_ndjson(stub: EsStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTIR_ES_INDEX", "shop")
    code, out = run("kibana", "setup", "--dry-run")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["type"] == "index-pattern" and lines[0]["attributes"]["title"] == "shop"


@pytest.mark.parametrize(
    "command", [["es"], ["es", "setup"], ["es", "status"], ["es", "reindex"], ["es", "swap"],
                ["es", "drop"], ["kibana"], ["kibana", "setup"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    code, out = run(*command, "--help")
    assert code == 0 and "Usage:" in out and len(out.splitlines()) > 4
