"""Library values as the API's JSON (shapes in ``models``): a page of results (the shape of
``SearchResponse.to_json``, with each source's share of the fused score), and a product without
its local image paths."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from ..results import SearchResponse
from ..schema import StoredProduct


def image_url(product_id: str) -> str:
    return f"/products/{quote(product_id, safe='')}/image"


def page_json(response: SearchResponse, offset: int, k: int) -> dict[str, Any]:
    """One page (``offset``, ``k``) of a response that holds at least one result more than
    the page when more follow: ``SearchResponse.to_json`` of the page's results (images as
    links), with the page's fields."""
    page = replace(response, results=response.results[offset : offset + k], page=None)
    return {
        **page.to_json(image_url=image_url),
        "offset": offset,
        "k": k,
        "has_more": len(response.results) > offset + k,
        "max_score": response.results[0].score if response.results else None,
    }


def product_json(stored: StoredProduct) -> dict[str, Any]:
    """A stored product; its image as ``image_url`` (local paths never leave the server)."""
    data = stored.product.to_json()
    del data["images"]
    return {**data, "image_url": image_url(stored.product.id) if stored.image else None,
            "vector_fields": list(stored.vector_fields)}
