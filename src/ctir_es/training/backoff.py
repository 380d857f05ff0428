"""Backoff: mix the trained category head with the zero-shot encoder by distance from the seen.

A trained category head knows the categories it saw; for one it never saw, the frozen text
encoder (the category text against title vectors, zero-shot) is what generalises. The backoff
scores a product ``p`` for a category ``c`` as::

    score(c, p) = α(c) · cos(head(c), product_head(p)) + (1 - α(c)) · cos(text(c), title(p))
    α(c)        = weight_seen · decay ** distance(c)

``distance(c)`` is the number of levels between ``c`` and its deepest ancestor-or-self that
some training product is filed under: 0 for a seen category, 1 for a new leaf under a seen
branch, and ``len(c)`` when not even its root was seen. ``weight_seen`` and ``decay`` are
tuned on the validation queries (``tune``); ``weight_seen = 1, decay = 1`` is the trained model
alone and ``weight_seen = 0`` is zero-shot, so both ends are in the grid.

The same score is one dot product in a concatenated space (``product_vector`` /
``query_vector``), so a store can serve it from a single vector field.

Serving does not mix the vectors: ``ctir-es learn`` stores fusion weights per group of category
queries, seen (distance 0) and unseen, and ``Search`` serves each query its group's weights
(``ranking.calibration``, which holds ``seen_distance``: serving needs it without this package).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..products import CategoryPath
from ..ranking.calibration import seen_distance

__all__ = ["DECAY_GRID", "WEIGHT_GRID", "Backoff", "product_vector", "query_vector", "seen_distance", "tune"]

WEIGHT_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DECAY_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Backoff:
    weight_seen: float = 1.0
    decay: float = 1.0

    def alpha(self, distance: int) -> float:
        return float(self.weight_seen * (self.decay ** distance if distance > 0 else 1.0))

    def alphas(self, nodes: Iterable[CategoryPath], seen: set[CategoryPath]) -> np.ndarray:
        return np.asarray([self.alpha(seen_distance(n, seen)) for n in nodes], dtype=np.float32)

    def scores(self, alphas: np.ndarray, trained_q: np.ndarray, trained_p: np.ndarray,
               zero_q: np.ndarray, zero_p: np.ndarray) -> np.ndarray:
        """(Q, N) mixed cosine scores (all inputs L2-normalised)."""
        a = alphas[:, None]
        return a * (trained_q @ trained_p.T) + (1.0 - a) * (zero_q @ zero_p.T)

    def to_json(self) -> dict[str, Any]:
        return {"weight_seen": self.weight_seen, "decay": self.decay,
                "alpha": "weight_seen * decay ** distance_to_seen"}


def product_vector(trained_p: np.ndarray, zero_p: np.ndarray) -> np.ndarray:
    """``[head(p); title(p)] / √2``: unit rows whose dot product with ``query_vector`` ranks as
    ``Backoff.scores``."""
    return np.concatenate([trained_p, zero_p], axis=1) / np.sqrt(2.0)


def query_vector(alphas: np.ndarray, trained_q: np.ndarray, zero_q: np.ndarray) -> np.ndarray:
    a = alphas[:, None]
    out = np.concatenate([a * trained_q, (1.0 - a) * zero_q], axis=1)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norm == 0, 1.0, norm)


def tune(score_of: Callable[[Backoff], float], weights: Sequence[float] = WEIGHT_GRID,
         decays: Sequence[float] = DECAY_GRID) -> tuple[Backoff, dict[str, float]]:
    """The grid point with the best ``score_of`` (validation); ties go to the trained model
    (higher weight, then higher decay)."""
    grid: dict[str, float] = {}
    best: tuple[float, float, float] | None = None
    chosen = Backoff()
    for w in weights:
        for d in (decays if w > 0 else (1.0,)):
            candidate = Backoff(w, d)
            value = float(score_of(candidate))
            grid[f"{w:g},{d:g}"] = value
            key = (round(value, 12), w, d)
            if best is None or key > best:
                best, chosen = key, candidate
    return chosen, grid
