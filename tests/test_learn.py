"""``ctir-es learn`` (issue 22): CLIP-ITA trained from the index itself, kept only if it wins,
written in place (resumably), and then served by every surface - on the bundled sample in the
embedded store with a tiny real text model, through the API, the CLI, HTTP, a kill -9, and on
the real Elasticsearch node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_support import encoders, sample_search
from store_support import checkpoint_of

from ctir_es.cli.main import cli
from ctir_es.config import Settings
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.learn import LEARNED_KEY, LearnConfig, learn
from ctir_es.learn.fill import JOB_KEY
from ctir_es.ranking.calibration import CALIBRATION_KEY
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.vocabulary import CLIP_ITA_SOURCE, CLIP_ITA_VECTOR

CATEGORY = "Kitchen & Dining > Cookware"
QUICK = LearnConfig(epochs=3, patience=2, force=True)  # a few epochs; kept whatever it scores


@pytest.fixture
def sample(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[tuple[Search, Settings]]:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    settings = Settings(store=tmp_path / "store.db", cache_dir=tmp_path / "cache")
    yield search, settings
    search.close()


def _clip_ita_ids(search: Search) -> set[str]:
    ids = search.store.ids()  # type: ignore[attr-defined]
    return set(search.store.vectors(ids, CLIP_ITA_VECTOR))  # type: ignore[attr-defined]


def test_learn_writes_the_model_in_place_and_every_surface_serves_it(sample: tuple[Search, Settings]) -> None:
    search, settings = sample
    report = learn(search, settings, QUICK)
    assert report.kept and report.written == 280
    assert set(report.queries) == {"visible", "hidden"}
    for view in report.queries.values():
        assert {"served", "before", "after", "bm25"} <= set(view)
        assert view["after"]["all"]["queries"] == view["after"]["seen"]["queries"] + view["after"]["unseen"]["queries"]
    assert "after" in report.categorize["top1_per_level"] and "served" in report.categorize["top1_per_level"]

    store = search.store
    assert CLIP_ITA_VECTOR in store.schema().vectors  # type: ignore[union-attr]
    assert _clip_ita_ids(search) == set(store.ids())  # type: ignore[attr-defined]
    calibration = store.get_metadata(CALIBRATION_KEY)  # type: ignore[attr-defined]
    assert CLIP_ITA_SOURCE in calibration["weights"]
    assert calibration["encoders"][CLIP_ITA_VECTOR] == report.model or CLIP_ITA_VECTOR in calibration["encoders"]
    record = store.get_metadata(LEARNED_KEY)  # type: ignore[attr-defined]
    assert record["model"] == report.model and record["kept"] and record["products"] == 280
    assert (Path(report.path) / "seen_categories.json").is_file()
    assert store.get_metadata(JOB_KEY) == {"done": True}  # type: ignore[attr-defined]

    # a fresh Search reads the model from the index: category queries fuse it with the
    # stored calibration, and categorize has its signal
    with Search.open(settings) as served:
        assert served.category_encoder is not None
        page = served.search(CATEGORY, k=10)
        # the weights of the query's group (seen, unseen, the seen roots) when it has its own, else
        # the single ones
        served_fusion = calibration.get("groups", {}).get(page.calibration_group, calibration)
        assert CLIP_ITA_SOURCE in page.sources and dict(page.weights) == served_fusion["weights"]
        assert page.fusion == served_fusion["method"]
        suggestion = served.categorize(id=store.ids()[0], k=3)  # type: ignore[attr-defined]
        assert any(s.name == "clip_ita" and s.weight > 0 for s in suggestion.signals)
        # products ingested later get the vector with no setting
        extra = [{"id": "later-1", "title": "Stainless steel pressure cooker 5 L",
                  "categories": [["Kitchen & Dining", "Cookware"]]}]
        assert served.index(extra).indexed == 1
        assert "later-1" in served.store.vectors(["later-1"], CLIP_ITA_VECTOR)  # type: ignore[attr-defined]


def test_a_model_that_does_not_win_changes_nothing(sample: tuple[Search, Settings]) -> None:
    search, settings = sample
    report = learn(search, settings, LearnConfig(epochs=1, patience=1))
    head = report.headline()
    assert report.kept == (head["after"] > max(head["served"], head["before"]))
    if not report.kept:
        assert CLIP_ITA_VECTOR not in search.store.schema().vectors  # type: ignore[union-attr]
        assert search.store.get_metadata(LEARNED_KEY) is None  # type: ignore[attr-defined]
        assert not _clip_ita_ids(search)
        assert "with the model" in report.reason


def test_learn_refuses_an_index_without_categories(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    from ctir_es.errors import StoreError
    from ctir_es.store.embedded import EmbeddedStore

    text, _ = encoders(tiny_text_model_dir, None)
    search = Search(EmbeddedStore(tmp_path / "bare.db"), text, None)
    search.index([{"id": f"p{i}", "title": f"thing {i}"} for i in range(60)])
    with pytest.raises(StoreError, match="have a category"):
        learn(search, Settings(store=tmp_path / "bare.db", cache_dir=tmp_path / "cache"), QUICK)
    search.close()


def test_cli_learn_then_stats_and_http_health(sample: tuple[Search, Settings], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    search, settings = sample
    search.close()
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(settings.cache_dir))
    runner = CliRunner()
    result = runner.invoke(cli, ["learn", "--store", str(settings.store), "--epochs", "2", "--force", "--json"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kept"] and report["written"] == 280 and "visible" in report["queries"]

    table = runner.invoke(cli, ["learn", "--store", str(settings.store), "--epochs", "1", "--force"],
                          catch_exceptions=False)
    assert table.exit_code == 0, table.output
    flat = " ".join(table.output.split())
    assert "categories removed" in flat and "categorize top-1 per level" in flat and ": kept" in flat

    stats = json.loads(runner.invoke(cli, ["stats", "--store", str(settings.store), "--json"]).output)
    assert stats["learned"]["model"].startswith("learned-")

    from fastapi.testclient import TestClient

    from ctir_es.service.app import create_app

    with Search.open(settings) as served:
        client = TestClient(create_app(served))
        health = client.get("/health").json()
        assert health["learned"]["model"] == stats["learned"]["model"]
        page = client.get("/search", params={"q": CATEGORY, "k": 10}).json()
        assert CLIP_ITA_SOURCE in page["sources"]
        assert [r["id"] for r in page["results"]] == [r.id for r in served.search(CATEGORY, k=10).results]


def test_kill_9_while_writing_then_learn_resumes(sample: tuple[Search, Settings]) -> None:
    search, settings = sample
    search.close()
    env = {**os.environ, "CTIR_ES_CACHE_DIR": str(settings.cache_dir), "CTIR_ES_CONFIG": str(settings.cache_dir / "x")}
    cmd = [sys.executable, "-m", "ctir_es.cli", "learn", "--store", str(settings.store), "--epochs", "2", "--force",
           "--write-chunk", "1", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while proc.poll() is None and checkpoint_of(settings.store, "checkpoint:learn:%") < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "learn finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written_before = checkpoint_of(settings.store, "checkpoint:learn:%")
    assert 20 <= written_before < 280

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["resumed"] and report["written"] == 280 - written_before  # no retraining, no rewrite
    with Search.open(settings) as served:
        assert _clip_ita_ids(served) == set(served.store.ids())  # type: ignore[attr-defined]
        assert CLIP_ITA_VECTOR in served.schema.vectors
        assert served.store.get_metadata(LEARNED_KEY)["model"] == report["model"]  # type: ignore[attr-defined]


@pytest.mark.integration
def test_learn_on_elasticsearch(make_store: Callable[..., ElasticsearchStore], tiny_text_model_dir: Path,
                                tmp_path: Path) -> None:
    text, _ = encoders(tiny_text_model_dir, None)
    store = make_store()
    search = Search(store, text, None)
    assert search.index(read_jsonl(sample_path(), IngestReport())).indexed == 280
    settings = Settings(es_url="http://unused", es_index=store.index, cache_dir=tmp_path / "cache")
    report = learn(search, settings, QUICK)
    assert report.kept and report.written == 280
    reopened = Search(make_store(store.index), text, None)
    assert CLIP_ITA_VECTOR in reopened.schema.vectors
    ids = reopened.store.ids()  # type: ignore[attr-defined]
    assert set(reopened.store.vectors(ids, CLIP_ITA_VECTOR)) == set(ids)  # type: ignore[attr-defined]
    assert reopened.store.get_metadata(LEARNED_KEY)["model"] == report.model  # type: ignore[attr-defined]
    leftovers = store.client.indices.get(index=f"{store.index}-calibration-*", allow_no_indices=True).body
    assert leftovers == {}


def test_a_group_without_queries_has_no_figure_and_the_record_stays_json() -> None:
    import json

    from ctir_es.calibrate import category_queries
    from ctir_es.learn.compare import query_figures
    from ctir_es.products import Product

    products = [Product.from_mapping({"id": f"p{i}", "title": f"t{i}", "categories": [["A", "B"]]}) for i in range(3)]
    piece = category_queries("report", products)
    run = {q: {p.id: 1.0 for p in products} for q in piece.nodes}
    figures = query_figures(piece, run, seen=set(piece.nodes.values()))  # every category seen
    assert figures["unseen"] == {"queries": 0} and figures["seen"]["precision@10"] > 0
    json.dumps(figures, allow_nan=False)  # what the job record's metadata needs


def test_held_out_slices_without_categories_are_refused_before_training(
        tmp_path: Path, tiny_text_model_dir: Path) -> None:
    """Uncategorised products that all fall in the comparison's slices: one clear line, and no
    minutes of training first (the benchmark's evaluation split once coincided with them)."""
    from ctir_es.calibrate import slice_spec
    from ctir_es.errors import StoreError
    from ctir_es.ingest.images import ImageLoader
    from ctir_es.products import Product
    from ctir_es.protocol import split_of
    from ctir_es.store.embedded import EmbeddedStore

    products = list(read_jsonl(sample_path(), IngestReport()))
    spec = slice_spec(len(products), QUICK.calibration())
    stripped = [Product.from_mapping({**p.to_json(), "categories": []}) if split_of(p.id, spec) != "train" else p
                for p in products]
    text, _ = encoders(tiny_text_model_dir, None)
    with Search(EmbeddedStore(tmp_path / "s.db"), text, None, ImageLoader()) as search:
        search.index(stripped)
        with pytest.raises(StoreError, match="held-out slices of seed 13 hold 0 tuning and 0 reporting"):
            learn(search, Settings(store=tmp_path / "s.db", cache_dir=tmp_path / "cache"), QUICK)
        assert not (tmp_path / "cache" / "learn-runs").exists()  # refused before any training
