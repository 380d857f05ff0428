"""The request parameters several routes share, with bounds from ``Limits`` so that
``/openapi.json`` states them (clients and the fuzz tests read them from there).

Routes use them as ``Annotated`` metadata: ``k: Annotated[int, params.k] = 10``. Names of
sources, modes and fusion methods come from ``ctir_es.vocabulary``.

(No ``from __future__ import annotations``: FastAPI reads the annotations of the
``options`` dependency, which refer to this call's ``limits``.)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi import Path as PathParam

from ..errors import FilterError
from ..filters import Filter, parse_filter_text
from ..ranking.weights import parse_weights
from ..shop.cursor import IDLE_TTL, MAX_CURSOR_CHARS, PIN_DEPTH
from ..shop.request import CANDIDATE_CUTOFF, DEFAULT_FACET_SIZE, MAX_FACET_SIZE, MAX_FACETS
from ..shop.sort import SORT_FLOOR, SORT_WINDOW
from ..vocabulary import DEFAULT_FUSION, MAX_K, SOURCE_NAMES, FusionMethod
from .errors import NOT_BLANK
from .limits import Limits

MAX_FILTERS = 20  # filters in one request: bounded work per request


@dataclass(frozen=True)
class SearchOptions:
    """Filters, fusion method and weights of a search request (the keyword arguments of
    ``Search.search`` and ``Search.similar`` beside the query)."""

    filters: list[Filter]
    fusion: str | None  # None: the index's calibration for category queries, else rrf
    weights: dict[str, float] | None

    def kwargs(self) -> dict[str, Any]:
        return {"filters": self.filters, "fusion": self.fusion, "weights": self.weights}


def category_filters(within: str | None) -> list[Filter]:
    """``within``: only products under this category path (blank: no filter)."""
    return [Filter("category", "subtree", within)] if within is not None and within.strip() else []


class Params:
    """One app's shared parameter declarations (FastAPI copies them per route)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        # A blank query is a validation error (422), like an empty one.
        self.q = Query(min_length=1, max_length=limits.max_query_chars, pattern=NOT_BLANK,
                       description="A category path ('Kitchen > Blenders') or free text.")
        self.k = Query(ge=1, le=limits.max_k, description="Results per page.")
        self.offset = Query(ge=0, le=limits.max_offset, description=(
            f"Results to skip (pagination; offset + k at most {limits.max_depth}). Each page is searched "
            "again, so writes between pages can repeat or skip a product: `pin` and `cursor` cannot."))
        # stable pages (ctir_es.shop.cursor): a pinned ranking and cursors into it
        self.pin = Query(description=(
            f"Pin this query's fused ranking ({PIN_DEPTH} deep) and return `next_cursor`: later pages "
            f"(`cursor`) are slices of that same list, whatever is written meanwhile. Kept "
            f"{IDLE_TTL / 60:g} minutes after its last page, in this server process."))
        self.cursor = Query(min_length=1, max_length=MAX_CURSOR_CHARS, description=(
            "The `next_cursor` of the previous page: the next `k` of its pinned ranking (no repeat, no "
            "gap). Send the first page's query again or omit its options; one that differs is a 400. "
            "An expired cursor is a 410: search again without it."))
        # Percent-encoded by guards.ProductPath (decode with product_id_of): up to 12 characters
        # per character of the id (a 4-byte UTF-8 character is %XX%XX%XX%XX).
        self.product_id = PathParam(min_length=1, max_length=12 * limits.max_id_chars)
        self.within = Query(max_length=limits.max_query_chars, description="Only products under this category path.")
        # filters, fusion and weights (a dependency: ``Annotated[SearchOptions, params.options]``)
        self.options = Depends(_search_options(self))
        # facets, sort, collapse of /search (``Annotated[ShopOptions, params.shop]``, ctir_es.shop)
        self.shop = Depends(_shop_options)

    def depth(self, offset: int, k: int) -> int:
        """How many results to ask the library for to serve one page and know if more follow."""
        return min(offset + k + 1, MAX_K)


