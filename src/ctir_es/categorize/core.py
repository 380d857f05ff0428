"""Category inference as pure functions over plain data.

Every signal turns its evidence into **weighted full paths** ("voters"): a neighbouring
product votes with its category paths, a scored category label votes with itself. The
voters' weights are a softmax over the signal's similarities, so they sum to 1. A node's
score in that signal is the weight of the voters whose path passes through it, so at each
level of the tree a signal's scores sum to at most 1 (a voter whose path is shorter than the
level says nothing there), and a parent always scores at least as much as each child.

The fused score of a node is the weighted mean of its signal scores (signals that did not
vote are left out of the mean), again a distribution per level: 0..1 and comparable across
inputs. How well it is calibrated is measured (``evaluate --task categorize`` reports the
expected calibration error), not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import QueryError
from ..products import CategoryPath, format_category_path

# Softmax temperatures per signal (cosine or normalised-score units). Cosines of text and
# CLIP vectors of near-duplicates and mere look-alikes differ by a few hundredths, so a small
# temperature lets the closest neighbours outvote a long tail.
TEMPERATURES: Mapping[str, float] = {
    "title": 0.05,
    "image": 0.05,
    "bm25": 0.1,
    "names": 0.05,
    "clip_ita": 0.05,
}
SIGNALS: Mapping[str, str] = {
    "title": "kNN vote over title vectors (products with similar titles)",
    "image": "kNN vote over image vectors (products that look alike)",
    "bm25": "BM25 vote (products sharing words with the title)",
    "names": "zero-shot: the title vector against each category path's text vector",
    "clip_ita": "the trained CLIP-ITA category head against the product vector",
}
Scores = dict[CategoryPath, float]


def softmax(values: Sequence[float], temperature: float) -> list[float]:
    """Softmax of ``values / temperature`` (non-finite values get weight 0)."""
    if temperature <= 0 or not math.isfinite(temperature):
        raise QueryError("temperature must be a positive number")
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [0.0 for _ in values]
    top = max(finite)
    raw = [math.exp((v - top) / temperature) if math.isfinite(v) else 0.0 for v in values]
    total = sum(raw)
    return [r / total for r in raw]


def node_scores(voters: Iterable[tuple[Iterable[CategoryPath], float]]) -> tuple[Scores, dict[CategoryPath, int]]:
    """``{node: weight of the voters through it}`` and ``{node: voters through it}``.

    A voter's weight is shared equally among its distinct paths; a node counts a voter once
    even when several of its paths pass through the node."""
    score: Scores = {}
    support: dict[CategoryPath, int] = {}
    for paths, weight in voters:
        distinct = list(dict.fromkeys(tuple(p) for p in paths if p))
        if not distinct or weight <= 0:
            continue
        share = weight / len(distinct)
        reached: dict[CategoryPath, float] = {}
        for path in distinct:
            for depth in range(1, len(path) + 1):
                reached[path[:depth]] = reached.get(path[:depth], 0.0) + share
        for node, w in reached.items():
            score[node] = score.get(node, 0.0) + w
            support[node] = support.get(node, 0) + 1
    return score, support


def vote(neighbours: Sequence[tuple[Iterable[CategoryPath], float]], temperature: float) -> tuple[Scores, dict[CategoryPath, int]]:
    """Neighbours (their paths and similarity) -> node scores, softmax-weighted."""
    weights = softmax([s for _, s in neighbours], temperature)
    return node_scores((paths, w) for (paths, _), w in zip(neighbours, weights, strict=True))


def label_vote(labels: Sequence[CategoryPath], similarities: np.ndarray, temperature: float,
               top: int = 200) -> tuple[Scores, dict[CategoryPath, int]]:
    """Scored category labels (each a full path) -> node scores: the ``top`` labels vote."""
    sims = np.asarray(similarities, dtype=np.float64).reshape(-1)
    if len(labels) != sims.shape[0]:
        raise ValueError("one similarity per label")
    if not labels:
        return {}, {}
    order = np.argsort(-sims, kind="stable")[:top]
    return vote([((labels[i],), float(sims[i])) for i in order], temperature)


@dataclass(frozen=True)
class SignalWeights:
    """The signals' fusion weights: one set for every level, or a set per level of the tree
    (``ctir-es learn`` tunes them per level, because the signal that is best differs by level:
    a trained category head is strongest on leaves, the kNN votes on roots)."""

    default: Mapping[str, float]
    levels: Mapping[int, Mapping[str, float]] = field(default_factory=dict)

    def at(self, level: int) -> Mapping[str, float]:
        return self.levels.get(level, self.default)

    @classmethod
    def of(cls, weights: Mapping[str, float] | SignalWeights | None, base: Mapping[str, float] | None = None
           ) -> SignalWeights:
        """``weights`` over ``base`` (names ``weights`` omits keep their ``base`` weight)."""
        given = weights if isinstance(weights, SignalWeights) else cls(dict(weights or {}))
        under = dict(base or {})
        return cls({**under, **given.default}, {lv: {**under, **w} for lv, w in given.levels.items()})

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SignalWeights:
        """``to_json``'s form, or a flat ``{signal: weight}`` (one set for every level)."""
        if "default" not in raw:
            return cls({str(k): float(v) for k, v in raw.items()})
        return cls({str(k): float(v) for k, v in dict(raw["default"]).items()},
                   {int(lv): {str(k): float(v) for k, v in dict(w).items()}
                    for lv, w in dict(raw.get("levels") or {}).items()})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": dict(self.default)}
        if self.levels:
            out["levels"] = {str(lv): dict(w) for lv, w in sorted(self.levels.items())}
        return out


