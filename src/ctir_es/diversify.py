"""Diversified rankings for category landing pages: maximal marginal relevance (MMR).

Near-duplicates (colour variants, the same product from two sellers) have near-identical
titles and vectors. MMR picks, one at a time, the candidate maximising
``lambda * relevance - (1 - lambda) * max similarity to what is already picked``; relevance
is the fused score min-max normalised over the candidates, similarity the largest cosine over
the vector fields both products have (1 for identical normalised titles).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import QueryError

DEFAULT_LAMBDA = 0.7
DUPLICATE_COSINE = 0.95  # two titles this close are the same product for the near-duplicate rate
_WORD = re.compile(r"\w+")


def normalise_title(title: str) -> str:
    return " ".join(_WORD.findall(title.casefold()))


def similarity(a: str, b: str, titles: Mapping[str, str], vectors: Mapping[str, Mapping[str, np.ndarray]]) -> float:
    if normalise_title(titles.get(a, "")) and normalise_title(titles.get(a, "")) == normalise_title(titles.get(b, "")):
        return 1.0
    va, vb = vectors.get(a, {}), vectors.get(b, {})
    sims = [float(np.dot(va[f], vb[f])) for f in va if f in vb]
    return max(sims, default=0.0)


def mmr(
    ranked: Sequence[tuple[str, float]],
    titles: Mapping[str, str],
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    k: int,
    lam: float = DEFAULT_LAMBDA,
) -> list[str]:
    """``ranked``: (id, fused score) best first -> ``k`` ids in MMR order."""
    if not 0.0 <= lam <= 1.0:
        raise QueryError("diverse (MMR lambda) must be between 0 and 1")
    if not ranked:
        return []
    scores = np.array([s for _, s in ranked], dtype=np.float64)
    span = scores.max() - scores.min()
    rel = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    ids = [i for i, _ in ranked]
    picked: list[int] = []
    max_sim = np.zeros(len(ids))
    left = set(range(len(ids)))
    while left and len(picked) < k:
        best = max(left, key=lambda i: (lam * rel[i] - (1 - lam) * max_sim[i], -i))
        picked.append(best)
        left.discard(best)
        for i in left:
            max_sim[i] = max(max_sim[i], similarity(ids[i], ids[best], titles, vectors))
    return [ids[i] for i in picked]


def near_duplicate_flags(ids: Sequence[str], titles: Mapping[str, str],
                         vectors: Mapping[str, Mapping[str, np.ndarray]],
                         threshold: float = DUPLICATE_COSINE) -> list[bool]:
    """Per result: is it a near-duplicate of a result ranked above it?"""
    return [any(similarity(ids[i], ids[j], titles, vectors) >= threshold for j in range(i)) for i in range(len(ids))]
