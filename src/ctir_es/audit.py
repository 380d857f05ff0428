"""Catalogue audit: which products look filed in the wrong category.

Each product is categorized from its own title (and vectors) by the other products - never
from its own categories, and it never votes for itself. Per level ``l`` of its stored path
(up to ``depth``), the **gap** is how much more the best node of that level scores than the
stored node: ``top_l - score(stored[:l])`` (0 when the stored node is the best). A product's
**suspicion** is the mean gap over its audited levels; the audit ranks products by it and
suggests the fused path. The measurement (seeded synthetic noise) is
``ctir_es.evaluation.audit``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .categorize import core
from .categorize.engine import Categorizer, Evidence
from .filters import Filter
from .products import CategoryPath, Product, format_category_path

DEFAULT_DEPTH = 3


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited product: where it is filed, where the signals would file it, and how much
    they disagree (the audit ranks by ``suspicion``)."""

    id: str
    title: str
    stored: CategoryPath
    suggested: CategoryPath  # the fused suggestion, to the audited depth
    stored_score: float  # fused score of the stored node at the deepest audited level
    suggested_score: float
    gap: float  # the largest per-level gap
    suspicion: float  # the mean per-level gap (what the audit ranks by)
    level: int  # the level with the largest gap (where the disagreement starts to matter most)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "stored": list(self.stored),
            "stored_label": format_category_path(self.stored),
            "suggested": list(self.suggested),
            "suggested_label": format_category_path(self.suggested),
            "stored_score": self.stored_score,
            "suggested_score": self.suggested_score,
            "gap": self.gap,
            "suspicion": self.suspicion,
            "level": self.level,
        }

    CSV_FIELDS = ("id", "title", "stored_label", "suggested_label", "stored_score", "suggested_score", "gap",
                  "suspicion", "level")


@dataclass(frozen=True)
class AuditReport:
    entries: list[AuditEntry]  # the most suspicious first
    audited: int
    depth: int

    def to_json(self) -> dict[str, Any]:
        return {"audited": self.audited, "depth": self.depth, "entries": [e.to_json() for e in self.entries]}


def judge(product_id: str, title: str, stored: CategoryPath, fused: Mapping[CategoryPath, float],
          depth: int = DEFAULT_DEPTH) -> AuditEntry:
    """One product's entry from its fused node scores (pure)."""
    levels = range(1, min(depth, len(stored)) + 1)
    gaps = []
    best_nodes = []
    for level in levels:
        best = core.ranked_at(fused, level, 1)
        top = fused[best[0]] if best else 0.0
        best_nodes.append(best[0] if best else ())
        gaps.append(max(0.0, top - fused.get(stored[:level], 0.0)))
    deepest = len(gaps)
    suggested = core.greedy_path(fused, 0.0, deepest) if deepest else ()
    at = stored[:deepest]
    worst = int(np.argmax(gaps)) if gaps else 0
    return AuditEntry(
        id=product_id,
        title=title,
        stored=stored,
        suggested=suggested,
        stored_score=fused.get(at, 0.0),
        suggested_score=fused.get(suggested, 0.0),
        gap=max(gaps, default=0.0),
        suspicion=float(np.mean(gaps)) if gaps else 0.0,
        level=worst + 1,
    )


def audit_products(
    categorizer: Categorizer,
    products: Sequence[Product],
    vectors: Mapping[str, Mapping[str, np.ndarray]],
    *,
    depth: int = DEFAULT_DEPTH,
    neighbours: int = 30,
    weights: Mapping[str, float] | core.SignalWeights | None = None,
    voters: Sequence[Filter] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[AuditEntry]:
    """Every product with a category, judged by the others; most suspicious first."""
    from .categorize.engine import DEFAULT_WEIGHTS

    used = core.SignalWeights.of(weights, DEFAULT_WEIGHTS)
    out = []
    todo = [p for p in products if p.categories]
    for n, p in enumerate(todo, start=1):
        evidence = Evidence(p.title, p.title, None, dict(vectors.get(p.id, {})), (p.id,))
        signals = categorizer.signals(evidence, neighbours=neighbours, voters=voters)
        fused = core.fuse({s: r.scores for s, r in signals.items()}, used)
        out.append(judge(p.id, p.title, tuple(p.categories[0]), fused, depth))
        if progress is not None:  # every product: one may take a network round trip per signal
            progress(n, len(todo))
    out.sort(key=lambda e: (-e.suspicion, -e.gap, e.id))
    return out
