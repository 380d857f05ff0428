"""``VectorWriter`` beyond the shared contract (tests/store_contract.py): what only one store
can show. The embedded store: dims may change while no product holds a vector, writes never
create a store, another connection sees them, and a call is a constant number of statements
(not one per product). Elasticsearch (a real node, ``CTIR_ES_TEST_URL``): the field is mapped
with the index's own ``index_options``, survives a reindex + alias swap before and after
``set_vector_field``, a mapped field's dims cannot change, and an update of an id that is
not in the index (404) is skipped by the bulk layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_contract import CATALOGUE, SCHEMA, unit

from ctir_es.errors import SchemaMismatch, StoreError
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store.base import CAPABILITIES, VectorWriter
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.embedded import EmbeddedStore

FIELD = "clip_ita"
SPEC = VectorField(4, "cosine", {"id": "clip-ita@1", "dims": 4})


def axis(i: int, dims: int = 4) -> np.ndarray:
    v = np.full(dims, 0.05, dtype=np.float32)
    v[i] = 1.0
    return v / np.linalg.norm(v)


def top(store: object, field: str, query: np.ndarray, k: int = 5) -> list[str]:
    return [h.id for h in store.search(None, [VectorQuery(field, query)], k)[field]]  # type: ignore[attr-defined]


def test_vector_writer_is_a_capability() -> None:
    assert VectorWriter in CAPABILITIES


# ---------------------------------------------------------------- embedded


@pytest.fixture
def embedded(tmp_path: Path):
    store = EmbeddedStore(tmp_path / "store.db")
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    yield store
    store.close()


def test_embedded_dims_may_change_while_no_product_holds_a_vector(embedded: EmbeddedStore) -> None:
    embedded.set_vector_field(FIELD, VectorField(8, "cosine", {"id": "clip-ita@0"}))
    wider = embedded.schema().vectors[FIELD]  # type: ignore[union-attr]
    assert wider.dims == 8
    with pytest.raises(SchemaMismatch, match="8 dims in the schema"):
        embedded.write_vectors(FIELD, SPEC, {"p1": axis(0)})  # the schema's dims first
    embedded.set_vector_field(FIELD, SPEC)  # nothing stored yet: allowed
    assert embedded.write_vectors(FIELD, SPEC, {"p1": axis(0), "p2": axis(1)}) == 2
    with pytest.raises(SchemaMismatch, match="holds vectors of 4 dims"):
        embedded.set_vector_field(FIELD, VectorField(8))
    assert embedded.schema().vectors[FIELD] == SPEC  # type: ignore[union-attr]
    # once the products holding it are gone, the dims may change again
    embedded.delete(["p1", "p2"])
    assert embedded.set_vector_field(FIELD, VectorField(8)).vectors[FIELD] == VectorField(8)


def test_embedded_writes_never_create_a_store(tmp_path: Path) -> None:
    path = tmp_path / "none" / "store.db"
    store = EmbeddedStore(path)
    with pytest.raises(StoreError, match="no store at"):
        store.write_vectors(FIELD, SPEC, {"p1": axis(0)})
    with pytest.raises(StoreError, match="no store at"):
        store.set_vector_field(FIELD, SPEC)
    assert not path.exists()
    store.close()


def test_embedded_other_connections_see_the_vectors(embedded: EmbeddedStore) -> None:
    reader = EmbeddedStore(embedded.path)
    try:
        assert top(reader, FIELD, axis(0)) == []  # loads (and caches) the empty field
        embedded.write_vectors(FIELD, SPEC, {"p1": axis(0), "p4": axis(2)})
        embedded.set_vector_field(FIELD, SPEC)
        assert top(reader, FIELD, axis(2)) == ["p4", "p1"]
        assert reader.schema().vectors[FIELD] == SPEC  # type: ignore[union-attr]
        embedded.write_vectors(FIELD, SPEC, {"p1": axis(2), "p4": axis(0)})
        assert top(reader, FIELD, axis(2), 1) == ["p1"]
    finally:
        reader.close()


def test_embedded_a_call_is_a_few_statements_not_one_per_product(embedded: EmbeddedStore) -> None:
    rng = np.random.default_rng(3)
    docs = [Document(Product(id=f"x{i}", title=f"item {i}"), {"title_vector": unit(i % 8)}) for i in range(3000)]
    embedded.upsert(docs)
    vecs = rng.normal(size=(3001, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vectors = {f"x{i}": vecs[i] for i in range(3000)} | {"ghost": vecs[3000]}
    statements: list[str] = []
    embedded._wconn.set_trace_callback(statements.append)
    try:
        assert embedded.write_vectors(FIELD, SPEC, vectors, checkpoint=("learn", 3000)) == 3000
    finally:
        embedded._wconn.set_trace_callback(None)
    assert len(statements) < 20, statements  # a constant few (the tantivy engine adds its log's), never ~3000
    embedded.set_vector_field(FIELD, SPEC)
    assert top(embedded, FIELD, vecs[1234], 1) == ["x1234"]
    got = embedded.vectors(["x7", "x2999"], FIELD)
    assert np.array_equal(got["x7"], vecs[7]) and np.array_equal(got["x2999"], vecs[2999])


def test_embedded_vectors_of_other_types_are_stored_as_float32(embedded: EmbeddedStore) -> None:
    assert embedded.write_vectors(FIELD, SPEC, {"p1": [0.0, 1.0, 0.0, 0.0], "p2": axis(1).astype(np.float64)}) == 2
    got = embedded.vectors(["p1", "p2"], FIELD)
    assert got["p1"].dtype == np.float32 and np.array_equal(got["p1"], [0, 1, 0, 0])
    with pytest.raises(StoreError, match="not numbers"):
        embedded.write_vectors(FIELD, SPEC, {"p1": np.array(["a", "b", "c", "d"])})
    with pytest.raises(StoreError, match="expected \\(4,\\)"):
        embedded.write_vectors(FIELD, SPEC, {"p1": axis(0).reshape(1, 4)})
    with pytest.raises(StoreError, match="product ids must be strings"):
        embedded.write_vectors(FIELD, SPEC, {1: axis(0)})  # type: ignore[dict-item]


# ---------------------------------------------------------------- Elasticsearch (a real node)


@pytest.fixture
def es(make_store: Callable[..., ElasticsearchStore]) -> ElasticsearchStore:
    store = make_store()
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    return store


def _live_properties(store: ElasticsearchStore) -> dict:
    body = store.client.indices.get_mapping(index=store.index).body
    return dict(next(iter(body.values()))["mappings"]["properties"])


@pytest.mark.integration
def test_es_new_field_takes_the_index_options_of_the_index(make_store: Callable[..., ElasticsearchStore]) -> None:
    first = make_store(index_options="int8_hnsw")
    first.setup(SCHEMA)
    first.upsert(CATALOGUE)
    other = make_store(first.index, index_options="hnsw")  # another process, other defaults
    assert other.write_vectors(FIELD, SPEC, {"p1": axis(0)}) == 1
    assert _live_properties(other)[FIELD]["index_options"]["type"] == "int8_hnsw"
    assert first.schema() == SCHEMA
    assert first.status()["text_analyzer"] == other.status()["text_analyzer"]


@pytest.mark.integration
def test_es_reindex_keeps_a_field_written_in_place(es: ElasticsearchStore) -> None:
    """Mid-learn (mapped, not in the schema yet) and after ``set_vector_field``, a reindex +
    alias swap keeps the field and its vectors."""
    assert es.write_vectors(FIELD, SPEC, {"p1": axis(0), "p3": axis(1)}) == 2
    report = es.reindex()
    assert report.dest == f"{es.index}-v2" and report.count == len(CATALOGUE)
    assert FIELD in _live_properties(es) and es.schema() == SCHEMA
    got = es.vectors(["p1", "p3", "p2"], FIELD)
    assert set(got) == {"p1", "p3"} and np.allclose(got["p3"], axis(1), atol=1e-6)
    assert es.write_vectors(FIELD, SPEC, {"p2": axis(2)}, checkpoint=("learn", 3)) == 1  # resumed
    assert es.checkpoint("learn") == 3  # checkpoints belong to the alias
    es.set_vector_field(FIELD, SPEC)
    assert top(es, FIELD, axis(1))[0] == "p3"
    es.reindex(index_options="int8_hnsw")
    assert es.status()["live"] == f"{es.index}-v3"
    assert es.schema() == IndexSchema({**SCHEMA.vectors, FIELD: SPEC})
    assert top(es, FIELD, axis(2))[0] == "p2" and len(top(es, FIELD, axis(2))) == 3
    assert es.get(["p1"])["p1"].vector_fields == (FIELD, "title_vector")


@pytest.mark.integration
def test_es_a_mapped_field_keeps_its_dims(es: ElasticsearchStore) -> None:
    es.set_vector_field(FIELD, SPEC)  # mapped by set_vector_field alone
    assert FIELD in _live_properties(es)
    with pytest.raises(SchemaMismatch, match="cannot change a mapped field"):
        es.set_vector_field(FIELD, VectorField(8, "cosine", {"id": "clip-ita@2"}))
    with pytest.raises(SchemaMismatch, match="cannot change a mapped field"):
        es.set_vector_field(FIELD, VectorField(4, "l2_norm", {"id": "clip-ita@2"}))
    with pytest.raises(SchemaMismatch, match="8 dims"):
        es.write_vectors("title_vector", VectorField(4), {"p1": axis(0)})
    assert es.schema() == IndexSchema({**SCHEMA.vectors, FIELD: SPEC})
    assert es.write_vectors(FIELD, SPEC, {"p5": axis(3)}) == 1
    assert top(es, FIELD, axis(3)) == ["p5"]


@pytest.mark.integration
def test_es_setup_and_writes_need_an_index(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="does not exist"):
        store.write_vectors(FIELD, SPEC, {"p1": axis(0)})
    with pytest.raises(StoreError, match="does not exist"):
        store.set_vector_field(FIELD, SPEC)


@pytest.mark.integration
def test_es_update_of_a_missing_document_is_skipped(es: ElasticsearchStore) -> None:
    """The real 404 of an ``update`` whose document is gone (deleted between the ``_mget``
    and the ``_bulk``): skipped, counted neither as written nor as an error, never created."""
    from ctir_es.store.elasticsearch.bodies import documents
    from ctir_es.store.elasticsearch.bulk import BulkLine

    es.write_vectors(FIELD, SPEC, {"p1": axis(0)})  # maps the field
    lines = [BulkLine(pid, action, source) for pid, action, source in documents.vector_update_lines(
        [("p2", axis(1), ["title_vector"]), ("ghost", axis(2), [])], FIELD, es.index)]
    result = es._writer().write(lines)
    assert result.written == 1 and result.missing == {"ghost"} and not result.errors
    es.client.indices.refresh(index=es.index)
    assert es.get(["ghost"]) == {} and es.count() == len(CATALOGUE)
    assert set(es.vectors(["p1", "p2"], FIELD)) == {"p1", "p2"}
