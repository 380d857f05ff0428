"""The neutral filter grammar (``ctir_es.filters``) as Elasticsearch ``bool.filter`` clauses.

``term``/``terms``/``ids`` in a ``bool`` ``filter`` / ``must_not``
(reference/8.15/query-dsl-bool-query.html, query-dsl-ids-query.html). The same clauses go into
the lexical query, each ``knn.filter`` and each child retriever, so kNN PRE-filters: the
approximate search only visits matching products and returns ``k`` whenever at least ``k``
match (reference/8.15/knn-search.html#knn-search-filter-example).

Typed values (``Filter.on_value``, mapping v4) filter ``values.<name>``, with their values
already typed by ``check_filters`` (the store does that against the index's schema):

- ``in`` -> ``terms``; ``not_in`` -> ``must_not`` ``terms`` (a product without the value is
  kept: it is none of them); ``eq`` -> ``term``. A keyword field is lowercase-normalised,
  and Elasticsearch normalises the query terms the same way, so ``Sony`` matches ``SONY``;
- ``range`` -> ``range`` with ``gte`` / ``lte`` (an end that is None is left open);
- ``exists`` true -> ``exists``; false -> ``must_not`` ``exists``.
(reference/8.15/query-dsl-terms-query.html, query-dsl-range-query.html,
query-dsl-exists-query.html, normalizer.html)
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
    value_field,
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


def _not(clause: dict[str, Any]) -> dict[str, Any]:
    return {"bool": {"must_not": [clause]}}


def _value_in(f: Filter) -> dict[str, Any]:
    return {"terms": {value_field(f.field): list(f.value)}}


def _value_not_in(f: Filter) -> dict[str, Any]:
    return _not(_value_in(f))


def _value_eq(f: Filter) -> dict[str, Any]:
    return {"term": {value_field(f.field): f.value}}


def _value_range(f: Filter) -> dict[str, Any]:
    low, high = f.value
    ends = {op: end for op, end in (("gte", low), ("lte", high)) if end is not None}
    return {"range": {value_field(f.field): ends}}


def _value_exists(f: Filter) -> dict[str, Any]:
    clause = {"exists": {"field": value_field(f.field)}}
    return clause if f.value else _not(clause)


# op -> clause builder for a filter on a typed value (``values.<name>``)
VALUE_TRANSLATIONS: dict[str, Callable[[Filter], dict[str, Any]]] = {
    "in": _value_in,
    "not_in": _value_not_in,
    "eq": _value_eq,
    "range": _value_range,
    "exists": _value_exists,
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
        if f.on_value:
            translate_value = VALUE_TRANSLATIONS.get(f.op)
            if translate_value is None:
                raise FilterError(
                    f"the {f.field} filter is not typed yet ({f.op!r}): check it against the "
                    f"index's schema first (check_filters); value filters: {', '.join(VALUE_TRANSLATIONS)}"
                )
            out.append(translate_value(f))
            continue
        translate = FILTER_TRANSLATIONS.get((f.field, f.op))
        if translate is None:
            supported = ", ".join(f"{field} {op}" for field, op in FILTER_TRANSLATIONS)
            raise FilterError(
                f"no Elasticsearch translation for {f.field} {f.op}; supported: {supported}"
            )
        out.append(translate(f))
    return out


