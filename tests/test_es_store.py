"""``ElasticsearchStore`` against a real cluster: the shared Store contract plus ES-only checks.

The cluster is the one named by ``CTIR_ES_TEST_URL`` (credentials from the usual ``CTIR_ES_*``
variables): CI starts a real local node with ``scripts/elasticsearch-local up`` and exports it.
A URL that is set but does not answer FAILS the tests (it is not a skip). Without the
variable, a Docker engine (testcontainers, image ``CTIR_ES_TEST_IMAGE``, with a TRIAL licence
so the server-side retrievers run) is used where one answers; otherwise everything here is
skipped with a reason that names the script. Every test gets its own alias (and versions),
deleted afterwards.

ES-only checks: lifecycle (alias -> versions, the derived category fields), bulk with a real
mapping error, reindex + alias swap with searches before and after, hybrid query both
server-side (retriever, where the cluster has it) and client-side.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from store_contract import CATALOGUE, SCHEMA, StoreContract, unit

from ctir_es.errors import SchemaMismatch, ServerFusionUnavailable
from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.ranking.fusion import fuse
from ctir_es.ranking.plan import Plan
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.elasticsearch.bodies.index import INDEX_OPTION_TYPES
from ctir_es.store.elasticsearch.bulk import BulkLine, BulkOptions, BulkWriter

pytestmark = pytest.mark.integration

class TestElasticsearchStore(StoreContract):
    @pytest.fixture
    def store(self, make_store: Callable[..., ElasticsearchStore]) -> ElasticsearchStore:
        return make_store()


def test_round_trip_and_reupsert_does_not_duplicate(
    make_store: Callable[..., ElasticsearchStore],
) -> None:
    store = make_store()
    assert store.setup(SCHEMA) == SCHEMA
    assert store.upsert(CATALOGUE).written == len(CATALOGUE)
    assert store.upsert(CATALOGUE).written == len(CATALOGUE)
    assert store.count() == len(CATALOGUE)
    runs = store.search(
        LexicalQuery("pressure cooker"), [VectorQuery("title_vector", unit(0), "text")], 3
    )
    assert runs["bm25"][0].id == "p1" and runs["text"][0].id == "p1"
    # another store object on the same index sees the data and the schema recorded in _meta
    again = make_store(store.index)
    assert again.schema() == SCHEMA
    assert again.get(["p4"])["p4"].product == CATALOGUE[3].product


@pytest.mark.parametrize("option", sorted(INDEX_OPTION_TYPES))
def test_every_index_option_type_is_accepted(
    make_store: Callable[..., ElasticsearchStore], option: str
) -> None:
    dims = 64  # bbq needs >= 64 dims, int4 an even number
    schema = IndexSchema({"v": VectorField(dims, "cosine", {"id": "rand@1"})})
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(20, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = make_store(index_options=option)
    # a node older than the type (bbq_hnsw 8.16, int4_hnsw 8.15) is skipped with its reason,
    # never counted as a pass; setup() refuses it with the same words
    ok, why = store.session.cluster_info().index_options_support(option)
    if not ok:
        pytest.skip(why)
    store.setup(schema)
    docs = [Document(Product(id=f"d{i}", title=f"item {i}"), {"v": vectors[i]}) for i in range(20)]
    assert store.upsert(docs).written == 20
    hits = store.search(None, [VectorQuery("v", vectors[3])], 5)["v"]
    assert hits[0].id == "d3"
    assert store.stats()["index_options"] == option
    # the server built the type asked for (not a default of its own, such as 9.1's bbq_hnsw
    # for >= 384 dims)
    (body,) = store.client.indices.get_mapping(index=store.index).body.values()
    assert body["mappings"]["properties"]["v"]["index_options"]["type"] == option


def test_new_vector_field_is_added_to_an_existing_index(
    make_store: Callable[..., ElasticsearchStore],
) -> None:
    store = make_store()
    store.setup(SCHEMA)
    store.upsert(CATALOGUE[:1])
    wider = IndexSchema(
        {**SCHEMA.vectors, "image_vector": VectorField(4, "cosine", {"id": "img@1"})}
    )
    assert store.setup(wider) == wider
    assert make_store(store.index).schema() == wider
    doc = Document(
        CATALOGUE[1].product, {"image_vector": np.array([0.5, 0.5, 0.5, 0.5], np.float32)}, "i.jpg"
    )
    assert not store.upsert([doc]).errors
    assert store.get([doc.product.id])[doc.product.id].vector_fields == ("image_vector",)


def test_foreign_index_is_refused(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    store.client.indices.create(index=store.index)
    with pytest.raises(SchemaMismatch, match="not created by ctir-es"):
        store.setup(SCHEMA)


def test_category_subtree_tolerates_slashes_in_names(
    make_store: Callable[..., ElasticsearchStore],
) -> None:
    store = make_store()
    store.setup(SCHEMA)
    doc = Document(
        Product(
            id="c1", title="sleeve", categories=(("Computers", "Cases & Covers/Sleeves", "Laptop"),)
        ),
        {"title_vector": unit(1)},
    )
    store.upsert([doc])
    q = [VectorQuery("title_vector", unit(1))]
    hits = store.search(
        None, q, 5, [Filter("category", "subtree", ("Computers", "Cases & Covers/Sleeves"))]
    )
    assert [h.id for h in hits["title_vector"]] == ["c1"]
    assert (
        store.search(None, q, 5, [Filter("category", "subtree", ("Computers", "Cases & Covers"))])[
            "title_vector"
        ]
        == []
    )


# ---------------------------------------------------------------- lifecycle, pipeline, bulk, swap, hybrid


def test_lifecycle_alias_versions_and_derived_fields(
    make_store: Callable[..., ElasticsearchStore],
) -> None:
    store = make_store()
    store.setup(SCHEMA)
    status = store.status()
    assert status["kind"] == "alias" and status["live"] == f"{store.index}-v1"
    assert status["text_analyzer"] == store.cluster_info().text_analyzer
    store.upsert(CATALOGUE)
    raw = store.client.get(index=store.index, id="p1").body["_source"]
    # derived client-side (bodies.documents), searchable on the real mapping
    assert raw["category_top"] == ["Kitchen & Dining"]
    assert raw["category_ancestors"] == [
        "Kitchen & Dining",
        "Kitchen & Dining > Cookware",
        "Kitchen & Dining > Cookware > Pressure Cookers",
    ]
    assert raw["category_levels"] == {"l1": ["Kitchen & Dining"], "l2": ["Cookware"], "l3": ["Pressure Cookers"]}
    assert raw["category_depth"] == 3 and raw["ingested_at"]
    hits = store.client.search(index=store.index, query={"term": {"category_levels.l2": "Cookware"}})
    assert {h["_id"] for h in hits.body["hits"]["hits"]} == {"p1", "p2"}
    hits = store.client.search(
        index=store.index, query={"term": {"category_ancestors": "Kitchen & Dining > Cookware"}}
    )
    assert {h["_id"] for h in hits.body["hits"]["hits"]} == {"p1", "p2"}


def test_bulk_with_a_mapping_error(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    store.setup(SCHEMA)
    good = store.upsert(CATALOGUE[:2])
    assert good.written == 2
    writer = BulkWriter(lambda body: store.client.bulk(operations=body).body, BulkOptions())
    bad = BulkLine("bad", f'{{"index":{{"_index":"{store.index}","_id":"bad"}}}}', '{"id":"bad","title":"x","has_image":"perhaps"}')
    unknown = BulkLine("unknown", f'{{"index":{{"_index":"{store.index}","_id":"unknown"}}}}', '{"id":"unknown","title":"x","colour":"red"}')
    result = writer.write([bad, unknown])
    assert result.written == 0 and result.retries == 0
    assert "parsing" in result.errors["bad"] and "400" in result.errors["bad"]
    assert "strict_dynamic_mapping_exception" in result.errors["unknown"]
    store.client.indices.refresh(index=store.index)
    assert store.count() == 2


def test_reindex_swaps_the_alias_without_losing_searches(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    query = (LexicalQuery("pressure cooker"), [VectorQuery("title_vector", unit(0), "text")], 3)
    before = store.search(*query)
    store.put_metadata("serving", {"fusion": "linear"})
    report = store.reindex(index_options="int8_hnsw")
    assert store.get_metadata("serving") == {"fusion": "linear"}  # kept with the alias
    assert report.dest == f"{store.index}-v2" and report.count == len(CATALOGUE)
    after = store.search(*query)
    assert [h.id for h in after["bm25"]] == [h.id for h in before["bm25"]]
    assert after["text"][0].id == "p1"
    assert store.status()["live"] == f"{store.index}-v2" and store.stats()["index_options"] == "int8_hnsw"
    store.swap(f"{store.index}-v1")  # rollback
    assert store.status()["live"] == f"{store.index}-v1"


def hybrid_catalogue(store: ElasticsearchStore) -> tuple[LexicalQuery, list[VectorQuery]]:
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    return LexicalQuery("steel"), [VectorQuery("title_vector", unit(0), "text")]


def test_hybrid_query_fused_by_search_on_any_node(make_store: Callable[..., ElasticsearchStore]) -> None:
    """``fusion_location=auto`` answers the client-side ranking whether the node fuses (rrf
    matches it, below) or not (``Search`` fuses the runs itself)."""
    store = make_store()
    lexical, vectors = hybrid_catalogue(store)
    client = fuse("rrf", store.search(lexical, vectors, 100), limit=3)  # what Search does client-side
    assert client[0].id == "p1"
    auto = Search(store, fusion_location="auto")  # the server fuses, or Search does
    plan = Plan("text", "steel", lexical, vectors)
    assert [h.id for h in auto.fused_by_server(plan, 3, 100, (), "rrf", {})] == [h.id for h in client]
    filtered = auto.fused_by_server(plan, 5, 100, [Filter("category", "subtree", ("Watches",))], "rrf", {})
    assert [h.id for h in filtered] == ["p4"]


@pytest.mark.parametrize("method", ["rrf", "linear"])
def test_server_side_fusion_matches_the_client_side_one(make_store: Callable[..., ElasticsearchStore],
                                                        method: str) -> None:
    """The node's retriever fuses as ``ranking.fusion`` does (rrf: the same rank constant and
    window; linear: min-max, weighted). Skipped, with the node's reason, where it cannot."""
    store = make_store()
    allowed, why = store.cluster_info().fusion_support(method)
    if not allowed:
        pytest.skip(f"this node has no server-side {method} fusion: {why}")
    lexical, vectors = hybrid_catalogue(store)
    weights = {"bm25": 1.0, "text": 0.5} if method == "linear" else {}
    client = fuse(method, store.search(lexical, vectors, 100), weights, limit=3)
    server = store.search_fused(lexical, vectors, 3, method=method, weights=weights)
    assert [h.id for h in server] == [h.id for h in client], why
    filtered = store.search_fused(lexical, vectors, 5, [Filter("category", "subtree", ("Watches",))],
                                  method=method, weights=weights)
    assert [h.id for h in filtered] == ["p4"]


