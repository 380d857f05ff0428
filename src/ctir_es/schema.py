"""The values that cross the Store boundary: index schema, documents, queries and hits.

Plain data shared by the stores (``ctir_es.store``), the Elasticsearch request builders
(``ctir_es.store.elasticsearch.bodies``) and the ranking layer; it imports nothing of theirs, so those can all
depend on it without cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .products import Product
from .values import ValueSpec

# The lexical fields every store indexes, in this order. Evaluation drops "categories"
# (the answer) from the fields it queries; serving keeps it.
LEXICAL_FIELDS: tuple[str, ...] = ("title", "categories", "attributes", "description")
DEFAULT_FIELD_WEIGHTS: Mapping[str, float] = {
    "title": 3.0,
    "categories": 5.0,
    "attributes": 1.0,
    "description": 0.5,
}


@dataclass(frozen=True, slots=True)
class VectorField:
    """A dense vector field: its dims, similarity and the manifest of the encoder that fills it."""

    dims: int
    similarity: str = "cosine"  # vectors are L2-normalised; cosine == dot product
    encoder: Mapping[str, Any] = field(default_factory=dict)  # encoder manifest (id, name, dims, ...)

    def to_json(self) -> dict[str, Any]:
        return {"dims": self.dims, "similarity": self.similarity, "encoder": dict(self.encoder)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VectorField:
        return cls(int(data["dims"]), str(data.get("similarity", "cosine")), dict(data.get("encoder", {})))


@dataclass(frozen=True, slots=True)
class IndexSchema:
    """What an index holds besides text: its vector fields, and the typed values (``Product.values``)
    it can filter, facet and sort on, each with its kind and unit. Stored with the index."""

    vectors: Mapping[str, VectorField] = field(default_factory=dict)
    values: Mapping[str, ValueSpec] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vectors": {name: f.to_json() for name, f in self.vectors.items()}}
        if self.values:
            out["values"] = {name: spec.to_json() for name, spec in sorted(self.values.items())}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexSchema:
        return cls({n: VectorField.from_json(f) for n, f in data.get("vectors", {}).items()},
                   {n: ValueSpec.from_json(v) for n, v in (data.get("values") or {}).items()})

    def with_vector(self, name: str, spec: VectorField) -> IndexSchema:
        return IndexSchema({**self.vectors, name: spec}, self.values)

    def merged(self, other: IndexSchema) -> IndexSchema:
        """``other``'s fields added to this schema's; where both name one, this schema's wins (an
        index keeps the types it was built with)."""
        return IndexSchema({**other.vectors, **self.vectors}, {**other.values, **self.values})

    def differences(self, other: IndexSchema) -> list[str]:
        """Human-readable reasons why vectors built for ``other`` cannot go into ``self``."""
        out = []
        for name, mine in self.vectors.items():
            theirs = other.vectors.get(name)
            if theirs is None:
                continue  # a field the caller does not fill: fine
            if mine.dims != theirs.dims:
                out.append(f"{name}: index has {mine.dims} dims, encoder gives {theirs.dims}")
            mine_id, their_id = mine.encoder.get("id"), theirs.encoder.get("id")
            if mine_id and their_id and mine_id != their_id:
                out.append(f"{name}: index was built with encoder {mine_id!r}, now {their_id!r}")
        return out


@dataclass(frozen=True, slots=True)
class Document:
    """A product plus the vectors computed for it (L2-normalised float32, by field name)."""

    product: Product
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    image: str | None = None  # the image reference that was encoded (shown in results)


@dataclass(frozen=True, slots=True)
class StoredProduct:
    product: Product
    image: str | None
    vector_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LexicalQuery:
    """BM25 over the named fields with per-field weights (a field absent here is not searched)."""

    text: str
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FIELD_WEIGHTS))


@dataclass(frozen=True, slots=True)
class VectorQuery:
    """Exact or approximate kNN on ``field``; the result list is named ``source``."""

    field: str
    vector: np.ndarray
    source: str = ""
    num_candidates: int | None = None  # approximate stores only (Elasticsearch HNSW)

    @property
    def name(self) -> str:
        return self.source or self.field


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float


@dataclass
class WriteResult:
    written: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # product id -> reason (not retried)
