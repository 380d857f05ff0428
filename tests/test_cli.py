"""The CLI end to end on the real bundled sample and real (tiny or offline) models."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli, load_all_commands
from ctir_es.sample import sample_path

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke the CLI in-process with a private config, cache and store."""
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CTIR_ES_STORE", str(tmp_path / "store.db"))
    for var in ("CTIR_ES_URL", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_MODEL", "CTIR_ES_CLIP_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def tiny_models(tiny_text_model_dir: Path, tiny_clip) -> list[str]:
    return ["--text-model", str(tiny_text_model_dir), "--clip-model", str(tiny_clip.config),
            "--clip-weights", str(tiny_clip.checkpoint)]


def test_sample_ingest_then_category_query(run, tiny_models: list[str]) -> None:
    out = run("ingest", "sample", "--json", *tiny_models)
    report = json.loads(out.stdout)
    assert report["read"] == report["indexed"] == report["store_count"] == 280
    assert report["rejected_total"] == 0 and report["images_missing_total"] == 0

    res = json.loads(run("query", "Kitchen & Dining > Cookware", "--json", "--k", "10").stdout)
    assert res["mode"] == "category" and res["sources"] == ["bm25", "text", "image"]
    assert [r["rank"] for r in res["results"]] == list(range(1, 11))
    in_subtree = [r for r in res["results"] if r["categories"][0][:2] == ["Kitchen & Dining", "Cookware"]]
    assert len(in_subtree) >= 8  # BM25 over the category field dominates a category query
    first = res["results"][0]
    assert set(first) == {"rank", "id", "title", "categories", "image", "score", "sources", "values"}
    assert "bm25" in first["sources"] and first["image"].endswith(".jpg")

    table = run("query", "Kitchen & Dining > Cookware", "--k", "3").stdout
    assert "category query" in table and "Kadhai" in table

    stats = json.loads(run("stats", "--json").stdout)
    assert stats["products"] == 280
    assert set(stats["vector_fields"]) == {"title_vector", "image_vector", "clip_title_vector"}
    assert stats["vector_fields"]["image_vector"]["count"] == 280


def test_image_query_and_filters(run, tiny_models: list[str]) -> None:
    run("ingest", "sample", *tiny_models)
    image = next((sample_path().parent / "images").glob("*.jpg"))
    res = json.loads(run("query", str(image), "--json", "--k", "10").stdout)  # an image file: image mode
    assert res["mode"] == "image" and res["sources"] == ["image", "clip_title"]
    # the product's own photo is the image source's first (the tiny CLIP's title votes are noise)
    nearest = next(r for r in res["results"] if r["sources"].get("image", {}).get("rank") == 1)
    assert nearest["image"].endswith(image.name)
    watches = json.loads(run("query", "steel", "--within", "Watches", "--json").stdout)
    assert watches["results"] and all(r["categories"][0][0] == "Watches" for r in watches["results"])


def test_reingest_updates_never_duplicates(run, tiny_text_model_dir: Path) -> None:
    args = ["ingest", "sample", "--json", "--text-model", str(tiny_text_model_dir), "--clip-weights", "none"]
    first = json.loads(run(*args).stdout)
    second = json.loads(run(*args).stdout)
    assert first["store_count"] == second["store_count"] == 280
    assert second["indexed"] == 280  # the completed run left no checkpoint: all re-read, upserted


def test_store_built_with_other_encoder_is_refused(run, tiny_text_model_dir: Path) -> None:
    run("ingest", "sample", "--text-model", str(tiny_text_model_dir), "--clip-weights", "none")
    result = run("ingest", "sample", "--clip-weights", "none", ok=False)  # default MiniLM: 384 dims
    assert result.exit_code == 1
    assert "does not match the encoders in use" in result.output and "dims" in result.output


def test_xmarket_mixed_lines_ingests_good_reports_bad_runs_nothing(
    run, tmp_path: Path, tiny_text_model_dir: Path
) -> None:
    marker = Path("/tmp") / f"ctir-pwned-{uuid.uuid4().hex}"
    lines = [
        json.dumps({"asin": "J1", "title": "JSON line blender", "categories": ["Home & Kitchen", "Blenders"]}),
        ("{'asin': 'P1', 'title': 'Python literal kettle', 'categories': ['Home & Kitchen', 'Kettles'], "
         "'imgUrl': '{}'}"),
        "{'asin': 'BAD', 'title': 'unterminated",
        f"__import__('os').system('touch {marker}')",
        "",
    ]
    source = tmp_path / "metadata_us_Home_and_Kitchen.json"
    source.write_text("\n".join(lines), encoding="utf-8")
    out = run("ingest", "xmarket", "--source", str(source), "--json", "--no-images",
              "--text-model", str(tiny_text_model_dir))
    report = json.loads(out.stdout)
    assert report["indexed"] == 2 and report["store_count"] == 2
    assert report["rejected_total"] == 2
    assert {r["location"].rsplit(":", 1)[-1] for r in report["rejections"]} == {"3", "4"}
    assert "unsafe_literal" in report["rejected"]
    assert not marker.exists()
    res = json.loads(run("query", "Home & Kitchen > Kettles", "--json").stdout)
    assert res["results"][0]["id"] == "P1"


def test_nothing_indexed_exits_non_zero(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no id"}\nnot json\n', encoding="utf-8")
    result = run("ingest", "jsonl", str(bad), "--text-model", "none", "--no-images", ok=False)
    assert result.exit_code == 1
    assert "nothing could be indexed" in result.output
    assert "missing_id" in result.output and "invalid_json" in result.output


def test_xmarket_download_fails_fast_offline(run, no_network: list[str]) -> None:
    start = time.monotonic()
    result = run("ingest", "xmarket", "--market", "us", "--category", "Home_and_Kitchen",
                 "--text-model", "none", "--no-images", ok=False)
    assert time.monotonic() - start < 10
    assert result.exit_code == 1
    assert "https://ciir.cs.umass.edu/downloads/XMarket/FULL/us/Home_and_Kitchen/" in result.output
    assert "--source" in result.output


def test_query_before_ingest_is_a_clear_error(run) -> None:
    result = run("query", "Kitchen > Blenders", ok=False)
    assert result.exit_code == 1 and "run `ctir-es ingest" in result.output


def _commands(group, prefix: str = "ctir-es") -> list[tuple[str, object]]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        out.append((full, cmd))
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, full))
    return out


load_all_commands()  # commands load lazily; the listing below wants every one


@pytest.mark.parametrize("name", [n for n, _ in _commands(cli)])
def test_every_command_has_help_and_is_documented(name: str) -> None:
    cmd = dict(_commands(cli))[name]
    assert (cmd.help or "").strip(), f"{name} has no help text"
    result = CliRunner().invoke(cli, [*name.split()[1:], "--help"])
    assert result.exit_code == 0
    readme = README.read_text(encoding="utf-8")
    assert re.search(re.escape(name) + r"\b", readme), f"README does not mention `{name}`"
