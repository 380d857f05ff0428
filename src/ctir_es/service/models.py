"""Response shapes (they make the OpenAPI schema, and fuzzing checks answers against it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..vocabulary import FusionMethod, SourceName


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code, e.g. `not_found`, `image_too_large`.")
    message: str = Field(description="What went wrong, for people. Never a traceback.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SourceScoreOut(BaseModel):
    """One source's part in a result (``ctir_es.ranking.fusion.contribution``)."""

    rank: int = Field(description="1-based rank in this source's own list.")
    score: float = Field(description="The source's raw score: BM25, or cosine for vectors.")
    normalised: float | None = Field(None, description="Linear fusion only: min-max normalised score.")
    contribution: float = Field(description="What this source added to the fused score.")


class ResultOut(BaseModel):
    rank: int
    id: str
    title: str
    categories: list[list[str]]
    image_url: str | None = Field(description="`/products/{id}/image`, or null without an image.")
    score: float = Field(description="The fused score.")
    values: dict[str, str | float | bool] = Field(
        default_factory=dict, description="The product's typed values (price, brand, rating...): the index's "
                                          "`values` in GET /health give each one's kind and unit.")
    sources: dict[SourceName, SourceScoreOut]
    collapsed: int | None = Field(None, description="With `collapse`: products of this result's group folded "
                                                    "under it (\"+5 colours\"); absent otherwise.")


class FacetValueOut(BaseModel):
    value: str | bool = Field(description="A keyword as most candidates spell it (grouped case-insensitively), "
                                          "or true / false.")
    count: int
    filter: str = Field(description="The `filter` text that selects it (a chip), e.g. `brand:Sony`.")


class FacetBandOut(BaseModel):
    from_: float = Field(alias="from", description="Lower edge, included.")
    to: float | None = Field(description="Upper edge, excluded; null: the open top band.")
    count: int


class CategoryCountOut(BaseModel):
    path: list[str]
    label: str
    count: int = Field(description="Candidates under this node (once per product).")
    filter: str


class FacetOut(BaseModel):
    """One facet over the query's fused candidates (docs/shop-search.md, "Facets")."""

    kind: str = Field(description="keyword, number, boolean or category.")
    candidates: int = Field(description="Products counted: the query's fused candidates (without this facet's "
                                        "own filter when `disjunctive`).")
    missing: int = Field(description="Candidates without the value.")
    disjunctive: bool = Field(description="Counted without the request's filter on this name.")
    values: list[FacetValueOut] | None = Field(None, description="keyword and boolean: counts, most first.")
    distinct: int | None = Field(None, description="keyword: distinct values among the candidates.")
    other: int | None = Field(None, description="keyword: candidates holding a value beyond the listed ones.")
    unit: str | None = Field(None, description="number: its unit (INR, unix_time...).")
    count: int | None = Field(None, description="number: candidates with the value.")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    bands: list[FacetBandOut] | None = Field(None, description="number: nice bands `[from, to)` up to the 95th "
                                                               "percentile, then one open band (none for dates).")
    depth: int | None = Field(None, description="category: the deepest level counted.")
    levels: dict[str, list[CategoryCountOut]] | None = Field(None, description="category: per level, the top nodes.")


class SearchPage(BaseModel):
    query: str
    mode: str = Field(description="category, text, image or similar.")
    fusion: FusionMethod
    sources: list[SourceName] = Field(description="The ranked lists fused for this query.")
    weights: dict[SourceName, float] = Field(description="The weight of each source in the fusion.")
    calibration_group: str | None = Field(
        default=None,
        description="Category queries served with the index's calibration: whose weights - `seen` or `unseen` "
                    "(the query's category is, or is not, one the learned model trained on) or `all` (the "
                    "single weights); null when none were used (weights or fusion given, or no calibration).")
    source_hits: dict[SourceName, int | None] = Field(
        description="Candidates each source returned before fusion (null: the store fused server-side "
                    "and did not say). 0 for bm25 means no product matched the words.")
    notices: list[str] = Field(description="Short notes for the user about this ranking, e.g. that no "
                                           "product matched the words, so the results come from vectors alone.")
    offset: int
    k: int
    has_more: bool = Field(description="More results follow this page.")
    max_score: float | None = Field(description="The fused score of rank 1 (scale for score bars).")
    next_cursor: str | None = Field(None, description=(
        "With `pin` or `cursor`: pass it as `cursor` for the next page of the pinned ranking; null on "
        "its last page (and without `pin`). Opaque, valid in this server process for a while."))
    results: list[ResultOut]
    facets: dict[str, FacetOut] | None = Field(None, description="With `facet`: each facet by name.")
    shop: dict[str, Any] | None = Field(None, description=(
        "With `facet`, `sort` or `collapse`: `candidates` (fused candidates counted, at most `cutoff`), `fused`, "
        "`disjunctive_retrievals`, `sort` (`window`: how many were sorted) and `collapse` (`groups`, `folded`)."))


