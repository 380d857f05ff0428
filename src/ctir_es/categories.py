"""Category trees and image-to-category voting: pure functions over plain data.

- ``build_tree``: ``{path: products}`` (every node, as ``EmbeddedStore.category_counts``
  returns it) -> a sorted tree of ``CategoryNode`` with counts.
- ``vote_categories``: the nearest products of an image (their category paths and cosine
  similarities) -> the categories they agree on, each with a vote share in [0, 1].

Why voting over neighbours rather than a classifier: it needs nothing but the index (no
training, works for any catalogue and any CLIP weights), and each answer can be explained
by the products that voted for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from .errors import QueryError
from .products import CategoryPath, format_category_path

# Softmax temperature over neighbour similarities: CLIP cosines of near-duplicates and
# mere look-alikes differ by a few hundredths, so a small temperature lets the closest
# neighbours outvote a long tail (0.05 ~ CLIP's own logit scale of 1/0.07, a bit sharper).
VOTE_TEMPERATURE = 0.05


@dataclass(frozen=True, slots=True)
class CategoryNode:
    """One node of the category tree: its name, full path (root first) and product count."""

    name: str
    path: CategoryPath
    count: int
    children: list[CategoryNode] = field(default_factory=list)

    def to_json(self, max_depth: int | None = None) -> dict[str, Any]:
        children = [] if max_depth is not None and len(self.path) >= max_depth else self.children
        return {
            "name": self.name,
            "path": list(self.path),
            "label": format_category_path(self.path),
            "count": self.count,
            "children": [c.to_json(max_depth) for c in children],
        }


def build_tree(counts: Mapping[CategoryPath, int]) -> list[CategoryNode]:
    """The roots of the tree; children sorted by name. A node missing from ``counts`` while
    a descendant is present (never the case for stores that count every prefix) gets the
    sum of its children."""
    children: dict[CategoryPath, dict[str, CategoryPath]] = {(): {}}
    for path in counts:
        for depth in range(1, len(path) + 1):
            node = tuple(path[:depth])
            children.setdefault(node, {})
            children.setdefault(node[:-1], {})[node[-1]] = node

    def make(path: CategoryPath) -> CategoryNode:
        kids = [make(children[path][name]) for name in sorted(children[path], key=str.casefold)]
        count = counts.get(path)
        if count is None:
            count = sum(k.count for k in kids)
        return CategoryNode(path[-1], path, int(count), kids)

    return [make(children[()][name]) for name in sorted(children[()], key=str.casefold)]


def _words(path: CategoryPath) -> list[str]:
    return [w for w in " ".join(path).casefold().replace(",", " ").split() if w.isalnum()]


def _word_match(word: str, words: Sequence[str]) -> float:
    """1 for the same word, its similarity when close (a typo, a plural), else 0."""
    best = max((SequenceMatcher(None, word, w).ratio() for w in words), default=0.0)
    return 1.0 if word in words else best if best >= 0.8 else 0.0


def closest_paths(path: CategoryPath, known: Iterable[CategoryPath], n: int = 3) -> list[CategoryPath]:
    """The known paths nearest to ``path``: the most of its words (exact, or within a typo), then
    the most similar text, then the shortest; none when no word matches (``"Nope"``)."""
    wanted = _words(path)
    text = format_category_path(path).casefold()
    scored = []
    for candidate in known:
        words = _words(candidate)
        matched = sum(_word_match(w, words) for w in wanted) / max(len(wanted), 1)
        if matched > 0:
            similar = SequenceMatcher(None, text, format_category_path(candidate).casefold()).ratio()
            scored.append((-matched, -similar, len(candidate), candidate))
    return [c for *_, c in sorted(scored)[:n]]


def unknown_category_notice(
    path: CategoryPath, known: Mapping[CategoryPath, int], what: str, *, exact: bool = True
) -> str | None:
    """A notice when ``path`` is not a category of the index (``known``: every node, as
    ``category_counts`` returns it), naming the closest ones or else the roots; None when it is.

    ``what`` says what the unknown path does to the results (a query still matches its words;
    a filter on it matches nothing). ``exact=False`` accepts another letter case (a query's
    words match regardless; a filter does not)."""
    if not path or tuple(path) in known:
        return None
    if not exact and tuple(p.casefold() for p in path) in {tuple(k.casefold() for k in c) for c in known}:
        return None
    close = closest_paths(path, known)
    if close:
        hint = "closest: " + ", ".join(repr(format_category_path(c)) for c in close)
    else:
        roots = sorted((p[0] for p in known if len(p) == 1), key=str.casefold)
        hint = "its top categories: " + (", ".join(roots[:8]) + (", ..." if len(roots) > 8 else "") or "none")
    return f"no category {format_category_path(path)!r} in this index: {what}; {hint}"


@dataclass(frozen=True, slots=True)
class CategoryScore:
    path: CategoryPath
    score: float  # share of the neighbours' (softmax-weighted) vote, in [0, 1]
    support: int  # how many of the neighbours are in this category

    def to_json(self) -> dict[str, Any]:
        return {
            "path": list(self.path),
            "label": format_category_path(self.path),
            "score": self.score,
            "support": self.support,
        }


@dataclass(frozen=True, slots=True)
class Categorization:
    """Top categories for an image, and how they were found."""

    categories: list[CategoryScore]
    neighbours: int  # products that voted
    depth: int | None  # paths were cut to this many levels (None: full paths)
    method: str = "knn-vote"

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "neighbours": self.neighbours,
            "depth": self.depth,
            "categories": [c.to_json() for c in self.categories],
        }


def vote_categories(
    neighbours: Sequence[tuple[Iterable[CategoryPath], float]],
    *,
    k: int = 5,
    depth: int | None = 3,
    temperature: float = VOTE_TEMPERATURE,
) -> Categorization:
    """Weighted vote of the neighbours' category paths (cut to ``depth`` levels).

    Each neighbour carries ``softmax(similarity / temperature)`` of weight, shared equally
    among its distinct (cut) paths; a category's score is the sum of its voters' weights.
    Scores therefore sum to 1 over the categories returned when ``k`` is large enough.
    """
    if k < 1:
        raise QueryError("k must be at least 1")
    if depth is not None and depth < 1:
        raise QueryError("depth must be at least 1 (or None for full paths)")
    if temperature <= 0 or not math.isfinite(temperature):
        raise QueryError("temperature must be a positive number")
    voters = [(paths, sim) for paths, sim in neighbours if math.isfinite(sim)]
    if not voters:
        return Categorization([], 0, depth)
    top = max(sim for _, sim in voters)
    weights = [math.exp((sim - top) / temperature) for _, sim in voters]
    total = sum(weights)
    score: dict[CategoryPath, float] = {}
    support: dict[CategoryPath, int] = {}
    for (paths, _), weight in zip(voters, weights, strict=True):
        cut = list(dict.fromkeys(tuple(p[:depth]) if depth else tuple(p) for p in paths if p))
        for path in cut:
            score[path] = score.get(path, 0.0) + weight / total / len(cut)
            support[path] = support.get(path, 0) + 1
    ranked = sorted(score, key=lambda p: (-score[p], -support[p], format_category_path(p)))[:k]
    return Categorization([CategoryScore(p, score[p], support[p]) for p in ranked], len(voters), depth)
