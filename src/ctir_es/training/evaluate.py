"""Category-to-product retrieval on one split: CLIP-ITA against the zero-shot text baseline.

Queries, relevance and seen/unseen come from the evaluation protocol
(``build_query_set``); metrics from ``ctir_es.metrics`` (``map@k`` divides by R,
``map_min@k`` by min(k, R) - the paper's convention). Products are ranked by exact cosine
over the split's products, as ``ctir-es evaluate`` does through the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import mean, per_query
from ..protocol import QuerySet, build_query_set
from ..vocabulary import CANDIDATE_DEPTH
from .data import TrainingData

METRICS: tuple[str, ...] = ("precision@1", "precision@5", "precision@10", "map@10", "map_min@10", "r-precision")
DEPTH = CANDIDATE_DEPTH  # ranked per query: recall@100 needs 100

QueryEncoder = Callable[[list[str]], np.ndarray]


def query_set(data: TrainingData, split: str, relevance: str = "exact") -> QuerySet:
    products = [data.products[i] for i in data.index.get(split, [])]
    return build_query_set(products, data.setting, split=split, train_nodes=data.train_nodes,
                           query_text_mode=data.query_text, relevance=relevance, seed=data.split.seed)


def rank(qids: Sequence[str], queries: np.ndarray, doc_ids: Sequence[str], docs: np.ndarray,
         depth: int = DEPTH) -> dict[str, dict[str, float]]:
    """A run: each query's top ``depth`` documents by dot product (vectors are normalised)."""
    if len(doc_ids) == 0:
        return {q: {} for q in qids}
    return rank_scores(qids, queries @ docs.T, doc_ids, depth)


def rank_scores(qids: Sequence[str], scores: np.ndarray, doc_ids: Sequence[str],
                depth: int = DEPTH, *, raw: bool = False) -> dict[str, dict[str, float]]:
    """A run from a (queries, documents) score matrix: each query's top ``depth`` documents,
    scored ``depth`` .. 1 by rank, or by their own scores with ``raw`` (for score fusion)."""
    if len(doc_ids) == 0:
        return {q: {} for q in qids}
    depth = min(depth, len(doc_ids))
    run = {}
    for row, qid in enumerate(qids):
        top = np.argpartition(-scores[row], depth - 1)[:depth]
        top = top[np.argsort(-scores[row][top], kind="stable")]
        # strictly decreasing scores, so ties never depend on the metric's tie-break
        run[qid] = {doc_ids[j]: float(scores[row][j] if raw else depth - r) for r, j in enumerate(top)}
    return run


def evaluate(qs: QuerySet, encode_queries: QueryEncoder, product_vectors: np.ndarray,
             metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """Means of ``metrics`` over all queries and over the seen / unseen ones.

    ``product_vectors`` are the rows of ``qs.candidates`` in that order.
    """
    qids = [q.qid for q in qs.queries]
    vectors = encode_queries([q.text for q in qs.queries]) if qids else np.zeros((0, product_vectors.shape[1]))
    return evaluate_run(qs, rank(qids, vectors, qs.candidates, product_vectors), metrics)


def evaluate_run(qs: QuerySet, run: Mapping[str, Mapping[str, float]],
                 metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """Means of ``metrics`` over all, seen and unseen queries of a ready run."""
    qids = [q.qid for q in qs.queries]
    scores = per_query(qs.qrels, {q: dict(r) for q, r in run.items()}, metrics)
    seen = [q.qid for q in qs.queries if q.seen]
    unseen = [q.qid for q in qs.queries if not q.seen]
    return {
        "queries": len(qids),
        "seen_queries": len(seen),
        "unseen_queries": len(unseen),
        "all": {m: mean(s) for m, s in scores.items()},
        "seen": {m: mean(s, seen) for m, s in scores.items()},
        "unseen": {m: mean(s, unseen) for m, s in scores.items()},
    }


def compare(results: Mapping[str, Mapping[str, Any]], metric: str = "precision@10", group: str = "all") -> str:
    """One line: each system's ``metric`` on ``group``."""
    return ", ".join(f"{name} {r[group][metric]:.4f}" for name, r in results.items())
