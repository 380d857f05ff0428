"""The evaluation metrics against ranx and pytrec_eval (trec_eval) on the same random runs.

Runs have distinct scores (no ties), so every tool sees the same ranking.
"""

from __future__ import annotations

import math
import random

import pytest

from ctir_es import metrics as M
from ctir_es.errors import ConfigError

CUTS = (1, 5, 10, 100)


def random_runs(seed: int, queries: int = 40, docs: int = 150) -> tuple[dict, dict]:
    """Qrels with 1..60 relevant docs per query (some beyond the run depth), runs of
    0..120 docs with distinct scores, a few relevant docs never retrieved."""
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(queries):
        qid = f"q{q}"
        pool = [f"d{i}" for i in range(docs)]
        rng.shuffle(pool)
        n_rel = rng.choice([1, 2, 3, 7, 15, 60])
        qrels[qid] = {d: 1 for d in pool[:n_rel]}
        depth = rng.choice([0, 3, 10, 50, 120])
        retrieved = rng.sample(pool, depth)
        scores = rng.sample(range(1, 10_000), depth)
        run[qid] = {d: float(s) / 7.0 for d, s in zip(retrieved, scores, strict=True)}
    return qrels, run


RANX_METRICS = [f"{m}@{k}" for m in ("precision", "recall", "map", "ndcg") for k in CUTS] + ["r-precision"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx_per_query(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    qrels, run = random_runs(seed)
    ours = M.per_query(qrels, run, RANX_METRICS)
    r_qrels = ranx.Qrels.from_dict(qrels)
    r_run = ranx.Run.from_dict({q: (d if d else {"__none__": -1e9}) for q, d in run.items()})
    # ranx needs a non-empty run per query; a doc that is never relevant changes nothing above
    # rank 1 except for queries with no results, where every metric is 0 either way.
    for metric in RANX_METRICS:
        theirs = ranx.evaluate(r_qrels, r_run, metric, return_mean=False)
        for i, qid in enumerate(r_qrels.keys()):
            expected = 0.0 if not run[qid] else float(theirs[i])
            assert ours[metric][qid] == pytest.approx(expected, abs=1e-9), (metric, qid)
        assert M.evaluate(qrels, run, [metric])[metric] == pytest.approx(
            sum(0.0 if not run[q] else float(theirs[i]) for i, q in enumerate(r_qrels.keys())) / len(qrels),
            abs=1e-9,
        )


@pytest.mark.parametrize("seed", [3, 4])
def test_agrees_with_trec_eval(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval not installed (pytrec-eval-terrier)")
    qrels, run = random_runs(seed)
    measures = {"P_1", "P_5", "P_10", "P_100", "recall_10", "recall_100", "map_cut_5", "map_cut_10",
                "map_cut_100", "ndcg_cut_10", "Rprec"}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
    theirs = evaluator.evaluate(run)
    ours = M.per_query(qrels, run, ["precision@1", "precision@5", "precision@10", "precision@100", "recall@10",
                                    "recall@100", "map@5", "map@10", "map@100", "ndcg@10", "r-precision"])
    names = {"P_1": "precision@1", "P_5": "precision@5", "P_10": "precision@10", "P_100": "precision@100",
             "recall_10": "recall@10", "recall_100": "recall@100", "map_cut_5": "map@5",
             "map_cut_10": "map@10", "map_cut_100": "map@100", "ndcg_cut_10": "ndcg@10",
             "Rprec": "r-precision"}
    for qid in qrels:
        for trec_name, ours_name in names.items():
            expected = theirs.get(qid, {}).get(trec_name, 0.0)  # trec_eval omits queries without results
            assert ours[ours_name][qid] == pytest.approx(expected, abs=1e-6), (trec_name, qid)


@pytest.mark.parametrize("seed", [5, 6])
def test_paper_map_is_trec_map_rescaled(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    qrels, run = random_runs(seed)
    r_qrels = ranx.Qrels.from_dict(qrels)
    r_run = ranx.Run.from_dict({q: (d if d else {"__none__": -1e9}) for q, d in run.items()})
    for k in (5, 10):
        ours = M.per_query(qrels, run, [f"map_min@{k}"])[f"map_min@{k}"]
        theirs = ranx.evaluate(r_qrels, r_run, f"map@{k}", return_mean=False)
        for i, qid in enumerate(r_qrels.keys()):
            big_r = len(qrels[qid])
            expected = 0.0 if not run[qid] else float(theirs[i]) * big_r / min(k, big_r)
            assert ours[qid] == pytest.approx(expected, abs=1e-9)


def test_worked_example_both_map_conventions() -> None:
    # 3 relevant items; ranks 1 and 3 of the top 5 are relevant.
    qrels = {"q": {"a": 1, "b": 1, "c": 1}}
    run = {"q": {"a": 5.0, "x": 4.0, "b": 3.0, "y": 2.0, "z": 1.0}}
    got = M.evaluate(qrels, run, ["precision@5", "map@5", "map_min@5", "map_min@2", "r-precision", "ndcg@5"])
    assert got["precision@5"] == pytest.approx(2 / 5)
    assert got["map@5"] == pytest.approx((1 + 2 / 3) / 3)
    assert got["map_min@5"] == pytest.approx((1 + 2 / 3) / 3)  # min(5, 3) = 3
    assert got["map_min@2"] == pytest.approx(1 / 2)  # only rank 1 counts, divided by min(2, 3)
    assert got["r-precision"] == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    # The paper's convention can exceed P@k; trec's cannot exceed P@k when R >= k.
    one = M.evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "x": 0.5}}, ["precision@5", "map_min@5", "map@5"])
    assert one["map_min@5"] == one["map@5"] == 1.0 > one["precision@5"]


def test_ties_break_by_id_and_missing_queries_score_zero() -> None:
    assert M.ranking({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]
    got = M.per_query({"q1": {"a": 1}, "q2": {"b": 1}, "empty": {}}, {"q1": {"a": 1.0}}, ["precision@1"])
    assert got == {"precision@1": {"q1": 1.0, "q2": 0.0}}


@pytest.mark.parametrize("bad", ["nope@5", "precision", "precision@0", "precision@x", "r-precision@5"])
def test_bad_metric_names_say_what_is_supported(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        M.parse_metric(bad)
    if bad.startswith("nope"):
        assert "supported: precision, recall, map, map_min" in str(err.value)
