"""The Store protocol: what the ingest pipeline and the ranking layer need from a backend.

Two implementations share one contract test suite (``tests/store_contract.py``):
``EmbeddedStore`` (SQLite FTS5 + NumPy, the default) and ``ElasticsearchStore``.
Fusion is NOT a store concern: ``search`` returns one ranked list per source and the
``ranking`` package fuses them, identically for both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..filters import Filter
from ..schema import (
    DEFAULT_FIELD_WEIGHTS,
    LEXICAL_FIELDS,
    LEXICAL_SOURCE,
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    StoredProduct,
    VectorField,
    VectorQuery,
    WriteResult,
)

__all__ = [
    "DEFAULT_FIELD_WEIGHTS",
    "LEXICAL_FIELDS",
    "LEXICAL_SOURCE",
    "Document",
    "Hit",
    "IndexSchema",
    "LexicalQuery",
    "Store",
    "StoredProduct",
    "VectorField",
    "VectorQuery",
    "WriteResult",
]


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
