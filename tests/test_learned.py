"""The learned-model record ``ctir-es learn`` keeps with the index (``ctir_es.learned``): the
record, the products ingests write after it, and how ``ctir-es stats`` and ``GET /health`` show
it and its staleness - on the bundled sample (embedded store, tiny real text model); the record
is written by hand here."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_support import sample_search

from ctir_es.cli.main import cli
from ctir_es.errors import StoreError
from ctir_es.learned import (
    LEARNED_KEY,
    RETRAIN_HINT,
    SEEN_FILE,
    LearnedModel,
    learned_summary,
    load_learned,
    note_written,
    save_learned,
)
from ctir_es.products import format_category_path
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore


def record_json(model_dir: Path, **changes: object) -> dict:
    base = {
        "version": 1, "model": "sample-clip-ta", "path": str(model_dir), "variant": "clip-ta",
        "modalities": ["title", "attributes"], "created": "2026-11-26T00:00:00+00:00", "products": 280,
        "trained_products": 200, "categories_seen": 40, "written_since": 0,
        "metrics": {"before": {"P@10": 0.41, "hidden P@10": 0.12}, "after": {"P@10": 0.52, "hidden P@10": 0.33}},
        "kept": True,
    }
    return {**base, **changes}


@pytest.fixture
def sample(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[Search]:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    yield search
    search.close()


def write_seen(model_dir: Path, store: EmbeddedStore, drop: int = 0) -> int:
    """The model folder's seen list: the index's leaf paths (the nodes above a leaf are implied),
    less the last ``drop`` of them. Returns how many nodes of the index that leaves unseen."""
    model_dir.mkdir(parents=True, exist_ok=True)
    nodes = store.category_counts()
    leaves = sorted(n for n in nodes if not any(len(m) > len(n) and m[: len(n)] == n for m in nodes))
    kept = leaves[: len(leaves) - drop]
    (model_dir / SEEN_FILE).write_text(json.dumps([format_category_path(leaf) for leaf in kept]), encoding="utf-8")
    return sum(1 for n in nodes if not any(leaf[: len(n)] == n for leaf in kept))


# -- the record ---------------------------------------------------------------------------------


def test_record_round_trips_and_refuses_damage(tmp_path: Path) -> None:
    raw = record_json(tmp_path)
    record = LearnedModel.from_json(raw)
    assert record.modalities == ("title", "attributes") and record.metrics["after"]["P@10"] == 0.52
    assert LearnedModel.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert record.to_json() == raw
    for damage in ({"version": 2}, {"products": "many"}, {"model": ""}, {"modalities": "title"},
                   {"kept": "yes"}, {"written_since": -1}, {"metrics": {"after": {"P@10": "high"}}}):
        with pytest.raises(StoreError, match="ctir-es learn"):
            LearnedModel.from_json({**raw, **damage})
    with pytest.raises(StoreError):
        LearnedModel.from_json({"version": 1})


def test_save_load_and_count_written(sample: Search, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = sample.store
    assert load_learned(store) is None
    note_written(store, 5)  # no record: nothing to count, nothing stored
    assert store.get_metadata(LEARNED_KEY) is None  # type: ignore[attr-defined]

    save_learned(store, LearnedModel.from_json(record_json(tmp_path)))
    note_written(store, 7)
    note_written(store, 0)
    learned = load_learned(store)
    assert learned is not None and learned.written_since == 7

    # ingests count what they write (Search.index goes through the ingest pipeline)
    report = sample.index([{"id": f"new-{i}", "title": f"steel pressure cooker {i}",
                            "categories": [["Kitchen & Dining", "Cookware", "Pressure Cookers"]]} for i in range(3)])
    assert report.indexed == 3
    learned = load_learned(store)
    assert learned is not None and learned.written_since == 10

    # a damaged record never fails the ingest: it is logged and left alone
    store.put_metadata(LEARNED_KEY, {"version": 1, "model": "x"})  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="ctir_es.learned"):
        assert sample.index([{"id": "new-9", "title": "steel kadhai"}]).indexed == 1
    assert "not counted" in caplog.text and "not readable" in caplog.text
    with pytest.raises(StoreError, match="not readable"):
        load_learned(store)


def test_pipeline_counts_one_read_per_run(sample: Search, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_learned(sample.store, LearnedModel.from_json(record_json(tmp_path)))
    calls: list[str] = []
    get, put = sample.store.get_metadata, sample.store.put_metadata  # type: ignore[attr-defined]
    monkeypatch.setattr(sample.store, "get_metadata", lambda key: calls.append(f"get {key}") or get(key))
    monkeypatch.setattr(sample.store, "put_metadata", lambda key, value: calls.append(f"put {key}") or put(key, value))
    products = [{"id": f"n{i}", "title": f"blue cotton towel {i}"} for i in range(40)]
    from ctir_es.ingest.pipeline import IngestOptions

    assert sample.index(products, options=IngestOptions(batch_size=8)).indexed == 40  # 5 batches
    assert calls.count(f"get {LEARNED_KEY}") == 1 and calls.count(f"put {LEARNED_KEY}") == 1
    learned = load_learned(sample.store)
    assert learned is not None and learned.written_since == 40


# -- the summary, stats and /health -------------------------------------------------------------


def test_summary_says_when_the_model_is_stale(sample: Search, tmp_path: Path) -> None:
    store, schema = sample.store, sample.schema
    model_dir = tmp_path / "models" / "sample-clip-ta"
    assert learned_summary(store, schema)["status"] == "none"

    save_learned(store, LearnedModel.from_json(record_json(model_dir)))
    summary = learned_summary(store, schema)
    assert summary["unseen_categories"] is None  # no seen list (the folder is not there)
    assert summary["status"] == "in use" and not summary["stale"] and "hint" not in summary

    write_seen(model_dir, store)  # type: ignore[arg-type]
    summary = learned_summary(store, schema)
    assert summary["unseen_categories"] == 0 and summary["stale"] is False
    assert summary["model"] == "sample-clip-ta" and summary["created"] == "2026-11-26T00:00:00+00:00"
    assert summary["metrics"] == {"before": {"P@10": 0.41, "hidden P@10": 0.12},
                                  "after": {"P@10": 0.52, "hidden P@10": 0.33}}

    # a fifth of the products written since is still fine; more is stale
    note_written(store, 56)
    assert learned_summary(store, schema)["stale"] is False
    note_written(store, 1)
    summary = learned_summary(store, schema)
    assert summary["stale"] is True and summary["hint"] == RETRAIN_HINT and summary["status"] == "stale"
    assert summary["written_since"] == 57 and summary["written_share"] == pytest.approx(57 / 280, abs=1e-4)

    # categories the model never saw: stale however few products were written
    save_learned(store, LearnedModel.from_json(record_json(model_dir)))
    unseen = write_seen(model_dir, store, drop=2)  # type: ignore[arg-type]
    assert unseen >= 2
    summary = learned_summary(store, schema)
    assert summary["unseen_categories"] == unseen and summary["stale"] is True and summary["hint"] == RETRAIN_HINT

    # the held-out categories it never saw when it learned (learn's comparison slices) are not
    # news: a model just learned is not stale for them; one category more is
    save_learned(store, LearnedModel.from_json({**record_json(model_dir), "unseen_at_learn": unseen}))
    summary = learned_summary(store, schema)
    assert summary["unseen_categories"] == unseen and summary["unseen_at_learn"] == unseen
    assert summary["stale"] is False and summary["status"] == "in use" and "hint" not in summary
    save_learned(store, LearnedModel.from_json({**record_json(model_dir), "unseen_at_learn": unseen - 1}))
    assert learned_summary(store, schema)["stale"] is True

    # a damaged record is reported, not raised
    store.put_metadata(LEARNED_KEY, {"version": 7})  # type: ignore[attr-defined]
    damaged = learned_summary(store, schema)
    assert damaged["status"] == "unreadable" and "ctir-es learn" in damaged["note"]


def test_unseen_count_is_reused_by_health_for_a_while(sample: Search, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "m"
    save_learned(sample.store, LearnedModel.from_json(record_json(model_dir)))
    write_seen(model_dir, sample.store)  # type: ignore[arg-type]
    counts = []
    original = sample.store.category_counts  # type: ignore[attr-defined]
    monkeypatch.setattr(sample.store, "category_counts", lambda: counts.append(1) or original())
    for _ in range(3):
        learned_summary(sample.store, sample.schema, max_age=30)
    assert len(counts) == 1
    learned_summary(sample.store, sample.schema)  # stats: always counted afresh
    assert len(counts) == 2


def test_stats_and_health_show_the_learned_model(sample: Search, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from ctir_es.service.app import create_app

    model_dir = tmp_path / "models" / "sample-clip-ta"
    unseen = write_seen(model_dir, sample.store, drop=1)  # type: ignore[arg-type]
    save_learned(sample.store, LearnedModel.from_json(record_json(model_dir, written_since=100)))

    health = TestClient(create_app(sample)).get("/health").json()
    learned = health["learned"]
    assert learned["model"] == "sample-clip-ta" and learned["unseen_categories"] == unseen >= 1
    assert learned["written_since"] == 100 and learned["hint"] == RETRAIN_HINT
    assert learned["metrics"]["after"]["P@10"] == 0.52
    assert health["calibration"]["status"] == "none"  # next to the calibration summary

    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("CTIR_ES_URL", raising=False)
    store = tmp_path / "cli.db"
    sample.close()
    shutil.copyfile(tmp_path / "store.db", store)
    runner = CliRunner()
    out = runner.invoke(cli, ["stats", "--store", str(store), "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    stats = json.loads(out.stdout)["learned"]
    assert {k: stats[k] for k in ("model", "unseen_categories", "written_since", "stale", "hint")} == {
        "model": "sample-clip-ta", "unseen_categories": unseen, "written_since": 100, "stale": True, "hint": RETRAIN_HINT}
    human = runner.invoke(cli, ["stats", "--store", str(store)], catch_exceptions=False)
    assert human.exit_code == 0, human.output
    text = " ".join(human.stdout.split())  # rich wraps long lines
    assert "learned model: sample-clip-ta (clip-ta), stale" in text and "P@10 41.00 -> 52.00" in text
    assert f"100 products written (35.7%), {unseen} categories it never saw" in text
    assert f"hint: {RETRAIN_HINT}" in text
