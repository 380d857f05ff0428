"""The Store protocol: what the ingest pipeline and the ranking layer need from a backend.

Two implementations share one contract test suite (``tests/store_contract.py``):
``EmbeddedStore`` (SQLite FTS5 + NumPy, the default) and ``ElasticsearchStore``.
Fusion is NOT a store concern: ``search`` returns one ranked list per source and the
``ranking`` package fuses them, identically for both backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..filters import Filter
from ..products import Product

# The lexical fields every store indexes, in this order. Evaluation drops "categories"
# (the answer) from the fields it queries; serving keeps it.
LEXICAL_FIELDS: tuple[str, ...] = ("title", "categories", "attributes", "description")
DEFAULT_FIELD_WEIGHTS: Mapping[str, float] = {
    "title": 3.0,
    "categories": 5.0,
    "attributes": 1.0,
    "description": 0.5,
}
LEXICAL_SOURCE = "bm25"


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
    """What an index holds besides text: its vector fields. Stored with the index."""

    vectors: Mapping[str, VectorField] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"vectors": {name: f.to_json() for name, f in self.vectors.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexSchema:
        return cls({n: VectorField.from_json(f) for n, f in data.get("vectors", {}).items()})

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


@runtime_checkable
class Store(Protocol):
    """A product index. Constructors do no I/O; the first call connects / opens."""

    def setup(self, schema: IndexSchema) -> IndexSchema:
        """Create the index for ``schema``, or check an existing one against it.

        Returns the schema in force (existing fields kept). Raises ``SchemaMismatch`` when the
        index holds vectors of other dims or from another encoder.
        """
        ...

    def schema(self) -> IndexSchema | None:
        """The schema the index was built with, or None when it does not exist yet."""
        ...

    def upsert(self, docs: Sequence[Document], checkpoint: tuple[str, int] | None = None) -> WriteResult:
        """Insert or replace by id (never duplicates). ``checkpoint=(key, position)`` is
        recorded together with the batch, so a resumed ingest knows where it stopped."""
        ...

    def checkpoint(self, key: str) -> int | None:
        """The last position recorded for ``key`` by ``upsert``, or None."""
        ...

    def clear_checkpoint(self, key: str) -> None: ...

    def search(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
    ) -> dict[str, list[Hit]]:
        """Run the lexical query and each vector query (one round trip where the backend
        allows) and return one ranked list per source: ``"bm25"`` and each ``VectorQuery.name``."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, StoredProduct]: ...

    def count(self) -> int: ...

    def stats(self) -> dict[str, Any]:
        """Counts, fields and the encoders the index was built with."""
        ...

    def close(self) -> None: ...
