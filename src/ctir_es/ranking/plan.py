"""Query planning: turn a query (category path, free text or image) into the store requests.

Modes:
- ``category`` (default when the text holds ``>``): BM25 weighted towards the category field,
  the category text against product title vectors, and (when the index has image vectors)
  the category text through CLIP's text tower against product images;
- ``text``: the same sources with the default field weights;
- ``image``: an image (path or URL) through CLIP's image tower against product images, and
  (when the index has CLIP title vectors) against the titles through CLIP's text tower, so a
  product without a photo is still found by its title (image-to-text).

A trained CLIP-ITA model (``category_encoder``) adds the source ``clip_ita`` to category
queries: the category text through its category head against the ``clip_ita`` product vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..encoders.base import CategoryEncoder, ImageEncoder, TextEncoder
from ..errors import QueryError
from ..products import (
    CategoryPath,
    format_category_path,
    has_surrogate,
    looks_like_category_path,
    parse_category_path,
)
from ..schema import DEFAULT_FIELD_WEIGHTS, IndexSchema, LexicalQuery, VectorQuery
from ..vocabulary import (
    CLIP_ITA_SOURCE,
    CLIP_ITA_VECTOR,
    CLIP_TITLE_SOURCE,
    CLIP_TITLE_VECTOR,
    IMAGE_SOURCE,
    IMAGE_VECTOR,
    LEXICAL_SOURCE,
    MODES,
    TEXT_SOURCE,
    TITLE_VECTOR,
)

# The names used to be defined here; they stay importable from this module.
__all__ = [
    "CATEGORY_FIELD_WEIGHTS", "CLIP_ITA_SOURCE", "CLIP_ITA_VECTOR", "CLIP_TITLE_SOURCE", "CLIP_TITLE_VECTOR",
    "IMAGE_SOURCE", "IMAGE_VECTOR", "LEXICAL_SOURCE", "MAX_QUERY_CHARS", "MODES", "SOURCE_WEIGHTS", "TEXT_SOURCE",
    "TITLE_VECTOR", "Plan", "detect_mode", "plan_query",
]

CATEGORY_FIELD_WEIGHTS: Mapping[str, float] = {
    "title": 2.0,
    "categories": 6.0,
    "attributes": 1.0,
    "description": 0.3,
}
MAX_QUERY_CHARS = 1_000

# Default fusion weights per mode. In serving, the category field makes BM25 near-perfect for
# category queries, and the dense sources (which never see categories) rank within and around
# it: on flipkart-1050, subtree P@10 of RRF with weights bm25 1.0 / text 0.3 was 0.986, 0.929
# and 0.833 for level 1, 2 and 3 categories, against 0.971, 0.754, 0.716 with equal weights
# (BM25 alone: 0.986, 0.992, 0.874; see docs/cli.md, "Query").
# Image queries: image-to-image leads and image-to-title (CLIP's image tower against its text
# tower) weighs 0.3, the weight of the secondary dense sources of category queries. A prior, not
# a measurement (no real CLIP weights offline); measure a catalogue with `evaluate --task i2t`.
# RRF rewards a product found by both lists, so this weight trades two things off:
# - the product a photo shows (image rank 1), when its title is not among the title list's
#   candidates, can be passed only by products with image rank <= 27 (1/(60+r) + 0.3/61 > 1/61);
#   at weight 0.5 it could fall past rank 50 (seen with the tiny random CLIP);
# - a product without a photo, at title rank r, scores as image rank 3.3 r + 140 would: after
#   the image candidates, unless few products have photos. `--weight clip_title=1` interleaves
#   the two lists.
SOURCE_WEIGHTS: Mapping[str, Mapping[str, float]] = {
    "category": {LEXICAL_SOURCE: 1.0, TEXT_SOURCE: 0.3, IMAGE_SOURCE: 0.3, CLIP_ITA_SOURCE: 0.3},
    "text": {LEXICAL_SOURCE: 1.0, TEXT_SOURCE: 1.0, IMAGE_SOURCE: 1.0},
    "image": {IMAGE_SOURCE: 1.0, CLIP_TITLE_SOURCE: 0.3},
}


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    text: str  # the normalised query text ("" for image queries)
    lexical: LexicalQuery | None
    vectors: Sequence[VectorQuery] = field(default_factory=tuple)

    @property
    def weights(self) -> dict[str, float]:
        """The mode's default fusion weights for the sources this plan uses."""
        defaults = SOURCE_WEIGHTS[self.mode]
        return {name: defaults.get(name, 1.0) for name in self.sources}

    @property
    def sources(self) -> list[str]:
        return ([LEXICAL_SOURCE] if self.lexical else []) + [v.name for v in self.vectors]

    @property
    def category(self) -> CategoryPath | None:
        """The node a category query names (its calibration group depends on it), else None."""
        return parse_category_path(self.text) if self.mode == "category" else None


