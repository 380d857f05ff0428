"""The calibration's batched fusion (ranking.fusion_matrix) ranks exactly as ranking.fusion."""

from __future__ import annotations

import random

import pytest

from ctir_es.calibrate import QuerySlice, fused_run
from ctir_es.metrics import evaluate
from ctir_es.ranking.fusion_matrix import RunMatrix
from ctir_es.schema import Hit

SOURCES = ["bm25", "clip_ita", "text"]


def _slice(seed: int) -> QuerySlice:
    rng = random.Random(seed)
    pool = [f"p{i:03d}" for i in range(60)]
    runs: dict[str, dict[str, list[Hit]]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(25):
        qid = f"q{q}"
        per: dict[str, list[Hit]] = {}
        for source in SOURCES:
            ids = rng.sample(pool, rng.randint(0, 30))
            if ids and rng.random() < 0.3:
                ids.append(ids[0])  # a source listing an id twice
            # coarse scores: ties inside a list and between lists are common
            scores = sorted((round(rng.random(), 1) for _ in ids), reverse=True)
            per[source] = [Hit(i, s) for i, s in zip(ids, scores, strict=True)]
        runs[qid] = per
        qrels[qid] = {pid: 1 for pid in rng.sample(pool, rng.randint(1, 15))}
    nodes = {qid: (qid,) for qid in runs}
    return QuerySlice("t", [], nodes, qrels, runs)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["rrf", "linear"])
def test_matrix_scores_equal_fuse(seed: int, method: str) -> None:
    piece = _slice(seed)
    matrix = RunMatrix(piece.runs, piece.qrels, SOURCES)
    rng = random.Random(100 + seed)
    for _ in range(20):
        weights = [rng.choice([0.0, 0.1, 0.3, 0.5, 1.0]) for _ in SOURCES]
        if not any(weights):
            continue
        exact = evaluate(piece.qrels, fused_run(piece, method, dict(zip(SOURCES, weights, strict=True))),
                         ("precision@10", "map_min@10"))
        fast = matrix.scores(method, weights)
        assert fast[0] == pytest.approx(exact["precision@10"], abs=1e-12)
        assert fast[1] == pytest.approx(exact["map_min@10"], abs=1e-12)
