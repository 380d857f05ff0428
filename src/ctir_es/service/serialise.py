"""Library values as the API's JSON (shapes in ``models``): a page of results with each
source's share of the fused score, and a product without its local image paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..ranking.fusion import contribution
from ..results import SearchResponse, SearchResult
from ..schema import StoredProduct


def image_url(product_id: str) -> str:
    return f"/products/{quote(product_id, safe='')}/image"


def result_json(result: SearchResult, fusion: str, weights: Mapping[str, float]) -> dict[str, Any]:
    return {
        "rank": result.rank,
        "id": result.id,
        "title": result.title,
        "categories": result.categories,
        "image_url": image_url(result.id) if result.image else None,
        "score": result.score,
        "values": dict(result.values),
        "sources": {
            name: {
                "rank": s.rank,
                "score": s.score,
                "normalised": s.normalised,
                "contribution": contribution(fusion, s, weights.get(name, 1.0)),
            }
            for name, s in result.sources.items()
        },
    }


def page_json(response: SearchResponse, offset: int, k: int) -> dict[str, Any]:
    """One page (``offset``, ``k``) of a response that holds at least one result more than
    the page when more follow."""
    results = response.results[offset : offset + k]
    return {
        "query": response.query,
        "mode": response.mode,
        "fusion": response.fusion,
        "sources": response.sources,
        "weights": dict(response.weights),
        "calibration_group": response.calibration_group,
        "source_hits": dict(response.source_hits),
        "notices": list(response.notices),
        "offset": offset,
        "k": k,
        "has_more": len(response.results) > offset + k,
        "max_score": response.results[0].score if response.results else None,
        "results": [result_json(r, response.fusion, response.weights) for r in results],
    }


def product_json(stored: StoredProduct) -> dict[str, Any]:
    """A stored product; its image as ``image_url`` (local paths never leave the server)."""
    data = stored.product.to_json()
    del data["images"]
    return {**data, "image_url": image_url(stored.product.id) if stored.image else None,
            "vector_fields": list(stored.vector_fields)}