@dataclass(frozen=True)
class ShopOptions:
    """Facets, sort and collapse of a search request (``Search.search``'s shop arguments)."""

    facets: list[str]
    facet_size: int
    sort: str | None
    collapse: str | None

    def kwargs(self) -> dict[str, Any]:
        return {"facets": self.facets, "facet_size": self.facet_size, "sort": self.sort, "collapse": self.collapse}


def _shop_options(
    facet: Annotated[list[str] | None, Query(max_length=MAX_FACETS, description=(
        f"Count this value over the query's fused candidates (the best {CANDIDATE_CUTOFF}); repeat for more, "
        f"at most {MAX_FACETS}: `facet=brand&facet=price&facet=category`. A facet with a `filter` on the same "
        "name is counted without that filter (disjunctive: choosing Sony still shows Bose's count). Names: "
        "`category` and the index's values (GET /health); an unknown name is a 400."))] = None,
    facet_size: Annotated[int, Query(ge=1, le=MAX_FACET_SIZE, description=(
        "Values per keyword facet, nodes per level of the category facet."))] = DEFAULT_FACET_SIZE,
    sort: Annotated[str | None, Query(max_length=200, description=(
        f"relevance (default), `price_asc`, `price_desc`, `rating`, `newest`, or `NAME_asc` / `NAME_desc` "
        f"of a number value. Sorts the {SORT_WINDOW} best candidates at most, and only those scoring at "
        f"least {SORT_FLOOR:g} x the top score; the rest follow by relevance; products without the value "
        "come last. An unknown sort is a 400 that lists the index's."))] = None,
    collapse: Annotated[str | None, Query(max_length=200, description=(
        "One result per variant group, the best ranked, with `collapsed` (how many were folded): `auto` "
        "(titles without colour and size words, or title vectors with cosine >= 0.95) or a keyword value "
        "such as a parent id."))] = None,
) -> ShopOptions:
    return ShopOptions(list(facet or []), facet_size, sort, collapse)


def _search_options(params: Params) -> Callable[..., SearchOptions]:
    weights_help = (f"Per-source weights, e.g. `bm25=1,text=0.3`; sources: {', '.join(SOURCE_NAMES)} "
                    "(finite, 0..1000; unnamed sources keep their defaults; a source the query does "
                    "not use is a 400).")

    filter_help = (f"Only products matching it; repeat for more (all must hold, at most {MAX_FILTERS}): "
                   "`brand:Sony|Bose`, `-brand:Sony`, `price:500..2000`, `price:..2000`, `fk_advantage:true`, "
                   "`has:brand`, `-has:brand`, `category:A > B`. The names are the index's typed values "
                   "(GET /health lists them); an unknown name or a value of the wrong kind is a 400.")

    def search_options(
        within: Annotated[str | None, params.within] = None,
        market: Annotated[str | None, Query(max_length=64, description="Only products of this market.")] = None,
        with_image: Annotated[bool, Query(description="Only products with an image.")] = False,
        fusion: Annotated[FusionMethod | None, Query(
            description=f"How the sources are fused (default: the calibration `ctir-es calibrate` stored "
                        f"with the index, for category queries; else {DEFAULT_FUSION}).")] = None,
        weights: Annotated[str | None, Query(max_length=200, description=weights_help)] = None,
        filter: Annotated[list[str] | None, Query(
            max_length=MAX_FILTERS, description=filter_help)] = None,
    ) -> SearchOptions:
        filters = category_filters(within)
        for text in filter or []:
            if len(text) > params.limits.max_query_chars:
                raise FilterError(f"a filter is at most {params.limits.max_query_chars} characters")
            filters.append(parse_filter_text(text))  # typed against the index's values by Search
        if market is not None and market.strip():
            filters.append(Filter("market", "eq", market.strip()))
        if with_image:
            filters.append(Filter("has_image", "eq", True))
        return SearchOptions(filters, fusion, parse_weights(weights))

    return search_options