def test_a_node_without_server_side_rrf_is_refused_with_the_reason(
        make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    allowed, why = store.cluster_info().fusion_support("rrf")
    if allowed:
        pytest.skip(f"this node fuses server-side ({why}): nothing to refuse")
    lexical, vectors = hybrid_catalogue(store)
    with pytest.raises(ServerFusionUnavailable) as refused:
        store.search_fused(lexical, vectors, 3)
    assert refused.value.reason == why


def test_quantised_default_index_scores_are_cosines_within_tolerance(
    make_store: Callable[..., ElasticsearchStore],
) -> None:
    """int8_hnsw (the default) quantises vectors; on 8.18+ kNN rescoring with the float vectors
    gives exact cosines (tolerance 1e-3), before that the int8 scores (tolerance 0.03). The
    top 10 is the exact one either way on 400 products (at most one swap at the cut)."""
    dims, n = 64, 400
    rng = np.random.default_rng(11)
    matrix = rng.normal(size=(n, dims)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    schema = IndexSchema({"v": VectorField(dims, "cosine", {"id": "rand@1"})})
    store = make_store(index_options="int8_hnsw")
    store.setup(schema)
    docs = [Document(Product(id=f"q{i}", title=f"item {i}"), {"v": matrix[i]}) for i in range(n)]
    assert store.upsert(docs).written == n
    rescored = store.cluster_info().rescore_vector("int8_hnsw")
    tolerance = 1e-3 if rescored else 0.03
    for q in range(5):
        query = rng.normal(size=dims).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = matrix @ query
        want = [f"q{i}" for i in np.argsort(-exact)[:10]]
        hits = store.search(None, [VectorQuery("v", query, num_candidates=200)], 10)["v"]
        assert len(set(want) & {h.id for h in hits}) >= 9
        for hit in hits:
            assert abs(hit.score - float(exact[int(hit.id[1:])])) < tolerance, (hit, rescored)