def detect_mode(text: str | None, image: object | None) -> str:
    if image is not None:
        return "image"
    return "category" if text and looks_like_category_path(text) else "text"


def plan_query(
    *,
    mode: str,
    text: str | None,
    schema: IndexSchema,
    text_encoder: TextEncoder | None,
    image_encoder: ImageEncoder | None,
    image_vector: np.ndarray | None = None,
    field_weights: Mapping[str, float] | None = None,
    num_candidates: int | None = None,
    category_encoder: CategoryEncoder | None = None,
) -> Plan:
    """Decide which sources a query uses, and encode it once for each vector field."""
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}; supported: {', '.join(MODES)}")
    if mode == "image":
        if image_vector is None:
            raise QueryError("image mode needs an image (a path or URL)")
        if IMAGE_VECTOR not in schema.vectors:
            raise QueryError("this index has no image vectors: ingest with CLIP weights to search by image")
        image_queries = [VectorQuery(IMAGE_VECTOR, image_vector, IMAGE_SOURCE, num_candidates)]
        if CLIP_TITLE_VECTOR in schema.vectors:  # the same CLIP space: the image against the titles
            image_queries.append(VectorQuery(CLIP_TITLE_VECTOR, image_vector, CLIP_TITLE_SOURCE, num_candidates))
        return Plan("image", "", None, tuple(image_queries))

    raw = (text or "").strip()
    if has_surrogate(raw):
        raise QueryError("the query text is not valid UTF-8 / Unicode (undecodable bytes or a lone surrogate)")
    if not raw:
        raise QueryError("empty query: give a category path such as 'Kitchen > Blenders' or some text")
    if len(raw) > MAX_QUERY_CHARS:
        raise QueryError(f"query longer than {MAX_QUERY_CHARS} characters")
    if mode == "category":
        normalised = format_category_path(parse_category_path(raw))
        weights = field_weights or CATEGORY_FIELD_WEIGHTS
    else:
        normalised = " ".join(raw.split())
        weights = field_weights or DEFAULT_FIELD_WEIGHTS

    vectors: list[VectorQuery] = []
    if text_encoder is not None and TITLE_VECTOR in schema.vectors:
        vec = text_encoder.encode_queries([normalised])[0]
        vectors.append(VectorQuery(TITLE_VECTOR, vec, TEXT_SOURCE, num_candidates))
    if image_encoder is not None and IMAGE_VECTOR in schema.vectors:
        vec = image_encoder.encode_texts([normalised])[0]
        vectors.append(VectorQuery(IMAGE_VECTOR, vec, IMAGE_SOURCE, num_candidates))
    if mode == "category" and category_encoder is not None and CLIP_ITA_VECTOR in schema.vectors:
        vec = category_encoder.encode_categories([normalised])[0]
        vectors.append(VectorQuery(CLIP_ITA_VECTOR, vec, CLIP_ITA_SOURCE, num_candidates))
    return Plan(mode, normalised, LexicalQuery(normalised, dict(weights)), tuple(vectors))
