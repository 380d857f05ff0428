"""The Store protocol: what the ingest pipeline and the ranking layer need from a backend.

Two implementations share one contract test suite (``tests/store_contract.py``):
``EmbeddedStore`` (SQLite FTS5 + NumPy, the default) and ``ElasticsearchStore``.
Fusion is NOT a store concern: ``search`` returns one ranked list per source and the
``ranking`` package fuses them, identically for both backends (a store with ``ServerFusion``
fuses on its server or says it cannot). The boundary types (``Hit``, ``LexicalQuery``,
``Document``, ``IndexSchema``, ...) live in ``ctir_es.schema``; import them from there: this
module defines only the protocols (and re-exports nothing, ``tests/test_boundaries.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import StoreError
from ..filters import Filter
from ..products import Product
from ..schema import (
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
    "CAPABILITIES",
    "CategoryCounter",
    "Deleter",
    "IdLister",
    "ImageRoots",
    "IndexMetadata",
    "ServerFusion",
    "Store",
    "SummaryReader",
    "VectorReader",
    "VectorWriter",
    "new_vectors",
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

    def search(self, lexical: LexicalQuery | None, vectors: Sequence[VectorQuery], k: int,
               filters: Sequence[Filter] = ()) -> dict[str, list[Hit]]:
        """Run the lexical query and each vector query (one round trip where the backend
        allows) and return one ranked list per source: ``"bm25"`` and each ``VectorQuery.name``."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, StoredProduct]: ...

    def count(self) -> int: ...

    def stats(self) -> dict[str, Any]:
        """Counts, fields and the encoders the index was built with."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- optional capabilities
# Named, typed extras beyond ``Store``. Both stores implement all of them and the shared
# contract suite tests them; a caller checks with ``isinstance(store, Capability)`` and says
# clearly when a (third-party) store lacks one.


@runtime_checkable
class VectorReader(Protocol):
    """Stored vectors by product id ("more like this" on a product's own vectors)."""

    def vectors(self, ids: Sequence[str], field: str) -> dict[str, np.ndarray]:
        """The stored ``field`` vectors of ``ids``; an id without one (or unknown) is absent."""
        ...


@runtime_checkable
class CategoryCounter(Protocol):
    """Products per category node, every level (the category tree, ``GET /categories``)."""

    def category_counts(self) -> dict[tuple[str, ...], int]:
        """``{path: products}`` for every node; a product counts once per node."""
        ...


@runtime_checkable
class Deleter(Protocol):
    """Delete products by id."""

    def delete(self, ids: Sequence[str]) -> int:
        """Delete ``ids`` (unknown ones are ignored); returns how many existed. The next
        search no longer sees them."""
        ...


@runtime_checkable
class ImageRoots(Protocol):
    """Where the catalogue's local images live, so a server may serve them."""

    def image_dirs(self) -> list[str]:
        """Distinct directories of the local absolute image paths products refer to (URLs
        and relative paths left out), sorted."""
        ...


@runtime_checkable
class IdLister(Protocol):
    """Every product id (audits, exports, consistency checks)."""

    def ids(self) -> list[str]:
        """All product ids, sorted."""
        ...


@runtime_checkable
class IndexMetadata(Protocol):
    """Small JSON documents kept with the index under a name (e.g. serving weights calibrated
    on the catalogue). They survive re-ingests, and on Elasticsearch reindexes and swaps."""

    def get_metadata(self, key: str) -> dict[str, Any] | None:
        """The document stored under ``key``, or None."""
        ...

    def put_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        """Store (or replace) ``value`` (a JSON object) under ``key``."""
        ...


@runtime_checkable
class VectorWriter(Protocol):
    """Add or replace the vectors of one field for products already stored, in place."""

    def write_vectors(self, field: str, spec: VectorField, vectors: Mapping[str, np.ndarray],
                      checkpoint: tuple[str, int] | None = None) -> int:
        """Write ``vectors`` (product id -> vector of ``spec.dims``) into ``field``. Ids not in
        the index are skipped (never created). The field need not be in ``schema()`` yet: the
        store makes room for it (Elasticsearch: adds the dense_vector mapping if absent), but
        ``schema()`` does NOT list it until ``set_vector_field``. A vector of other dims, or a
        non-finite one, raises StoreError naming the id; nothing of that call is written then.
        ``checkpoint=(key, position)`` is recorded together with the write, exactly like
        ``upsert``'s (read back with ``checkpoint(key)``). Returns how many products got a vector.

        An all-zero vector is refused like a non-finite one (as ``upsert`` does: cosine is
        undefined). ``spec.dims`` other than the field's (in ``schema()``, or of vectors
        already stored in it) raise ``SchemaMismatch`` before anything is written."""
        ...

    def set_vector_field(self, field: str, spec: VectorField) -> IndexSchema:
        """Put ``field`` with ``spec`` (dims, similarity, encoder manifest) into the stored
        schema, replacing an existing entry of the same name (a retrained model has another
        manifest; other dims than the stored ones raise SchemaMismatch unless no product
        holds a vector of that field yet). Returns the schema in force.

        Elasticsearch cannot change the dims (or similarity) of a mapped field: there other
        dims always raise ``SchemaMismatch`` once the field is in the mapping."""
        ...


@runtime_checkable
class SummaryReader(Protocol):
    """What a shop request ranks and counts its candidates by (facets, sort, value collapse):
    each product's values and categories, without the rest of the record. On Elasticsearch
    that reads doc values instead of ``_source``, a tenth of ``get``'s cost for ~200 ids."""

    def summaries(self, ids: Sequence[str]) -> dict[str, Product]:
        """``{id: Product}`` whose ``values`` and ``categories`` equal what ``get`` reads back
        (its other fields may be empty); unknown ids are absent."""
        ...


CAPABILITIES: tuple[type, ...] = (
    VectorReader,
    CategoryCounter,
    Deleter,
    ImageRoots,
    IdLister,
    IndexMetadata,
    VectorWriter,
    SummaryReader,
)
METADATA_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_METADATA_BYTES = 1_000_000


def new_vectors(field: str, spec: VectorField, vectors: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """``VectorWriter.write_vectors``' input checked (no I/O): the ids and their vectors as one
    float32 matrix of ``spec.dims`` columns, in the mapping's order. A vector of other dims, a
    non-finite or an all-zero one raises ``StoreError`` naming the (first such) id."""
    if not isinstance(field, str) or not field:
        raise StoreError(f"bad vector field name {field!r}")
    dims = int(spec.dims)
    if dims < 1:
        raise StoreError(f"{field}: dims must be >= 1, got {spec.dims}")
    ids: list[str] = []
    arrays: list[np.ndarray] = []
    for pid, vec in vectors.items():
        if not isinstance(pid, str):
            raise StoreError(f"product ids must be strings, got {pid!r} ({type(pid).__name__})")
        arr = vec if type(vec) is np.ndarray else np.asarray(vec)
        if arr.shape != (dims,):
            raise StoreError(f"vector {field!r} of product {pid!r} has shape {arr.shape}, expected ({dims},); "
                             "nothing was written")
        ids.append(pid)
        arrays.append(arr)
    if not arrays:
        return ids, np.zeros((0, dims), dtype=np.float32)
    try:
        matrix = np.asarray(arrays, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"vectors of {field!r} are not numbers ({exc}); nothing was written") from None
    finite = np.asarray(np.isfinite(matrix).all(axis=1))
    nonzero = np.asarray(matrix.any(axis=1))
    bad = np.flatnonzero(~(finite & nonzero))
    if bad.size:
        first = int(bad[0])
        why = "holds NaN or infinity" if not finite[first] else "is all zeros (cosine is undefined)"
        more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
        raise StoreError(f"vector {field!r} of product {ids[first]!r} {why}{more}; nothing was written")
    return ids, matrix


def metadata_json(key: str, value: Mapping[str, Any]) -> str:
    """``value`` as compact JSON after checking ``key`` and the size (``StoreError`` if not)."""
    if not isinstance(key, str) or not METADATA_KEY.match(key):
        raise StoreError(
            f"bad metadata key {key!r}: 1-128 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit"
        )
    if not isinstance(value, Mapping):
        raise StoreError(f"metadata {key!r} must be a JSON object, got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"metadata {key!r} is not JSON: {exc}") from None
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise StoreError(f"metadata {key!r} is larger than {MAX_METADATA_BYTES} bytes")
    return text


@runtime_checkable
class ServerFusion(Protocol):
    """Hybrid fusion in ONE server round trip (Elasticsearch retrievers), where the cluster can.
    Only ``ElasticsearchStore`` has it. The store never fuses client-side: it says it cannot."""

    def search_fused(self, lexical: LexicalQuery | None, vectors: Sequence[VectorQuery], k: int,
                     filters: Sequence[Filter] = (), *, method: str = "rrf", weights: Mapping[str, float] | None = None,
                     window: int | None = None) -> list[Hit]:
        """The fused top ``k`` (no per-source breakdown), or ``ServerFusionUnavailable`` with the
        reason: the caller then fuses ``search`` runs itself (``Search`` does)."""
        ...
