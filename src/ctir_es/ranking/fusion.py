"""Fusion of ranked lists from several sources (BM25, text kNN, image kNN) into one list.

Pure functions over plain data, dispatched through ``FUSIONS`` whose keys also make the
"supported: ..." error text. Every fused hit keeps each source's rank and raw score, so a
result can always be explained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import QueryError
from ..store.base import Hit

RRF_K = 60  # Cormack et al. 2009; also Elasticsearch's rank_constant default


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


def _collect(runs: Runs) -> dict[str, dict[str, SourceScore]]:
    by_id: dict[str, dict[str, SourceScore]] = {}
    for source, hits in runs.items():
        seen: set[str] = set()
        for rank, hit in enumerate(hits, start=1):
            if hit.id in seen:  # a source listing an id twice keeps its best rank
                continue
            seen.add(hit.id)
            by_id.setdefault(hit.id, {})[source] = SourceScore(rank, hit.score)
    return by_id


def _order(scored: dict[str, float], sources: dict[str, dict[str, SourceScore]]) -> list[str]:
    """Best fused score first; ties broken by best single-source rank, then id (deterministic)."""
    return sorted(scored, key=lambda i: (-scored[i], min(s.rank for s in sources[i].values()), i))


def rrf(runs: Runs, weights: Mapping[str, float] | None = None, k: int = RRF_K) -> list[FusedHit]:
    """Reciprocal rank fusion: score = sum over sources of w / (k + rank)."""
    if k < 0:
        raise QueryError("RRF k must be >= 0")
    sources = _collect(runs)
    w = weights or {}
    # Sum in source-name order: float addition is not associative, and the order of the
    # sources must never change a ranking.
    scored = {
        pid: sum(w.get(src, 1.0) / (k + s.rank) for src, s in sorted(per.items())) for pid, per in sources.items()
    }
    return [FusedHit(pid, scored[pid], sources[pid]) for pid in _order(scored, sources)]


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


def linear(runs: Runs, weights: Mapping[str, float] | None = None) -> list[FusedHit]:
    """Weighted sum of min-max normalised scores; a source that misses an id adds 0."""
    sources = _collect(runs)
    w = weights or {}
    norms = {src: minmax(hits) for src, hits in runs.items()}
    scored: dict[str, float] = {}
    explained: dict[str, dict[str, SourceScore]] = {}
    for pid, per in sources.items():
        scored[pid] = sum(w.get(src, 1.0) * norms[src][pid] for src in sorted(per))
        explained[pid] = {
            src: SourceScore(s.rank, s.score, norms[src][pid]) for src, s in per.items()
        }
    return [FusedHit(pid, scored[pid], explained[pid]) for pid in _order(scored, explained)]


FUSIONS: dict[str, Callable[..., list[FusedHit]]] = {"rrf": rrf, "linear": linear}


def fuse(method: str, runs: Runs, weights: Mapping[str, float] | None = None) -> list[FusedHit]:
    try:
        fn = FUSIONS[method]
    except KeyError:
        raise QueryError(f"unknown fusion {method!r}; supported: {', '.join(FUSIONS)}") from None
    return fn(runs, weights)


def contribution(method: str, score: SourceScore, weight: float, k: int = RRF_K) -> float:
    """What one source added to a fused score: its term in the sum ``rrf`` or ``linear``
    computes (``weight / (k + rank)``, or ``weight * normalised``), so score bars can explain
    a result without re-deriving the formulas."""
    if method == "rrf":
        return weight / (k + score.rank)
    if method == "linear":
        return weight * (score.normalised or 0.0)
    raise QueryError(f"unknown fusion {method!r}; supported: {', '.join(FUSIONS)}")
