"""Retrieval metrics as pure functions over plain runs and qrels.

- a run is ``{query_id: {doc_id: score}}``; a query's ranking is its docs by score,
  highest first, ties broken by doc id (ascending) so the order is deterministic (the
  evaluation runner writes strictly decreasing scores, so it never relies on ties);
- qrels are ``{query_id: {doc_id: relevance}}``; relevance > 0 is relevant (binary gains).

Metric names follow ranx where the definitions match (``precision@k``, ``recall@k``,
``map@k``, ``ndcg@k``, ``r-precision``), so the tests compare with ranx / pytrec_eval
name for name. Two mAP conventions are kept, named:

- ``map@k``: AP@k = sum over relevant ranks r <= k of P@r, divided by R (all relevant
  items): trec_eval's ``map_cut_k`` and ranx's ``map@k``;
- ``map_min@k``: the same sum divided by min(k, R): the paper's convention (its mAP@k can
  exceed its P@k, which only a divisor <= k allows). For every query
  ``map_min@k = map@k * R / min(k, R)``.

Queries in the qrels that a run lacks score 0; queries without relevant items are skipped
(they have no defined AP), as in trec_eval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by score (highest first), ties by id."""
    return sorted(scores, key=lambda d: (-scores[d], d))


def _hits(ranked: Sequence[str], relevant: set[str], k: int) -> list[bool]:
    return [d in relevant for d in ranked[:k]]


def precision(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Relevant items in the top k, divided by k (fewer than k results count as misses)."""
    return sum(_hits(ranked, relevant, k)) / k


def recall(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return sum(_hits(ranked, relevant, k)) / len(relevant)


def _precision_sum(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    found = 0
    total = 0.0
    for i, hit in enumerate(_hits(ranked, relevant, k), start=1):
        if hit:
            found += 1
            total += found / i
    return total


def average_precision(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """AP@k divided by R (trec_eval ``map_cut``, ranx ``map@k``)."""
    return _precision_sum(ranked, relevant, k) / len(relevant)


def average_precision_min(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """AP@k divided by min(k, R) (the paper's convention)."""
    return _precision_sum(ranked, relevant, k) / min(k, len(relevant))


def ndcg(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """nDCG@k with binary gains and log2(rank + 1) discounts."""
    dcg = sum(1.0 / math.log2(i + 1) for i, hit in enumerate(_hits(ranked, relevant, k), start=1) if hit)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def r_precision(ranked: Sequence[str], relevant: set[str], k: int | None = None) -> float:
    """Precision at R, the number of relevant items."""
    return precision(ranked, relevant, len(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    for i, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / i
    return 0.0


MetricFn = Callable[[Sequence[str], set[str], int], float]

# name -> (function, takes a cutoff); the keys make the "supported: ..." error text.
METRICS: dict[str, tuple[MetricFn, bool]] = {
    "precision": (precision, True),
    "recall": (recall, True),
    "map": (average_precision, True),
    "map_min": (average_precision_min, True),
    "ndcg": (ndcg, True),
    "mrr": (reciprocal_rank, True),
    "r-precision": (r_precision, False),  # type: ignore[dict-item]
}

# Short labels for tables; the Markdown report explains each.
LABELS: dict[str, str] = {
    "precision": "P",
    "recall": "R",
    "map": "mAP÷R",
    "map_min": "mAP÷min(k,R)",
    "ndcg": "nDCG",
    "mrr": "MRR",
    "r-precision": "R-prec",
}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    k: int | None

    @property
    def key(self) -> str:
        return self.name if self.k is None else f"{self.name}@{self.k}"

    @property
    def label(self) -> str:
        base = LABELS[self.name]
        if self.k is None:
            return base
        if self.name.startswith("map"):
            return base.replace("mAP", f"mAP@{self.k}")
        return f"{base}@{self.k}"


def parse_metric(text: str) -> MetricSpec:
    """``"precision@10"`` -> MetricSpec("precision", 10); ``"r-precision"`` -> no cutoff."""
    name, _, cut = text.strip().partition("@")
    entry = METRICS.get(name)
    if entry is None:
        raise ConfigError(f"unknown metric {name!r}; supported: {', '.join(METRICS)}")
    _, takes_k = entry
    if not takes_k:
        if cut:
            raise ConfigError(f"metric {name!r} takes no cutoff")
        return MetricSpec(name, None)
    if not cut:
        raise ConfigError(f"metric {name!r} needs a cutoff, e.g. {name}@10")
    try:
        k = int(cut)
    except ValueError:
        raise ConfigError(f"bad cutoff in {text!r}") from None
    if k < 1:
        raise ConfigError(f"cutoff must be >= 1 in {text!r}")
    return MetricSpec(name, k)


def per_query(qrels: Qrels, run: Run, metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: score}}`` for every query of ``qrels`` with a relevant item."""
    specs = [parse_metric(m) for m in metrics]
    out: dict[str, dict[str, float]] = {s.key: {} for s in specs}
    for qid, judged in qrels.items():
        relevant = {d for d, rel in judged.items() if rel > 0}
        if not relevant:
            continue
        ranked = ranking(run.get(qid, {}))
        for spec in specs:
            fn, _ = METRICS[spec.name]
            out[spec.key][qid] = fn(ranked, relevant, spec.k or 0)
    return out


def mean(scores: Mapping[str, float], qids: Sequence[str] | None = None) -> float:
    """The mean over ``qids`` (default: all queries scored); 0.0 when there are none."""
    values = [scores[q] for q in (qids if qids is not None else scores) if q in scores]
    return sum(values) / len(values) if values else 0.0


def evaluate(qrels: Qrels, run: Run, metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the queries of ``qrels``."""
    return {name: mean(scores) for name, scores in per_query(qrels, run, metrics).items()}
