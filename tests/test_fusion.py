"""Fusion: RRF and min-max linear, checked by hand and against ranx's implementation."""

from __future__ import annotations

import pytest

from ctir_es.errors import QueryError
from ctir_es.ranking.fusion import FUSIONS, fuse, linear, minmax, rrf
from ctir_es.schema import Hit

BM25 = [Hit("a", 12.0), Hit("b", 8.0), Hit("c", 2.0)]
KNN = [Hit("c", 0.9), Hit("a", 0.5), Hit("d", 0.1)]


def test_rrf_by_hand() -> None:
    fused = rrf({"bm25": BM25, "text": KNN}, k=60)
    scores = {h.id: h.score for h in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    assert fused[0].sources["bm25"].rank == 1 and fused[0].sources["text"].rank == 2
    assert fused[0].sources["bm25"].score == 12.0


def test_rrf_matches_ranx() -> None:
    ranx = pytest.importorskip("ranx")
    runs = {"bm25": BM25, "text": KNN}
    ours = {h.id: h.score for h in rrf(runs, k=60)}
    ranx_runs = [ranx.Run({"q": {h.id: h.score for h in hits}}) for hits in runs.values()]
    theirs = ranx.fuse(runs=ranx_runs, method="rrf", params={"k": 60}).to_dict()["q"]
    assert set(ours) == set(theirs)
    for pid, score in ours.items():
        assert score == pytest.approx(theirs[pid], abs=1e-9)


def test_linear_minmax() -> None:
    fused = linear({"bm25": BM25, "text": KNN}, {"bm25": 0.3, "text": 0.7})
    scores = {h.id: h.score for h in fused}
    assert scores["a"] == pytest.approx(0.3 * 1.0 + 0.7 * 0.5)
    assert scores["c"] == pytest.approx(0.3 * 0.0 + 0.7 * 1.0)
    assert scores["d"] == pytest.approx(0.0)
    assert fused[0].id == "c"
    assert fused[0].sources["text"].normalised == pytest.approx(1.0)


def test_minmax_constant_list_keeps_raw_scores_as_elasticsearch() -> None:
    """Elasticsearch's linear retriever (MinMaxScoreNormalizer): equal scores are kept as they
    are, NaN becomes 0 - client-side linear fusion must rank as the server would."""
    assert minmax([Hit("x", 3.0), Hit("y", 3.0)]) == {"x": 3.0, "y": 3.0}
    assert minmax([Hit("x", 0.8)]) == {"x": 0.8}
    assert minmax([Hit("x", 2.0), Hit("y", 2.0 + 5e-7)]) == {"x": 2.0, "y": 2.0 + 5e-7}
    assert minmax([Hit("x", 4.0), Hit("y", float("nan")), Hit("z", 2.0)]) == {"x": 1.0, "y": 0.0, "z": 0.0}
    assert minmax([]) == {}


def test_empty_and_single_source() -> None:
    assert rrf({}) == [] and linear({}) == []
    assert [h.id for h in rrf({"bm25": BM25})] == ["a", "b", "c"]
    assert [h.id for h in rrf({"bm25": [], "text": KNN})] == ["c", "a", "d"]


def test_ties_are_deterministic() -> None:
    tied = rrf({"x": [Hit("b", 1.0)], "y": [Hit("a", 1.0)]})
    assert [h.id for h in tied] == ["a", "b"]


def test_duplicate_id_in_one_source_keeps_best_rank() -> None:
    fused = rrf({"x": [Hit("a", 2.0), Hit("a", 1.0)]})
    assert len(fused) == 1 and fused[0].sources["x"].rank == 1


def test_unknown_method_lists_supported() -> None:
    with pytest.raises(QueryError, match="supported: " + ", ".join(FUSIONS)):
        fuse("borda", {"x": BM25})


@pytest.mark.parametrize("method", sorted(FUSIONS))
def test_limit_is_the_head_of_the_full_list(method: str) -> None:
    """``limit`` (a heap, explaining only the hits returned) gives exactly the first hits of
    the full fused list: same ids, scores and per-source explanations, ties included."""
    import random

    rnd = random.Random(7)
    ids = [f"p{i}" for i in range(60)]
    for _ in range(50):
        runs = {name: [Hit(i, round(rnd.random(), 1)) for i in rnd.sample(ids, rnd.randint(0, 40))]
                for name in ("bm25", "text", "image")}
        weights = {"bm25": 1.0, "text": rnd.choice([0.0, 0.3, 1.0])}
        full = fuse(method, runs, weights)
        for limit in (1, 5, 10, 100):
            assert fuse(method, runs, weights, limit=limit) == full[:limit]
