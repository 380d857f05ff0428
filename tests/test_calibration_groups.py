"""Fusion weights per group of category queries (issue 22 part 4): categories the served CLIP-ITA
model saw in training and the others. The choice on hand-built slices (the guard, the fallback
of a small group, no groups without a model), the record (old records load), and serving after
a real ``learn`` on the bundled sample (embedded store, tiny real text model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import sample_search

from ctir_es.calibrate import (
    CalibrationConfig,
    Measured,
    QuerySlice,
    calibrate,
    choose,
    served_pick,
)
from ctir_es.config import Settings
from ctir_es.errors import StoreError
from ctir_es.learn import LearnConfig, learn
from ctir_es.ranking.calibration import (
    CALIBRATION_KEY,
    MIN_GROUP_QUERIES,
    Calibration,
    calibration_summary,
    query_group,
    save_calibration,
)
from ctir_es.schema import Hit
from ctir_es.search import Search
from ctir_es.vocabulary import CLIP_ITA_SOURCE

SOURCES = ["bm25", "text", "clip_ita"]
DEFAULTS = {"bm25": 1.0, "text": 0.3, "clip_ita": 0.3}
ENCODERS = {"clip_ita": "model@1", "title_vector": "enc@1"}
SEEN = {("Seen",), *{("Seen", f"S{i}") for i in range(40)}}


def _slice(name: str, seen_queries: int, unseen_queries: int, *, tie: bool = False,
           groups: tuple[tuple[str, int, str], ...] | None = None) -> QuerySlice:
    """Seen queries: only clip_ita finds their 5 products (first, then 30 wrong ones; bm25 and text
    list the wrong ones only, so any weight on them lifts the wrong ones). Unseen queries: only
    bm25 does. ``tie``: every source ranks alike (any weights tie). ``groups``: other
    ``(query prefix, count, the source that finds them)`` instead."""
    nodes: dict[str, tuple[str, ...]] = {}
    qrels: dict[str, dict[str, int]] = {}
    runs: dict[str, dict[str, list[Hit]]] = {}
    for group, count, good in groups or (("Seen > S", seen_queries, "clip_ita"), ("New > U", unseen_queries, "bm25")):
        for i in range(count):
            qid = f"{group}{i}"
            nodes[qid] = tuple(qid.split(" > "))
            rel = [f"{name}-{qid}-r{j}" for j in range(5)]
            qrels[qid] = dict.fromkeys(rel, 1)
            wrong = [f"{name}-{qid}-x{j}" for j in range(30)]
            found, missed = rel + wrong, wrong
            # scores linear in the rank: a weight above ~0.2 on a bad source lifts 6 wrong ones
            # over the fifth relevant one, in either fusion, so no single weights serve both groups
            runs[qid] = {s: [Hit(d, 100.0 - r) for r, d in enumerate(found if tie or s == good else missed)]
                         for s in SOURCES}
    return QuerySlice(name, [], nodes, qrels, runs)


def _measured(seen_queries: int, unseen_queries: int, *, tie: bool = False,
              sources: list[str] | None = None, groups: tuple[tuple[str, int, str], ...] | None = None) -> Measured:
    names = sources or SOURCES
    pieces = []
    for name in ("tune", "report"):
        piece = _slice(name, seen_queries, unseen_queries, tie=tie, groups=groups)
        piece.runs = {q: {s: r[s] for s in names} for q, r in piece.runs.items()}
        pieces.append(piece)
    return Measured(CalibrationConfig(), pieces[0], pieces[1], list(names), {s: DEFAULTS[s] for s in names}, 100)


# ---------------------------------------------------------------- the choice (pure)


def test_query_group_is_distance_to_the_seen_categories() -> None:
    assert query_group(("Seen", "S3"), SEEN) == "seen"
    assert query_group(("Seen", "S3", "Leaf"), SEEN) == "unseen"  # a new leaf under a seen node
    assert query_group(("New",), SEEN) == "unseen"
    assert query_group(("Seen",), SEEN) == "seen_root"  # a seen root: the broadest queries
    assert query_group(("Seen",), None) is None  # no seen list: no group


# roots R0..R5 (seen) that only clip_ita finds, below them 12 seen nodes that only bm25 finds
ROOTS_SEEN = {*SEEN, *{(f"R{i}",) for i in range(6)}, *{("Seen", f"B{i}") for i in range(12)}}


def test_seen_roots_get_their_own_weights_only_when_they_clearly_win() -> None:
    roots_differ = (("Seen > B", 12, "bm25"), ("R", 6, "clip_ita"))
    cal = choose(_measured(0, 0, groups=roots_differ), ENCODERS, seen=ROOTS_SEEN).calibration
    assert cal.settings["groups"]["tuning_queries"] == {"seen": 12, "seen_root": 6}
    seen, roots = cal.groups["seen"], cal.groups["seen_root"]
    assert seen["weights"]["bm25"] == 1.0 > seen["weights"]["clip_ita"]
    assert roots["weights"]["clip_ita"] == 1.0 > roots["weights"]["bm25"]  # 6 queries, under MIN_GROUP_QUERIES
    assert "clearly better" in roots["admitted"] and roots["tuning_queries"] == 6 < MIN_GROUP_QUERIES
    assert cal.fusion_for(SOURCES, "seen_root") == (roots["method"], roots["weights"], "seen_root")
    assert served_pick(cal, SOURCES, DEFAULTS, ROOTS_SEEN)(("R1",)) == (roots["method"], roots["weights"])

    # roots that every source ranks alike: no clear win, so they are served the seen weights
    roots_tie = (("Seen > B", 12, "bm25"), ("R", 6, "bm25"))
    same = choose(_measured(0, 0, groups=roots_tie), ENCODERS, seen=ROOTS_SEEN).calibration
    assert set(same.groups) == {"seen"} and same.settings["groups"]["tuning_queries"]["seen_root"] == 6
    assert same.fusion_for(SOURCES, "seen_root") == (same.groups["seen"]["method"], same.groups["seen"]["weights"],
                                                     "seen")
    assert served_pick(same, SOURCES, DEFAULTS, ROOTS_SEEN)(("R1",)) == (
        same.groups["seen"]["method"], same.groups["seen"]["weights"])


def test_each_group_gets_the_weights_that_find_its_products() -> None:
    cal = choose(_measured(12, 12), ENCODERS, seen=SEEN).calibration
    seen, unseen = cal.groups["seen"], cal.groups["unseen"]
    assert seen["weights"]["clip_ita"] == 1.0 > max(seen["weights"]["bm25"], seen["weights"]["text"])
    assert unseen["weights"]["bm25"] == 1.0 > max(unseen["weights"]["clip_ita"], unseen["weights"]["text"])
    assert seen["tuning_queries"] == unseen["tuning_queries"] == 12
    assert seen["tuning_precision@10"] == unseen["tuning_precision@10"] == 0.5  # R = 5: the ceiling
    # the single weights cannot serve both groups: the grouped fusion (as served) beats them
    assert cal.value("calibrated") == 0.5 > cal.value("calibrated_single")  # type: ignore[operator]
    assert cal.settings["groups"]["tuning_queries"] == {"seen": 12, "unseen": 12}
    served = served_pick(cal, SOURCES, DEFAULTS, SEEN)
    assert served(("Seen", "S1")) == (seen["method"], seen["weights"])
    assert served(("New", "U1")) == (unseen["method"], unseen["weights"])
    assert served(("Seen", "S1"))[1] != served(("New", "U1"))[1]


def test_unseen_ties_go_to_bm25_and_seen_ties_to_the_default() -> None:
    cal = choose(_measured(12, 12, tie=True), ENCODERS, seen=SEEN).calibration
    assert cal.groups["unseen"]["weights"] == {"bm25": 1.0, "text": 0.0, "clip_ita": 0.0}  # the guard
    assert (cal.groups["seen"]["method"], cal.groups["seen"]["weights"]) == ("rrf", DEFAULTS)


def test_a_group_with_too_few_tuning_queries_is_served_the_single_weights() -> None:
    cal = choose(_measured(12, MIN_GROUP_QUERIES - 1), ENCODERS, seen=SEEN).calibration
    assert set(cal.groups) == {"seen"}
    assert cal.settings["groups"]["tuning_queries"] == {"seen": 12, "unseen": MIN_GROUP_QUERIES - 1}
    assert cal.fusion_for(SOURCES, "unseen") == (cal.method, dict(cal.weights), "all")
    assert cal.fusion_for(SOURCES, "seen")[2] == "seen"  # type: ignore[index]


def test_no_groups_without_a_trained_model_or_its_seen_list() -> None:
    no_model = choose(_measured(12, 12, sources=["bm25", "text"]), {"title_vector": "enc@1"}, seen=SEEN)
    assert no_model.calibration.groups == {} and "groups" not in no_model.calibration.settings
    assert "groups" not in no_model.calibration.to_json()
    no_list = choose(_measured(12, 12), ENCODERS, seen=None).calibration
    assert no_list.groups == {} and "calibrated_single" not in no_list.figures


# ---------------------------------------------------------------- the record


OLD_RECORD = {  # as the calibration wrote it before groups (same version, no "groups" key)
    "version": 1, "mode": "category", "method": "linear", "weights": {"bm25": 1.0, "text": 0.2, "clip_ita": 0.5},
    "metric": "precision@10", "figures": {"calibrated": {"precision@10": 0.5}, "default": {"precision@10": 0.4}},
    "sizes": {"report_products": 10, "report_queries": 20}, "encoders": ENCODERS,
    "created": "2026-11-26T00:00:00+00:00", "search": "exhaustive grid", "default": {}, "hidden": None,
    "settings": {"tune_for": "visible"},
}


def test_an_old_record_loads_and_serves_its_single_weights_to_every_group() -> None:
    cal = Calibration.from_json(OLD_RECORD)
    assert cal.groups == {}
    for group in ("seen", "unseen", None):
        assert cal.fusion_for(SOURCES, group) == ("linear", OLD_RECORD["weights"], "all")
    assert cal.to_json() == OLD_RECORD  # written back unchanged


def test_group_entries_round_trip_and_damage_is_refused() -> None:
    cal = choose(_measured(12, 12), ENCODERS, seen=SEEN).calibration
    assert Calibration.from_json(json.loads(json.dumps(cal.to_json()))) == cal
    good = cal.to_json()["groups"]
    for damage in ({"seen": {**good["seen"], "weights": {"bm25": 1.0}}},  # not the calibrated sources
                   {"seen": {**good["seen"], "method": "borda"}},
                   {"seen": {**good["seen"], "weights": dict.fromkeys(SOURCES, 0.0)}},
                   {"elsewhere": good["seen"]}):
        with pytest.raises(StoreError, match="calibrate"):
            Calibration.from_json({**cal.to_json(), "groups": damage})


# ---------------------------------------------------------------- serving, after a real learn


@pytest.fixture
def sample(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[tuple[Search, Settings]]:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    settings = Settings(store=tmp_path / "store.db", cache_dir=tmp_path / "cache")
    yield search, settings
    search.close()


def test_served_queries_use_their_groups_weights_after_learn(sample: tuple[Search, Settings]) -> None:
    search, settings = sample
    report = learn(search, settings, LearnConfig(epochs=3, patience=2, force=True))
    assert report.kept
    for view in report.queries.values():  # "after" is the grouped fusion; the single one is kept beside it
        assert {"after", "after_single"} <= set(view)
    stored = search.store.get_metadata(CALIBRATION_KEY)  # type: ignore[attr-defined]
    counts = stored["settings"]["groups"]["tuning_queries"]
    assert sum(counts.values()) == stored["sizes"]["tune_queries"]
    big = {g for g, n in counts.items() if n >= MIN_GROUP_QUERIES}
    assert big <= set(stored.get("groups", {}))  # a smaller group is only there when it clearly won
    assert all("admitted" in stored["groups"][g] for g in set(stored.get("groups", {})) - big)
    seen_file = json.loads((Path(report.path) / "seen_categories.json").read_text(encoding="utf-8"))
    seen_query, unseen_query = next(q for q in seen_file if " > " in q), "Never Trained > On This"

    with Search.open(settings) as served:
        assert served.served_seen() is not None and tuple(seen_query.split(" > ")) in served.served_seen()
        # the learned record's own groups: a group without weights is served the single ones
        page = served.search(seen_query, mode="category", k=5)
        assert page.calibration_group == ("seen" if "seen" in stored.get("groups", {}) else "all")

        # a calibration whose groups differ: each query is served its group's weights
        cal = Calibration.from_json(stored)
        groups = {"seen": {"method": "rrf", "weights": {s: (1.0 if s == CLIP_ITA_SOURCE else 0.1) for s in cal.weights}},
                  "unseen": {"method": "linear", "weights": {s: (1.0 if s == "bm25" else 0.0) for s in cal.weights}}}
        save_calibration(served.store, Calibration.from_json({**stored, "groups": groups}))
        seen_page, unseen_page = served.search(seen_query, mode="category", k=5), served.search(unseen_query, mode="category", k=5)
        assert (seen_page.fusion, dict(seen_page.weights), seen_page.calibration_group) == (
            "rrf", groups["seen"]["weights"], "seen")
        assert (unseen_page.fusion, dict(unseen_page.weights), unseen_page.calibration_group) == (
            "linear", groups["unseen"]["weights"], "unseen")
        assert unseen_page.to_json()["calibration_group"] == "unseen"
        assert served.search(seen_query, mode="category", k=5, weights={"bm25": 1.0}).calibration_group is None  # the caller's
        assert calibration_summary(served.store, served.schema)["groups"]["unseen"]["method"] == "linear"

        from fastapi.testclient import TestClient

        from ctir_es.service.app import create_app

        body = TestClient(create_app(served)).get("/search", params={"q": unseen_query, "mode": "category"}).json()
        assert body["calibration_group"] == "unseen" and body["weights"] == groups["unseen"]["weights"]

        # `ctir-es calibrate` on the learned index tunes the groups again (the served model's seen list)
        again = calibrate(served).calibration
        assert again.settings["groups"]["tuning_queries"] == counts


def test_an_old_record_is_served_to_every_query(sample: tuple[Search, Settings]) -> None:
    search, _ = sample
    sources = search.plan("Kitchen & Dining > Cookware", mode="category").sources
    old = {**OLD_RECORD, "weights": dict.fromkeys(sources, 0.5) | {"bm25": 1.0},
           "encoders": {name: str(f.encoder.get("id", "")) for name, f in sorted(search.schema.vectors.items())}}
    search.store.put_metadata(CALIBRATION_KEY, old)  # type: ignore[attr-defined]
    page = search.search("Kitchen & Dining > Cookware", k=5)
    assert (page.fusion, dict(page.weights), page.calibration_group) == ("linear", old["weights"], "all")
