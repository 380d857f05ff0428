"""Paired significance tests through ranx: the p-values are those of a paired t-test on the
per-query scores of our own metrics, and they are reproducible."""

from __future__ import annotations

import random

import pytest

from ctir_es import metrics as M
from ctir_es.evaluation.significance import compare, significant_pairs


def runs(seed: int = 0) -> tuple[dict, dict]:
    rng = random.Random(seed)
    qrels, a, b = {}, {}, {}
    for q in range(30):
        rel = {f"d{i}" for i in rng.sample(range(50), 5)}
        qrels[f"q{q}"] = {d: 1 for d in rel}
        docs = [f"d{i}" for i in range(50)]
        good = sorted(docs, key=lambda d: (d not in rel and rng.random() < 0.9, rng.random()))
        bad = rng.sample(docs, 50)
        a[f"q{q}"] = {d: float(50 - i) for i, d in enumerate(good[:20])}
        b[f"q{q}"] = {d: float(50 - i) for i, d in enumerate(bad[:20])}
    return qrels, {"good": a, "random": b}


def test_student_p_values_are_paired_t_tests_and_reproducible() -> None:
    pytest.importorskip("ranx")
    stats = pytest.importorskip("scipy.stats")
    qrels, systems = runs()
    got = compare(qrels, systems, ["precision@10", "ndcg@10"], stat_test="student")
    assert got == compare(qrels, systems, ["precision@10", "ndcg@10"], stat_test="student")
    for metric in ("precision@10", "ndcg@10"):
        a = M.per_query(qrels, systems["good"], [metric])[metric]
        b = M.per_query(qrels, systems["random"], [metric])[metric]
        expected = stats.ttest_rel([a[q] for q in qrels], [b[q] for q in qrels]).pvalue
        assert got["p_values"]["good"]["random"][metric] == pytest.approx(expected, abs=1e-5)
        assert got["scores"]["good"][metric] == pytest.approx(M.mean(a), abs=1e-6)
    assert significant_pairs(got, "precision@10")[0][:2] == ("good", "random")


def test_too_little_to_test_is_said_not_hidden() -> None:
    qrels, systems = runs()
    assert "fewer than two systems" in compare(qrels, {"good": systems["good"]}, ["precision@10"])["skipped"]
    one = {"q0": qrels["q0"]}
    assert "too few" in compare(one, systems, ["precision@10"])["skipped"]
