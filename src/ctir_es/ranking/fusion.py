"""Fusion of ranked lists from several sources (BM25, text kNN, image kNN) into one list.

Pure functions over plain data, dispatched through ``FUSIONS`` whose keys also make the
"supported: ..." error text. Every fused hit keeps each source's rank and raw score, so a
result can always be explained.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import QueryError
from ..schema import Hit
from ..vocabulary import RRF_K


@dataclass(frozen=True, slots=True)
class SourceScore:
    rank: int  # 1-based rank in that source's list
    score: float  # the source's raw score (BM25, cosine)
    normalised: float | None = None  # linear fusion only: min-max normalised score


@dataclass(frozen=True, slots=True)
class FusedHit:
    id: str
    score: float
    sources: Mapping[str, SourceScore] = field(default_factory=dict)


Runs = Mapping[str, Sequence[Hit]]


def _ranks(runs: Runs) -> dict[str, list[tuple[str, int, float]]]:
    """Per source, in the order of ``runs``: (id, rank, raw score); a source listing an id twice
    keeps its best rank."""
    out: dict[str, list[tuple[str, int, float]]] = {}
    for source in runs:
        seen: set[str] = set()
        kept: list[tuple[str, int, float]] = []
        for rank, hit in enumerate(runs[source], start=1):
            if hit.id not in seen:
                seen.add(hit.id)
                kept.append((hit.id, rank, hit.score))
        out[source] = kept
    return out


def _fused(ranks: dict[str, list[tuple[str, int, float]]], term: Callable[[str, int, str], float],
           limit: int | None, normalised: Mapping[str, Mapping[str, float]] | None = None) -> list[FusedHit]:
    """Sum ``term(source, rank, id)`` per id; order best score first (ties: best single-source
    rank, then id: a total order, so a heap's first ``limit`` are the full sort's head); explain
    only the hits returned. Sources are summed in name order: float addition is not
    associative, and the order of the sources must never change a ranking."""
    scored: dict[str, float] = {}
    best: dict[str, int] = {}
    for source in sorted(ranks):
        for pid, rank, _ in ranks[source]:
            scored[pid] = scored.get(pid, 0) + term(source, rank, pid)
            if rank < best.get(pid, rank + 1):
                best[pid] = rank

    def key(pid: str) -> tuple[float, int, str]:
        return -scored[pid], best[pid], pid

    if limit is not None and limit < len(scored):
        order = heapq.nsmallest(limit, scored, key=key)
    else:
        order = sorted(scored, key=key)
    explained: dict[str, dict[str, SourceScore]] = {pid: {} for pid in order}
    for source, kept in ranks.items():
        for pid, rank, raw in kept:
            if pid in explained:
                norm = normalised[source][pid] if normalised is not None else None
                explained[pid][source] = SourceScore(rank, raw, norm)
    return [FusedHit(pid, scored[pid], explained[pid]) for pid in order]


def rrf(runs: Runs, weights: Mapping[str, float] | None = None, k: int = RRF_K,
        limit: int | None = None) -> list[FusedHit]:
    """Reciprocal rank fusion: score = sum over sources of w / (k + rank); the best ``limit``
    (all when None)."""
    if k < 0:
        raise QueryError("RRF k must be >= 0")
    w = weights or {}
    return _fused(_ranks(runs), lambda source, rank, _pid: w.get(source, 1.0) / (k + rank), limit)


# Below this spread a list counts as all-equal (Elasticsearch's MinMaxScoreNormalizer.EPSILON).
MINMAX_EPSILON = 1e-6


def minmax(hits: Sequence[Hit]) -> dict[str, float]:
    """Scores scaled to [0, 1] within one list, exactly as the ``minmax`` normalizer of
    Elasticsearch's ``linear`` retriever (x-pack rank-rrf ``MinMaxScoreNormalizer``), so
    client-side and server-side linear fusion agree: a list whose scores are all equal (spread
    below 1e-6, e.g. a single hit) keeps its raw scores; NaN scores become 0. (Elasticsearch
    8.18.x mapped such a list to 1.0; later versions keep the raw score.)"""
    valid = [h.score for h in hits if not math.isnan(h.score)]
    if not valid:
        return {h.id: 0.0 for h in hits}
    lo, hi = min(valid), max(valid)
    span = hi - lo
    out = {}
    for h in hits:
        if math.isnan(h.score):
            out[h.id] = 0.0
        elif span < MINMAX_EPSILON:
            out[h.id] = h.score
        else:
            out[h.id] = (h.score - lo) / span
    return out


def linear(runs: Runs, weights: Mapping[str, float] | None = None, limit: int | None = None) -> list[FusedHit]:
    """Weighted sum of min-max normalised scores; a source that misses an id adds 0. The best
    ``limit`` (all when None)."""
    w = weights or {}
    norms = {src: minmax(hits) for src, hits in runs.items()}
    return _fused(_ranks(runs), lambda source, _rank, pid: w.get(source, 1.0) * norms[source][pid], limit, norms)


FUSIONS: dict[str, Callable[..., list[FusedHit]]] = {"rrf": rrf, "linear": linear}


def fuse(method: str, runs: Runs, weights: Mapping[str, float] | None = None,
         limit: int | None = None) -> list[FusedHit]:
    """The fused list by ``method`` (``FUSIONS``): its best ``limit`` hits, or all of them."""
    try:
        fn = FUSIONS[method]
    except KeyError:
        raise QueryError(f"unknown fusion {method!r}; supported: {', '.join(FUSIONS)}") from None
    return fn(runs, weights, limit=limit)


def contribution(method: str, score: SourceScore, weight: float, k: int = RRF_K) -> float:
    """What one source added to a fused score: its term in the sum ``rrf`` or ``linear``
    computes (``weight / (k + rank)``, or ``weight * normalised``), so score bars can explain
    a result without re-deriving the formulas."""
    if method == "rrf":
        return weight / (k + score.rank)
    if method == "linear":
        return weight * (score.normalised or 0.0)
    raise QueryError(f"unknown fusion {method!r}; supported: {', '.join(FUSIONS)}")
