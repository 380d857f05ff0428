"""What a search returns: ranked, explained results (each with its per-source ranks and scores),
and the notes a user should see about the ranking (for instance that no product matched the
words, so the list comes from vectors alone).

``to_json`` is the one JSON shape of a result: the CLI's ``--json`` prints it, the HTTP API
(``service.serialise``) sends it with its image as a link and its page fields, and the web page
reads that. ``service/models.py`` describes the same shape for OpenAPI; ``tests/test_result_shape.py``
checks the two against each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .ranking.fusion import FUSIONS, SourceScore, contribution
from .values import Value
from .vocabulary import LEXICAL_SOURCE

if TYPE_CHECKING:
    from .shop.cursor import PinnedPage


@dataclass(frozen=True, slots=True)
class SearchResult:
    rank: int
    id: str
    title: str
    categories: list[list[str]]
    image: str | None
    score: float
    sources: Mapping[str, SourceScore]
    values: Mapping[str, Value] = field(default_factory=dict)  # the typed facts: price, brand, rating...
    # collapse only (ctir_es.shop.collapse): other products of its group folded under it ("+5 colours")
    collapsed: int | None = None

    def to_json(self, fusion: str, weights: Mapping[str, float],
                image_url: Callable[[str], str] | None = None) -> dict[str, Any]:
        """This result as JSON; each source with its rank, raw score, normalised score (linear
        fusion) and its ``contribution`` to the fused score under ``fusion`` and ``weights``.
        ``image_url`` (product id -> link): the image as ``image_url``, a link, instead of
        ``image``, the stored path or URL (the HTTP API never sends a local path)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in ("rank", "id", "title", "categories")}
        if image_url is None:
            out["image"] = self.image
        else:
            out["image_url"] = image_url(self.id) if self.image else None
        out.update(score=self.score, values=dict(self.values))
        if self.collapsed is not None:
            out["collapsed"] = self.collapsed
        method = fusion.split("+", 1)[0]  # "rrf+mmr(0.7)": diversified after rrf fusion
        out["sources"] = {name: _source_json(s, method, weights.get(name, 1.0)) for name, s in self.sources.items()}
        return out


def _source_json(score: SourceScore, method: str, weight: float) -> dict[str, Any]:
    """A source's rank and raw score, its normalised score (linear fusion) and what it added."""
    shown = {"rank": score.rank, "score": score.score, "normalised": score.normalised,
             "contribution": contribution(method, score, weight) if method in FUSIONS else None}
    return {k: v for k, v in shown.items() if v is not None}


@dataclass(frozen=True, slots=True)
class SearchResponse:
    query: str
    mode: str
    fusion: str
    sources: list[str]
    results: list[SearchResult] = field(default_factory=list)
    weights: Mapping[str, float] = field(default_factory=dict)
    # Candidates each source returned before fusion (None where the store fused server-side
    # and did not say), and short user-facing notes about this ranking.
    source_hits: Mapping[str, int | None] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    # Whose calibrated weights a category query was served: "seen" / "unseen" (the query group's,
    # see ranking.calibration), "all" (the single ones); None when none were (the caller's or the
    # fixed defaults).
    calibration_group: str | None = None
    # Shop requests only (ctir_es.shop): facet counts by name, and how the candidates were
    # arranged (cutoff, sort window, collapse, disjunctive retrievals); empty otherwise.
    facets: Mapping[str, Any] = field(default_factory=dict)
    shop: Mapping[str, Any] = field(default_factory=dict)
    # A page of a pinned ranking (``Search.search(pin=True)`` or ``cursor=``, ctir_es.shop.cursor):
    # where it starts and the next page's cursor; None when nothing was pinned.
    page: PinnedPage | None = None

    @property
    def next_cursor(self) -> str | None:
        """The cursor of the next page of a pinned ranking (None: the last page, or not pinned)."""
        return self.page.next_cursor if self.page is not None else None

    def to_json(self, image_url: Callable[[str], str] | None = None) -> dict[str, Any]:
        """The response as JSON, its results by ``SearchResult.to_json`` (``image_url``: there)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in ("query", "mode", "fusion", "sources")}
        out.update(weights=dict(self.weights), calibration_group=self.calibration_group,
                   source_hits=dict(self.source_hits), notices=list(self.notices),
                   results=[r.to_json(self.fusion, self.weights, image_url) for r in self.results])
        if self.shop:
            out.update(facets=dict(self.facets), shop=dict(self.shop))
        if self.page is not None:
            out.update(next_cursor=self.page.next_cursor, page=self.page.to_json())
        return out


def ranking_notices(sources: list[str], source_hits: Mapping[str, int | None]) -> list[str]:
    """What a user should know about where the results came from."""
    lexical = source_hits.get(LEXICAL_SOURCE)
    others = [s for s in sources if s != LEXICAL_SOURCE and source_hits.get(s)]
    if LEXICAL_SOURCE in sources and lexical == 0 and others:
        only = ", ".join(others)
        return [f"no product matched the words: results come from {only} vectors alone"]
    return []