def _fuse_one(signals: Mapping[str, Scores], weights: Mapping[str, float], level: int | None) -> Scores:
    voted = {name: s for name, s in signals.items() if s}
    w = {name: float(weights.get(name, 1.0)) for name in voted}
    w = {name: v for name, v in w.items() if v > 0}
    total = sum(w.values())
    if total <= 0:
        return {}
    out: Scores = {}
    for name, weight in w.items():
        for node, score in voted[name].items():
            if level is None or len(node) == level:
                out[node] = out.get(node, 0.0) + weight * score / total
    return out


def fuse(signals: Mapping[str, Scores], weights: Mapping[str, float] | SignalWeights | None = None) -> Scores:
    """Weighted mean of the signals' node scores over the signals that voted (non-empty); with
    per-level weights, each level's nodes are fused with that level's weights."""
    if not isinstance(weights, SignalWeights) or not weights.levels:
        default = weights.default if isinstance(weights, SignalWeights) else (weights or {})
        return _fuse_one(signals, default, None)
    depths = {len(node) for s in signals.values() for node in s}
    out: Scores = {}
    for level in sorted(depths):
        out.update(_fuse_one(signals, weights.at(level), level))
    return out


def ranked_at(scores: Mapping[CategoryPath, float], level: int, k: int | None = None,
              under: CategoryPath | None = None) -> list[CategoryPath]:
    """Nodes of exactly ``level`` levels (optionally under ``under``), best first; ties by
    path text so the order is stable."""
    nodes = [n for n in scores if len(n) == level and (under is None or n[: len(under)] == under)]
    nodes.sort(key=lambda n: (-scores[n], format_category_path(n)))
    return nodes if k is None else nodes[:k]


def greedy_path(scores: Mapping[CategoryPath, float], min_score: float = 0.0, max_depth: int | None = None) -> CategoryPath:
    """The suggested path: from the root down, the best child of the node chosen so far,
    while that child scores at least ``min_score``."""
    path: CategoryPath = ()
    while max_depth is None or len(path) < max_depth:
        children = ranked_at(scores, len(path) + 1, 1, path)
        if not children or scores[children[0]] < min_score or scores[children[0]] <= 0:
            break
        path = children[0]
    return path


@dataclass(frozen=True, slots=True)
class SuggestedCategory:
    path: CategoryPath
    score: float  # fused, 0..1 (a distribution over the nodes of one level)
    support: int  # voters (products or labels) through this node, all signals
    signals: Mapping[str, float] = field(default_factory=dict)  # each voting signal's own score

    def to_json(self) -> dict[str, Any]:
        return {
            "path": list(self.path),
            "label": format_category_path(self.path),
            "level": len(self.path),
            "score": self.score,
            "support": self.support,
            "signals": dict(self.signals),
        }


@dataclass(frozen=True, slots=True)
class SignalReport:
    name: str
    voters: int
    weight: float  # its weight in the fusion
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "voters": self.voters, "weight": self.weight}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Suggestion:
    """What ``Search.categorize`` returns: the best nodes, the suggested path, per level, and
    the signals that voted (or why one did not)."""

    query: str
    categories: list[SuggestedCategory]  # best first, at ``depth`` levels (or the deepest)
    path: list[SuggestedCategory]  # the suggested path, root first, one entry per level
    levels: dict[int, list[SuggestedCategory]]  # level -> best nodes of that level
    signals: list[SignalReport]
    depth: int | None
    method: str = "fused"

    @property
    def neighbours(self) -> int:
        return max((s.voters for s in self.signals), default=0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in ("query", "method", "neighbours", "depth")}
        out["categories"] = [c.to_json() for c in self.categories]
        out["path"] = [c.to_json() for c in self.path]
        out["levels"] = {str(lv): [c.to_json() for c in cs] for lv, cs in self.levels.items()}
        out["signals"] = [s.to_json() for s in self.signals]
        return out


def suggestion(
    query: str,
    signals: Mapping[str, tuple[Scores, dict[CategoryPath, int]]],
    weights: Mapping[str, float] | SignalWeights,
    *,
    k: int = 5,
    depth: int | None = 3,
    reports: Sequence[SignalReport] = (),
    min_path_score: float = 0.2,
) -> Suggestion:
    """Fuse the signals and shape the answer."""
    if k < 1:
        raise QueryError("k must be at least 1")
    if depth is not None and depth < 1:
        raise QueryError("depth must be at least 1 (or None for full paths)")
    only = {n: s for n, (s, _) in signals.items()}
    fused = fuse(only, weights)
    support: dict[CategoryPath, int] = {}
    for _, sup in signals.values():
        for node, c in sup.items():
            support[node] = support.get(node, 0) + c

    def make(node: CategoryPath) -> SuggestedCategory:
        per = {n: round(s.get(node, 0.0), 6) for n, s in only.items() if s}
        return SuggestedCategory(node, fused.get(node, 0.0), support.get(node, 0), per)

    deepest = max((len(n) for n in fused), default=0)
    level = deepest if depth is None else min(depth, deepest)
    # A voter whose path is shorter than ``level`` still counts: its own (leaf) node competes.
    at_level = [n for n in fused if len(n) == level or (len(n) < level and not any(
        len(m) == len(n) + 1 and m[: len(n)] == n for m in fused))]
    at_level.sort(key=lambda n: (-fused[n], format_category_path(n)))
    levels = {lv: [make(n) for n in ranked_at(fused, lv, k)] for lv in range(1, deepest + 1)}
    path = greedy_path(fused, min_path_score, None)
    return Suggestion(
        query=query,
        categories=[make(n) for n in at_level[:k]],
        path=[make(path[:i]) for i in range(1, len(path) + 1)],
        levels=levels,
        signals=list(reports),
        depth=depth,
    )