class ProductOut(BaseModel):
    id: str
    title: str
    categories: list[list[str]]
    attributes: dict[str, str]
    values: dict[str, str | float | bool] = Field(default_factory=dict, description="Typed values (filters, facets).")
    description: str
    market: str | None
    image_url: str | None
    vector_fields: list[str]


class CategoryNodeOut(BaseModel):
    name: str
    path: list[str]
    label: str
    count: int
    children_total: int = Field(description=(
        "Children this node has. More than `children` lists when `depth` or `limit` cut them: ask "
        "`under=<label>` (then `offset`) for them."))
    children: list[CategoryNodeOut]


class CategoryTreeOut(BaseModel):
    products: int
    nodes: int = Field(description="Nodes of the whole tree.")
    under: list[str] = Field(description="The node whose subtree is listed (`[]`: the whole tree).")
    returned: int = Field(description="Nodes in this answer (at most `limit`).")
    truncated: bool = Field(description=(
        "The node limit left nodes out: a node whose `children_total` exceeds its `children`, or more "
        "nodes of the listed level (`next_offset`)."))
    offset: int
    next_offset: int | None = Field(description=(
        "The `offset` of the next page of the listed level; null when this answer lists its last node."))
    tree: list[CategoryNodeOut]


class CategoryScoreOut(BaseModel):
    path: list[str]
    label: str
    level: int = Field(description="Levels of the path (1 = a root).")
    score: float = Field(description="Fused score, 0..1: a distribution over the nodes of one level.")
    support: int = Field(description="Voters (neighbouring products or scored labels) through this node.")
    signals: dict[str, float] = Field(description="Each voting signal's own score for this node.")


class SignalOut(BaseModel):
    name: str = Field(description="title, image, bm25, names or clip_ita.")
    voters: int = Field(description="Products or labels that voted (0: the signal did not vote).")
    weight: float = Field(description="Its weight in the fusion (0 when it did not vote).")
    note: str | None = Field(None, description="Why the signal did not vote.")


class CategorizeOut(BaseModel):
    query: str
    method: str
    neighbours: int
    depth: int | None
    categories: list[CategoryScoreOut]
    path: list[CategoryScoreOut] = Field(description="The suggested path, root first.")
    levels: dict[str, list[CategoryScoreOut]] = Field(description="Best nodes per level.")
    signals: list[SignalOut]


class AuditEntryOut(BaseModel):
    id: str
    title: str
    stored: list[str]
    stored_label: str
    suggested: list[str]
    suggested_label: str
    stored_score: float = Field(description="Fused score of the stored node at the deepest audited level.")
    suggested_score: float
    gap: float = Field(description="The largest per-level gap: best node's score minus the stored node's.")
    suspicion: float = Field(description="Mean per-level gap; the ranking key.")
    level: int = Field(description="The level with the largest gap.")


class AuditOut(BaseModel):
    audited: int
    depth: int
    entries: list[AuditEntryOut]
    total: int = Field(description="Products in the selection (the index, or `within`).")
    offset: int = Field(description="Where in the selection (id order) this page starts.")
    next_offset: int | None = Field(description="The `offset` of the next page; null on the last one.")


class HealthOut(BaseModel):
    status: str
    products: int
    backend: str
    vector_fields: list[str]
    values: dict[str, dict[str, str | None]] = Field(
        default_factory=dict, description="The typed values this index filters on (`?filter=NAME:...`): "
                                          "each one's `kind` (keyword, number, boolean) and `unit`.")
    image_search: bool = Field(description="Image upload search and categorize are available.")
    image_roots: int = Field(description="How many local image directories may be served.")
    calibration: dict[str, Any] = Field(
        default_factory=dict,
        description="The fusion category queries use: `status` none | in force | ignored, and when "
                    "calibrated the method, weights and P@10 of the calibration and the fixed default.")
    learned: dict[str, Any] = Field(
        default_factory=dict,
        description="The model `ctir-es learn` trained on this index: `status` none | in use | stale | "
                    "not kept | unreadable; the model, when, P@10 before and after, products written "
                    "since, category nodes it never saw, `hint` when stale; `problem` when the index's "
                    "CLIP-ITA model folder is missing (category queries are served without it).")
    integrity: str | None = Field(
        default=None,
        description="`serve` only (else absent): its background read of every page of an embedded store, "
                    "`checking` | `ok` | `skipped` (not an embedded store, or it could not be opened twice); damage found makes /health 503 "
                    "`store_corrupted`.")
    learning: dict[str, Any] | None = Field(
        default=None,
        description="`serve --learn` only (else absent): `state` running | kept | not-kept | failed | "
                    "stopped, `stage` and `progress` (`done` of `total`) while running, `started` and "
                    "`finished` (UTC), then `model`, `reason` and `headline_p10` (P@10 served, before and "
                    "after: the mean of visible and hidden categories), or `error` (one line).")
