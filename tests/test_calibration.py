"""Self-calibrated serving fusion (issue 13 item 5): the record, its search, where it is kept,
and serving with it - on the bundled sample in the embedded store (tiny real text model) and on
the real Elasticsearch node."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_support import encoders, sample_search
from store_support import copy_vectors

from ctir_es.calibrate import (
    CalibrationConfig,
    Candidate,
    QuerySlice,
    calibrate,
    category_queries,
    copy_index,
    held_out_slices,
    scratch_store,
    search_fusion,
    weight_vectors,
)
from ctir_es.cli.main import cli
from ctir_es.errors import ConfigError, StoreError
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product
from ctir_es.ranking import calibration as cal_mod
from ctir_es.ranking.calibration import (
    CALIBRATION_KEY,
    Calibration,
    calibration_summary,
    load_calibration,
    save_calibration,
    served_defaults,
)
from ctir_es.sample import sample_path
from ctir_es.schema import Hit
from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.embedded import EmbeddedStore

CATEGORY = "Kitchen & Dining > Cookware"


@pytest.fixture
def sample(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[Search]:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    yield search
    search.close()


def record(**changes: object) -> Calibration:
    base = Calibration(
        method="linear", weights={"bm25": 1.0, "text": 0.2}, metric="precision@10",
        figures={"bm25": {"precision@10": 0.5}, "text": {"precision@10": 0.3},
                 "default": {"precision@10": 0.4}, "calibrated": {"precision@10": 0.5}},
        sizes={"report_products": 10, "report_queries": 20}, encoders={"title_vector": "enc@1"},
        created="2026-11-26T00:00:00+00:00",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the record


def test_record_round_trips_and_refuses_damage() -> None:
    cal = record()
    assert Calibration.from_json(json.loads(json.dumps(cal.to_json()))) == cal
    for damage in ({"method": "borda"}, {"weights": {"bm25": -1}}, {"weights": {}}, {"version": 99}):
        with pytest.raises(StoreError, match="calibrate"):
            Calibration.from_json({**cal.to_json(), **damage})
    with pytest.raises(StoreError):
        Calibration.from_json({"version": 1})


def test_weights_apply_only_to_the_sources_calibrated() -> None:
    cal = record()
    assert cal.weights_for(["text", "bm25"]) == {"text": 0.2, "bm25": 1.0}
    assert cal.weights_for(["bm25"]) is None  # the text encoder did not load: fixed defaults
    assert cal.weights_for(["bm25", "text", "image"]) is None


# ---------------------------------------------------------------- the search (pure)


def test_weight_grid_is_scale_free() -> None:
    assert len(weight_vectors(["bm25", "text"])) == 13
    assert len(weight_vectors(["bm25", "text", "image"])) == 127
    assert all(max(w) == 1.0 for w in weight_vectors(["a", "b", "c"]))


def _slice(runs: dict[str, dict[str, list[str]]], qrels: dict[str, dict[str, int]]) -> QuerySlice:
    piece = QuerySlice("t", [], {q: tuple(q.split(" > ")) for q in qrels}, qrels)
    piece.runs = {q: {s: [Hit(d, 1.0 / (i + 1)) for i, d in enumerate(docs)] for s, docs in per.items()}
                  for q, per in runs.items()}
    return piece


def test_search_prefers_the_source_that_finds_the_relevant_products() -> None:
    # bm25 puts 10 wrong products first on every query, text finds the relevant ones
    qrels = {f"A > Q{i}": {f"r{i}-{j}": 1 for j in range(5)} for i in range(6)}
    runs = {q: {"bm25": [f"x{j}" for j in range(10)] + list(rel), "text": list(rel) + [f"x{j}" for j in range(10)]}
            for q, rel in qrels.items()}
    piece = _slice(runs, qrels)
    default = Candidate("rrf", (("bm25", 1.0), ("text", 0.3)))
    best, tried, how = search_fusion(piece, ["bm25", "text"], default)
    scores = dict(tried)
    assert scores[best]["precision@10"] == 0.5 > scores[default]["precision@10"]
    assert best.weight_map["text"] == 1.0 and best.weight_map["bm25"] < 1.0
    assert "exhaustive grid" in how and len(tried) == 26  # the default is also a grid point


def test_ties_keep_the_fixed_default() -> None:
    qrels = {"A": {"d1": 1}}
    piece = _slice({"A": {"bm25": ["d1", "d2"], "text": ["d1", "d2"]}}, qrels)  # every fusion is perfect
    default = Candidate("rrf", (("bm25", 1.0), ("text", 0.3)))
    best, _, _ = search_fusion(piece, ["bm25", "text"], default)
    assert best == default


def test_coordinate_ascent_beyond_the_exhaustive_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctir_es import calibrate as calibration_search

    monkeypatch.setattr(calibration_search, "MAX_EXHAUSTIVE", 5)
    qrels = {"A": {"good": 1}}
    piece = _slice({"A": {"bm25": ["bad", "good"], "text": ["bad", "good"], "image": ["good"]}}, qrels)
    default = Candidate("rrf", (("bm25", 1.0), ("text", 0.3), ("image", 0.3)))
    best, tried, how = search_fusion(piece, ["bm25", "text", "image"], default)
    assert "coordinate ascent" in how and len(tried) < 2 * 127
    assert dict(tried)[best]["map_min@10"] == 1.0  # it found a fusion that puts "good" first


# ---------------------------------------------------------------- slices and queries


def test_queries_cover_every_level_with_subtree_relevance() -> None:
    products = [Product("1", "a", (("A", "B", "C"),)), Product("2", "b", (("A", "B"),)), Product("3", "c", (("D",),))]
    piece = category_queries("x", products)
    assert piece.qrels == {"A": {"1": 1, "2": 1}, "A > B": {"1": 1, "2": 1}, "A > B > C": {"1": 1}, "D": {"3": 1}}
    assert set(category_queries("x", products, max_level=1).qrels) == {"A", "D"}


def test_slices_are_disjoint_seeded_and_capped(sample: Search) -> None:
    tune, report, total = held_out_slices(sample.store, CalibrationConfig())
    assert total == 280 and not {p.id for p in tune} & {p.id for p in report}
    assert 0.3 * 280 < len(tune) + len(report) < 0.5 * 280
    again = held_out_slices(sample.store, CalibrationConfig())
    assert [p.id for p in again[0]] == [p.id for p in tune]
    other = held_out_slices(sample.store, CalibrationConfig(seed=14))
    assert [p.id for p in other[0]] != [p.id for p in tune]
    small = held_out_slices(sample.store, CalibrationConfig(max_products=40))
    assert len(small[0]) + len(small[1]) < 70


# ---------------------------------------------------------------- on the sample, embedded


def test_calibrate_store_and_serve(sample: Search, caplog: pytest.LogCaptureFixture) -> None:
    report = calibrate(sample, CalibrationConfig())
    cal = report.calibration
    assert set(cal.figures) == {"bm25", "text", "default", "calibrated", "ideal"}
    assert cal.sizes["tune_products"] and cal.sizes["report_products"] and cal.sizes["report_queries"]
    assert "disjoint" in cal.settings["slices"] and cal.encoders == {
        "title_vector": sample.schema.vectors["title_vector"].encoder["id"]}
    # the default is one of the candidates, so on the tuning slice the pick is never worse
    tuned = {t["fusion"]: t["P@10"] for t in report.tried}
    assert cal.figures["calibrated"]["tuning_precision@10"] >= tuned.get("rrf bm25=1 text=0.3", 0.0)
    assert cal.figures["ideal"]["precision@10"] >= max(f["precision@10"] for f in cal.figures.values())

    assert served_defaults(sample.store, sample.schema) is None
    plain = sample.search(CATEGORY)
    assert plain.fusion == "rrf" and dict(plain.weights) == {"bm25": 1.0, "text": 0.3}

    chosen = replace(cal, method="linear", weights={"bm25": 0.2, "text": 1.0})  # visibly not the default
    save_calibration(sample.store, chosen)
    assert load_calibration(sample.store, sample.schema) == (chosen, None)
    served = sample.search(CATEGORY)
    assert served.fusion == "linear" and dict(served.weights) == {"bm25": 0.2, "text": 1.0}
    assert sample.search(CATEGORY, fusion="rrf").weights == {"bm25": 1.0, "text": 0.3}  # explicit wins
    assert dict(sample.search(CATEGORY, weights={"text": 0.5}).weights) == {"bm25": 1.0, "text": 0.5}
    assert sample.search("steel water bottle", mode="text").fusion == "rrf"  # text queries unchanged
    summary = calibration_summary(sample.store, sample.schema)
    assert summary["status"] == "in force" and summary["method"] == "linear"

    # a calibration measured with other encoders is ignored, with a notice, until re-run
    stale = replace(chosen, encoders={"title_vector": "another-model@0"})
    save_calibration(sample.store, stale)
    with caplog.at_level(logging.WARNING, logger="ctir_es.ranking.calibration"):
        assert sample.search(CATEGORY).weights == {"bm25": 1.0, "text": 0.3}
    assert "encoders changed" in caplog.text and "another-model@0" in caplog.text
    assert calibration_summary(sample.store, sample.schema)["status"] == "ignored"


def test_served_record_is_cached_per_store(sample: Search, monkeypatch: pytest.MonkeyPatch) -> None:
    save_calibration(sample.store, record(encoders={"title_vector": sample.schema.vectors["title_vector"].encoder["id"]}))
    reads = []
    original = sample.store.get_metadata
    monkeypatch.setattr(sample.store, "get_metadata", lambda key: reads.append(key) or original(key))
    for _ in range(3):
        assert sample.search(CATEGORY).fusion == "linear"
    assert len(reads) == 1
    monkeypatch.setattr(cal_mod, "CACHE_SECONDS", 0.0)
    sample.search(CATEGORY)
    assert len(reads) == 2


def test_hidden_categories_copy_and_measure(sample: Search) -> None:
    hide = {"a", "b"}
    ids = sample.store.ids()[:3]
    with scratch_store(sample.store) as scratch:
        assert copy_index(sample.store, scratch, sample.schema, set(ids[:2]) | hide) == 280
        copied = scratch.get(ids)
        original = sample.store.get(ids)
        assert [copied[i].product.categories for i in ids[:2]] == [(), ()]
        assert copied[ids[2]].product.categories == original[ids[2]].product.categories
        v1 = scratch.vectors(ids, "title_vector")
        v2 = sample.store.vectors(ids, "title_vector")
        assert all((v1[i] == v2[i]).all() for i in ids)
        path = Path(scratch.path)  # type: ignore[attr-defined]
    assert not path.exists()  # the scratch copy is deleted

    cal = calibrate(sample, CalibrationConfig(hide_categories=True)).calibration
    hidden = cal.hidden
    assert hidden is not None and hidden["hidden_products"] == cal.sizes["tune_products"] + cal.sizes["report_products"]
    assert set(hidden["figures"]) == {"bm25", "text", "default", "calibrated", "tuned_on_hidden"}
    # vectors never see categories: the text source ranks the same with them hidden
    assert hidden["figures"]["text"] == cal.figures["text"]
    # the category field is what BM25 loses
    assert hidden["figures"]["bm25"]["map_min@10"] < cal.figures["bm25"]["map_min@10"]


def test_tune_for_hidden_or_both(sample: Search) -> None:
    with pytest.raises(ConfigError, match="supported: visible, hidden, both"):
        CalibrationConfig(tune_for="everything")
    cal = calibrate(sample, CalibrationConfig(tune_for="hidden")).calibration
    assert cal.hidden is not None  # tuning on hidden products measures them too
    assert {"method": cal.method, "weights": dict(cal.weights)} == cal.hidden["tuned_on_hidden"]
    assert cal.settings["tune_for"] == "hidden" and "tuned for hidden" in cal.search
    both = calibrate(sample, CalibrationConfig(tune_for="both")).calibration
    assert both.hidden is not None and both.settings["tune_for"] == "both"


def test_an_index_without_categories_cannot_be_calibrated(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    text, _ = encoders(tiny_text_model_dir, None)
    search = Search(EmbeddedStore(tmp_path / "plain.db"), text, None)
    search.index([{"id": f"p{i}", "title": f"steel bottle {i}"} for i in range(40)])
    with pytest.raises(StoreError, match="too few categorised products"):
        calibrate(search, CalibrationConfig(held_out=1.0))
    search.close()


# ---------------------------------------------------------------- CLI


def test_cli_calibrate_and_stats(tmp_path: Path, sample: Search, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("CTIR_ES_URL", raising=False)
    store = tmp_path / "cli.db"
    sample.close()
    shutil.copyfile(tmp_path / "store.db", store)
    copy_vectors(tmp_path / "store.db", store)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    assert json.loads(run("stats", "--store", str(store), "--json"))["calibration"]["status"] == "none"
    dry = json.loads(run("calibrate", "--store", str(store), "--json", "--dry-run"))
    assert dry["stored"] is False and dry["calibration"]["method"] in ("rrf", "linear")
    assert json.loads(run("stats", "--store", str(store), "--json"))["calibration"]["status"] == "none"

    table = " ".join(run("calibrate", "--store", str(store)).split())  # rich wraps lines
    assert "OTHER products" in table and "│ calibrated │" in table and "│ default │" in table
    assert "Stored with the index" in table
    shown = " ".join(run("stats", "--store", str(store)).split())
    assert "calibration: " in shown and "calibrated vs" in shown and "fixed default" in shown

    assert "--held-out" in run("calibrate", "--store", str(store), "--held-out", "0", code=2)
    missing = run("calibrate", "--store", str(tmp_path / "empty.db"), code=1)
    assert "nothing indexed yet" in missing and "Traceback" not in missing


# ---------------------------------------------------------------- Elasticsearch


@pytest.mark.integration
def test_calibrate_on_elasticsearch(make_store: Callable[..., ElasticsearchStore], tiny_text_model_dir: Path) -> None:
    text, _ = encoders(tiny_text_model_dir, None)
    store = make_store()
    search = Search(store, text, None)
    assert search.index(read_jsonl(sample_path(), IngestReport())).indexed == 280
    report = calibrate(search, CalibrationConfig(hide_categories=True))
    cal = report.calibration
    assert cal.hidden is not None and cal.hidden["figures"]["text"] == cal.figures["text"]
    leftovers = store.client.indices.get(index=f"{store.index}-calibration-*", allow_no_indices=True).body
    assert leftovers == {}  # the scratch copy was dropped
    save_calibration(store, replace(cal, method="linear", weights={"bm25": 0.3, "text": 1.0}))
    reopened = Search(make_store(store.index), text, None)
    served = reopened.search(CATEGORY)
    assert served.fusion == "linear" and dict(served.weights) == {"bm25": 0.3, "text": 1.0}
    assert store.get_metadata(CALIBRATION_KEY)["method"] == "linear"  # type: ignore[index]


def test_embedded_scratch_store_keeps_the_lexical_engine(sample: Search) -> None:
    sample.store.count()  # opens the file
    with scratch_store(sample.store) as scratch:
        assert isinstance(scratch, EmbeddedStore) and scratch.vector_index == sample.store.vector_index  # type: ignore[attr-defined]


def test_http_serves_the_calibration_and_shows_it(sample: Search) -> None:
    from fastapi.testclient import TestClient

    from ctir_es.service.app import create_app

    save_calibration(sample.store, record(weights={"bm25": 0.2, "text": 1.0},
                                          encoders={"title_vector": sample.schema.vectors["title_vector"].encoder["id"]}))
    client = TestClient(create_app(sample))
    served = client.get("/search", params={"q": CATEGORY}).json()
    assert served["fusion"] == "linear" and served["weights"] == {"bm25": 0.2, "text": 1.0}
    explicit = client.get("/search", params={"q": CATEGORY, "fusion": "rrf"}).json()
    assert explicit["fusion"] == "rrf" and explicit["weights"] == {"bm25": 1.0, "text": 0.3}
    health = client.get("/health").json()["calibration"]
    assert health["status"] == "in force" and health["method"] == "linear"
    assert client.get(f"/products/{served['results'][0]['id']}/similar").status_code == 200
