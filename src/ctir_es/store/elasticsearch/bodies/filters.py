"""The neutral filter grammar (``ctir_es.filters``) as Elasticsearch ``bool.filter`` clauses.

``term``/``terms``/``ids`` in a ``bool`` ``filter`` / ``must_not``
(reference/8.15/query-dsl-bool-query.html, query-dsl-ids-query.html). The same clauses go into
the lexical query, each ``knn.filter`` and each child retriever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ctir_es.errors import FilterError
from ctir_es.filters import Filter

from .index import (
    CATEGORY_PATH_FIELD,
    HAS_IMAGE_FIELD,
    MARKET_FIELD,
    path_key,
)


def _category(f: Filter) -> dict[str, Any]:
    return {"term": {CATEGORY_PATH_FIELD: path_key(f.path)}}


def _market_eq(f: Filter) -> dict[str, Any]:
    return {"term": {MARKET_FIELD: f.value}}


def _market_in(f: Filter) -> dict[str, Any]:
    # markets are stored lowercased (Product.from_mapping); "eq" is lowercased by Filter itself
    return {"terms": {MARKET_FIELD: [str(v).lower() for v in f.value]}}


def _has_image(f: Filter) -> dict[str, Any]:
    return {"term": {HAS_IMAGE_FIELD: bool(f.value)}}


def _id_in(f: Filter) -> dict[str, Any]:
    return {"ids": {"values": list(f.value)}}


def _id_not_in(f: Filter) -> dict[str, Any]:
    return {"bool": {"must_not": [{"ids": {"values": list(f.value)}}]}}


# (field, op) -> clause builder; its keys also produce the "supported" error text.
FILTER_TRANSLATIONS: dict[tuple[str, str], Callable[[Filter], dict[str, Any]]] = {
    ("category", "subtree"): _category,
    ("market", "eq"): _market_eq,
    ("market", "in"): _market_in,
    ("has_image", "eq"): _has_image,
    ("id", "in"): _id_in,
    ("id", "not_in"): _id_not_in,
}


def es_filter(filters: Sequence[Filter] | None) -> list[dict[str, Any]]:
    """Translate the neutral filter grammar into ``bool.filter`` clauses (all must hold).

    The same list goes into the lexical ``bool`` query and into each ``knn.filter``.
    """
    out = []
    for f in filters or ():
        if not isinstance(f, Filter):
            raise FilterError(
                f"expected a Filter, got {type(f).__name__}; build filters with parse_filters()"
            )
        translate = FILTER_TRANSLATIONS.get((f.field, f.op))
        if translate is None:
            supported = ", ".join(f"{field} {op}" for field, op in FILTER_TRANSLATIONS)
            raise FilterError(
                f"no Elasticsearch translation for {f.field} {f.op}; supported: {supported}"
            )
        out.append(translate(f))
    return out


