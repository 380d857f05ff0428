"""``OpenSearchStore`` against a real OpenSearch node: the shared Store contract plus what is
OpenSearch's own (``knn_vector`` mappings, the ``knn`` query with filters, the lexical query
type, lifecycle and reindex on the shared code, hybrid fusion refused with the reason).

The node is the one named by ``CTIR_ES_OS_TEST_URL`` (``make os-up`` / ``scripts/opensearch-local
up`` prints it): a URL that is set but does not answer FAILS; without it everything here is
skipped with a reason naming the script (``tests/os_fixtures.py``). Every test gets its own
alias (and versions), deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from os_fixtures import os_url  # noqa: F401 - a fixture
from store_contract import CATALOGUE, SCHEMA, StoreContract, unit

from ctir_es.errors import ConfigError, SchemaMismatch, ServerFusionUnavailable
from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.ranking.fusion import fuse
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.base import CAPABILITIES
from ctir_es.store.elasticsearch import EsConnection
from ctir_es.store.opensearch import OpenSearchStore

pytestmark = pytest.mark.integration


@pytest.fixture
def make_store(os_url: str) -> Iterator[Callable[..., OpenSearchStore]]:  # noqa: F811
    """Stores on per-test indices (``make_store(name)`` reopens one); all dropped afterwards."""
    made: list[OpenSearchStore] = []
    default = f"ctir-test-{uuid.uuid4().hex[:12]}"

    def make(index: str | None = None, **options: object) -> OpenSearchStore:
        options.setdefault("initial_backoff", 0.1)
        conn = EsConnection(os_url, index or default, request_timeout=60)
        store = OpenSearchStore(conn, **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        try:
            store.drop()
        finally:
            store.close()


class TestOpenSearchStore(StoreContract):
    @pytest.fixture
    def store(self, make_store: Callable[..., OpenSearchStore]) -> OpenSearchStore:
        return make_store()


def test_every_capability_is_implemented(make_store: Callable[..., OpenSearchStore]) -> None:
    store = make_store()
    assert [cap.__name__ for cap in CAPABILITIES if not isinstance(store, cap)] == []


def test_the_index_maps_knn_vectors_on_lucene(make_store: Callable[..., OpenSearchStore]) -> None:
    store = make_store()
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    live = store.status()["live"]
    body = store.client.indices.get(index=live).body[live]
    assert body["settings"]["index"]["knn"] == "true"
    prop = body["mappings"]["properties"]["title_vector"]
    assert prop["type"] == "knn_vector" and prop["dimension"] == SCHEMA.vectors["title_vector"].dims
    assert prop["method"]["engine"] == "lucene" and prop["method"]["space_type"] == "cosinesimil"
    assert store.schema() == SCHEMA
    assert store.stats()["backend"] == "opensearch" and store.stats()["index_options"] == "hnsw"


def test_knn_scores_are_the_cosines(make_store: Callable[..., OpenSearchStore]) -> None:
    """cosinesimil scores (1 + cos) / 2: read back, they are the cosines the embedded store
    reports (float HNSW: exact)."""
    store = make_store()
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    query = unit(0, 3) / np.linalg.norm(unit(0, 3))
    hits = store.search(None, [VectorQuery("title_vector", query)], len(CATALOGUE))["title_vector"]
    stored = store.vectors([h.id for h in hits], "title_vector")
    for hit in hits:
        v = stored[hit.id]
        assert hit.score == pytest.approx(float(v @ query / np.linalg.norm(v)), abs=1e-5)


def test_knn_prefilters_k_hits_whenever_k_match(make_store: Callable[..., OpenSearchStore]) -> None:
    """The Lucene engine filters during the graph search: a filter that keeps far-away
    products still returns k of them."""
    dims = 8
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    schema = IndexSchema({"v": VectorField(dims, "cosine", {"id": "rand@1"})})
    store = make_store()
    store.setup(schema)
    docs = [
        Document(Product(id=f"d{i}", title=f"item {i}", market="rare" if i % 50 == 0 else "us"), {"v": vectors[i]})
        for i in range(300)
    ]
    assert store.upsert(docs).written == 300
    hits = store.search(None, [VectorQuery("v", vectors[1])], 5, [Filter("market", "eq", "rare")])["v"]
    exact = vectors @ vectors[1]
    rare = sorted(range(0, 300, 50), key=lambda i: -exact[i])[:5]
    assert [h.id for h in hits] == [f"d{i}" for i in rare]


def test_lexical_query_is_the_clusters(make_store: Callable[..., OpenSearchStore]) -> None:
    store = make_store()
    expected = "combined_fields" if store.cluster_info().version_tuple[:2] >= (3, 2) else "cross_fields"
    assert store.multi_match_type == expected
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    runs = store.search(LexicalQuery("pressure cooker"), [VectorQuery("title_vector", unit(0), "text")], 3)
    assert runs["bm25"][0].id == "p1" and runs["text"][0].id == "p1"


def test_foreign_index_is_refused(make_store: Callable[..., OpenSearchStore]) -> None:
    store = make_store()
    store.client.indices.create(index=store.index)
    with pytest.raises(SchemaMismatch, match="not created by ctir-es"):
        store.setup(SCHEMA)


def test_other_index_types_and_similarities_are_refused_before_any_write(
    make_store: Callable[..., OpenSearchStore],
) -> None:
    with pytest.raises(ConfigError, match="int8_hnsw"):
        make_store(index_options="int8_hnsw")
    store = make_store()
    with pytest.raises(ConfigError, match="max_inner_product"):
        store.setup(IndexSchema({"v": VectorField(4, "max_inner_product", {"id": "x@1"})}))
    assert store.schema() is None


def test_reindex_swaps_the_alias_without_losing_searches(make_store: Callable[..., OpenSearchStore]) -> None:
    """The shared lifecycle on OpenSearch: no reindex module here, so the copy is client-side."""
    store = make_store()
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    query = (LexicalQuery("pressure cooker"), [VectorQuery("title_vector", unit(0), "text")], 3)
    before = store.search(*query)
    store.put_metadata("serving", {"fusion": "linear"})
    report = store.reindex()
    assert store.get_metadata("serving") == {"fusion": "linear"}
    assert report.dest == f"{store.index}-v2" and report.count == len(CATALOGUE)
    assert report.method == ("server" if store.cluster_info().server_reindex else "client")
    after = store.search(*query)
    assert [h.id for h in after["bm25"]] == [h.id for h in before["bm25"]]
    assert [h.id for h in after["text"]] == [h.id for h in before["text"]]
    store.swap(f"{store.index}-v1")
    assert store.status()["live"] == f"{store.index}-v1"


def test_hybrid_fusion_is_refused_with_the_reason_without_neural_search(
    make_store: Callable[..., OpenSearchStore],
) -> None:
    store = make_store()
    if store.cluster_info().fusion_support("rrf")[0]:
        pytest.skip("this cluster has the neural-search plugin")
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    lexical, vectors = LexicalQuery("pressure cooker"), [VectorQuery("title_vector", unit(0), "text")]
    with pytest.raises(ServerFusionUnavailable, match="opensearch-neural-search"):
        store.search_fused(lexical, vectors, 3)
    # the client-side fusion every store uses answers instead
    fused = fuse("rrf", store.search(lexical, vectors, 3))
    assert fused[0].id == "p1"


def test_an_elasticsearch_url_is_named_as_one(es_url_or_skip: str) -> None:
    store = OpenSearchStore(EsConnection(es_url_or_skip, f"ctir-test-{uuid.uuid4().hex[:12]}"))
    try:
        with pytest.raises(ConfigError, match="not OpenSearch"):
            store.setup(SCHEMA)
    finally:
        store.close()


@pytest.fixture
def es_url_or_skip() -> str:
    import os

    url = os.environ.get("CTIR_ES_TEST_URL", "").strip()
    if not url:
        pytest.skip("CTIR_ES_TEST_URL is not set: no Elasticsearch node to point --os-url at")
    return url
