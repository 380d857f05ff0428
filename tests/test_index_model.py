"""The index knows its CLIP-ITA model: ingests after the one that added the ``clip_ita`` field
fill it with no setting (CLI and ``Search.index``), and a store whose model folder is gone says
so in one line with the fix (``ctir-es query``/``ingest``), while ``stats``, ``serve`` and
``/health`` keep working and report it. Real tiny models (the session's tiny CLIP-ITA)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.config import Settings
from ctir_es.encoders.loading import index_model_dir, missing_model
from ctir_es.errors import ModelMissing
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.schema import IndexSchema, VectorField
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import CLIP_ITA_SOURCE, CLIP_ITA_VECTOR

CATEGORY = "Kitchen & Dining > Cookware"
MODEL = "tiny-clip-ita"  # the name the session fixture exported it under


def sample_parts(tmp: Path, sizes: tuple[int, ...]) -> list[Path]:
    """Consecutive slices of the bundled sample as JSONL files (image paths made absolute)."""
    products = list(read_jsonl(sample_path(), IngestReport()))
    out, start = [], 0
    for n, size in enumerate(sizes):
        path = tmp / f"part{n}.jsonl"
        lines = []
        for p in products[start : start + size]:
            record = p.to_json()
            record["images"] = [str((sample_path().parent / ref).resolve()) for ref in record.get("images") or []]
            lines.append(json.dumps(record))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(path)
        start += size
    return out


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def ids_of(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_clip_ita, tiny_onnx_text: Path, tiny_onnx_clip: Path):
    """A private models dir holding a copy of the tiny CLIP-ITA model (tests may move it away),
    a private config/cache/store, and ``run(*args, code=0)`` invoking the CLI in-process."""
    models = tmp_path / "models"
    shutil.copytree(tiny_clip_ita.model_dir, models / MODEL)
    monkeypatch.setenv("CTIR_ES_MODELS_DIR", str(models))
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_CLIP_ITA", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_MODEL",
                "CTIR_ES_CLIP_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    store = tmp_path / "store.db"
    encoders = ["--text-model", str(tiny_onnx_text), "--clip-weights", str(tiny_onnx_clip)]
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        """stdout when it succeeds (JSON stays parseable), everything printed when it fails."""
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.output

    def ingest(part: Path, *extra: str, code: int = 0) -> str:
        return run("ingest", "jsonl", str(part), "--json", "--store", str(store), *encoders, *extra, code=code)

    return {"models": models, "store": store, "run": run, "ingest": ingest,
            "settings": Settings(store=store, cache_dir=tmp_path / "cache", models_dir=models)}


def clip_ita_vectors(store_path: Path, ids: list[str]) -> dict:
    store = EmbeddedStore(store_path)
    try:
        return store.vectors(ids, CLIP_ITA_VECTOR)
    finally:
        store.close()


def add_clip_ita(env: dict, tmp_path: Path) -> list[Path]:
    """Part 0 without a model, part 1 with ``--clip-ita`` (which adds the field): the store as
    ``ctir-es learn`` leaves it, as far as later ingests can tell."""
    parts = sample_parts(tmp_path, (30, 30, 30, 30))
    env["ingest"](parts[0])
    assert not clip_ita_vectors(env["store"], ids_of(parts[0]))
    report = json.loads(env["ingest"](parts[1], "--clip-ita", MODEL))
    assert report["indexed"] == 30
    assert len(clip_ita_vectors(env["store"], ids_of(parts[1]))) == 30
    return parts


# -- 1. later ingests fill clip_ita with no setting ------------------------------------------


def test_cli_ingest_adds_the_index_model_vectors_with_no_setting(env: dict, tmp_path: Path) -> None:
    parts = add_clip_ita(env, tmp_path)
    report = json.loads(env["ingest"](parts[2]))  # no --clip-ita, no CTIR_ES_CLIP_ITA
    assert report["indexed"] == 30
    said = [m for m in report["messages"] if "CLIP-ITA" in m]
    assert len(said) == 1 and "\n" not in said[0] and MODEL in said[0] and "the index's model" in said[0]
    vectors = clip_ita_vectors(env["store"], ids_of(parts[2]))
    assert len(vectors) == 30
    # the same vectors as an ingest naming the model gives
    again = json.loads(env["ingest"](parts[2], "--clip-ita", MODEL, "--no-resume"))
    assert again["indexed"] == 30 and not [m for m in again["messages"] if "the index's model" in m]
    named = clip_ita_vectors(env["store"], ids_of(parts[2]))
    assert all(float(vectors[i] @ named[i]) > 0.9999 for i in vectors)

    stats = json.loads(env["run"]("stats", "--store", str(env["store"]), "--json"))
    assert stats["vector_fields"][CLIP_ITA_VECTOR]["count"] == 60  # parts 1 and 2; part 0 predates the model
    assert "problem" not in stats["learned"]


def test_a_configured_model_other_than_the_index_one_is_refused(env: dict, tmp_path: Path) -> None:
    parts = add_clip_ita(env, tmp_path)
    other = env["models"] / "other-clip-ita"
    shutil.copytree(env["models"] / MODEL, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest.update(name="other-clip-ita", id=f"{manifest['id']}-retrained")
    (other / "manifest.json").write_text(json.dumps(manifest))
    out = env["ingest"](parts[2], "--clip-ita", "other-clip-ita", code=1)
    assert "does not match the encoders in use" in out and "clip_ita" in out and "-retrained" in out
    assert "Traceback" not in out and len(error_lines(out)) == 1  # (the progress bar aside)


def test_search_index_fills_clip_ita(env: dict, tmp_path: Path) -> None:
    parts = add_clip_ita(env, tmp_path)
    with Search.open(env["settings"]) as search:
        assert search.category_encoder is not None
        report = search.index(read_jsonl(parts[3], IngestReport()))
        assert report.indexed == 30
        assert CLIP_ITA_SOURCE in search.search(CATEGORY, k=5).sources
    assert len(clip_ita_vectors(env["store"], ids_of(parts[3]))) == 30


# -- 2. the model folder is gone ---------------------------------------------------------------


def test_missing_model_folder_is_one_line_with_the_fix(env: dict, tmp_path: Path) -> None:
    parts = add_clip_ita(env, tmp_path)
    (env["models"] / MODEL).rename(tmp_path / "moved-away")
    store, models = str(env["store"]), str(env["models"])

    out = env["run"]("query", CATEGORY, "--store", store, code=1)
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out, out
    assert MODEL in out and models in out and "run `ctir-es learn` to train it again" in out
    assert f"copy the model folder to {models}" in out
    with pytest.raises(ModelMissing):  # typed: callers branch on the class, never on the text
        Search.open(env["settings"])

    # an ingest would leave a hole in the clip_ita field: refused the same way
    out = env["ingest"](parts[2], code=1)
    assert len(error_lines(out)) == 1 and "ctir-es learn" in error_lines(out)[0] and "Traceback" not in out

    # stats still works and reports it
    stats = json.loads(env["run"]("stats", "--store", store, "--json"))
    assert stats["products"] == 60 and MODEL in stats["learned"]["problem"]
    human = env["run"]("stats", "--store", store)
    assert "problem: the index's CLIP-ITA model" in " ".join(human.split())

    # a server starts without it, serves category queries without the clip_ita source, and
    # /health says what is wrong
    from fastapi.testclient import TestClient

    from ctir_es.service import create_app

    search = Search.open(env["settings"], allow_missing_model=True)
    try:
        assert search.category_encoder is None
        client = TestClient(create_app(search), raise_server_exceptions=False)
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert MODEL in health.json()["learned"]["problem"] and "ctir-es learn" in health.json()["learned"]["problem"]
        page = client.get("/search", params={"q": CATEGORY})
        assert page.status_code == 200 and CLIP_ITA_SOURCE not in page.json()["sources"] and page.json()["results"]
    finally:
        search.close()

    # the model back in the models dir (under its name): found again
    (tmp_path / "moved-away").rename(env["models"] / MODEL)
    assert json.loads(env["run"]("query", CATEGORY, "--store", store, "--json"))["results"]


def test_serve_starts_and_health_reports_a_missing_model(env: dict, tmp_path: Path) -> None:
    import urllib.request

    from service_support import ServeProcess

    add_clip_ita(env, tmp_path)
    (env["models"] / MODEL).rename(tmp_path / "moved-away")
    (tmp_path / "server").mkdir()
    with ServeProcess(env["store"], tmp_path / "server") as server:
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as r:
            health = json.loads(r.read())
        assert MODEL in health["learned"]["problem"]
        warning = [line for line in server.output().splitlines() if "CLIP-ITA model" in line]
        assert len(warning) == 1 and "serving without it" in warning[0]
    assert "Traceback" not in server.output()


def test_where_the_index_model_is_looked_for(tmp_path: Path) -> None:
    def model_dir(path: Path) -> Path:
        path.mkdir(parents=True)
        (path / "manifest.json").write_text("{}")
        return path

    models = tmp_path / "models"
    elsewhere = model_dir(tmp_path / "elsewhere" / "m1")
    manifest = {"name": "m1", "path": str(elsewhere), "id": "m1@x", "kind": "onnx-clip-ita"}
    schema = IndexSchema({CLIP_ITA_VECTOR: VectorField(8, "cosine", manifest)})
    assert index_model_dir(manifest, models) == elsewhere.resolve() and missing_model(schema, models) is None
    shutil.rmtree(elsewhere)
    problem = missing_model(schema, models)
    assert isinstance(problem, ModelMissing) and str(elsewhere) in str(problem) and str(models) in str(problem)
    moved = model_dir(models / "m1")  # copied to the models dir: found by its name
    assert index_model_dir(manifest, models) == moved and missing_model(schema, models) is None
    assert missing_model(IndexSchema({}), models) is None  # no clip_ita field: nothing to miss
