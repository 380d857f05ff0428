"""The ``stats`` aggregation request and its response, as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .index import (
    CATEGORY_PATH_FIELD,
    HAS_IMAGE_FIELD,
    IMAGE_DIR_FIELD,
    MARKET_FIELD,
    PATH_DELIMITER,
    VECTOR_FIELDS_FIELD,
)


def stats_body() -> dict[str, Any]:
    """One aggregation request for ``stats``: products, with image, per vector field, markets."""
    return {
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "with_image": {"filter": {"term": {HAS_IMAGE_FIELD: True}}},
            "vector_fields": {"terms": {"field": VECTOR_FIELDS_FIELD, "size": 100}},
            "markets": {"terms": {"field": MARKET_FIELD, "size": 100, "missing": "-"}},
        },
    }


def parse_stats(response: Mapping[str, Any]) -> dict[str, Any]:
    aggs = response.get("aggregations", {})

    def buckets(name: str) -> dict[str, int]:
        return {str(b["key"]): int(b["doc_count"]) for b in aggs.get(name, {}).get("buckets", [])}

    total = response.get("hits", {}).get("total", {})
    return {
        "products": int(total.get("value", 0) if isinstance(total, Mapping) else total),
        "with_image": int(aggs.get("with_image", {}).get("doc_count", 0)),
        "vector_counts": buckets("vector_fields"),
        "markets": buckets("markets"),
    }


# the deepest catalogue trees seen have a few thousand nodes; a terms aggregation returns up to
# ``size`` buckets, and ``sum_other_doc_count`` > 0 says when some were left out
MAX_CATEGORY_NODES = 65_536


def category_counts_body(size: int = MAX_CATEGORY_NODES) -> dict[str, Any]:
    """Products per category node: a terms aggregation on the ancestor keys (``path_key`` of
    every prefix of every path), so each node counts a product once, as the embedded store."""
    return {
        "size": 0,
        "aggs": {"nodes": {"terms": {"field": CATEGORY_PATH_FIELD, "size": size}}},
    }


def parse_category_counts(response: Mapping[str, Any]) -> dict[tuple[str, ...], int]:
    buckets = response.get("aggregations", {}).get("nodes", {}).get("buckets", [])
    return {
        tuple(str(b["key"]).split(PATH_DELIMITER)): int(b["doc_count"]) for b in buckets
    }


def image_dirs_body(size: int = 10_000) -> dict[str, Any]:
    """The distinct directories of local product images: a terms aggregation on ``image_dir``."""
    return {"size": 0, "aggs": {"dirs": {"terms": {"field": IMAGE_DIR_FIELD, "size": size}}}}


def parse_image_dirs(response: Mapping[str, Any]) -> list[str]:
    buckets = response.get("aggregations", {}).get("dirs", {}).get("buckets", [])
    return sorted(str(b["key"]) for b in buckets)
