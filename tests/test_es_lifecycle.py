"""Index lifecycle and server-side fusion against the stub Elasticsearch (tests/es_stub.py).

What is checked is the sequence of requests the store makes and their bodies (the bodies
themselves are golden-tested in test_es_requests.py against the 8.x reference): versioned
index behind an alias, idempotent setup, refusal of mismatched encoders with the way out,
reindex + atomic alias swap, rollback, drop; capability detection from ``GET /`` and
``GET /_license`` deciding between one ``_search`` with a retriever and client-side fusion.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
from es_stub import EsState, EsStub, start

from ctir_es.errors import ConfigError, SchemaMismatch, ServerFusionUnavailable, StoreError
from ctir_es.products import Product
from ctir_es.ranking.fusion import FusedHit
from ctir_es.ranking.plan import Plan
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bodies import aliases as bodies
from ctir_es.store.elasticsearch.bodies import index as mapping
from ctir_es.store.elasticsearch.bodies import search as search_bodies
from ctir_es.store.elasticsearch.cluster import ClusterInfo, parse_version

SCHEMA = IndexSchema({"v": VectorField(4, "cosine", {"id": "tiny@1"})})
OTHER_DIMS = IndexSchema({"v": VectorField(8, "cosine", {"id": "tiny@1"})})
OTHER_MODEL = IndexSchema({"v": VectorField(4, "cosine", {"id": "bigger@2"})})


def doc(i: int, dims: int = 4) -> Document:
    v = np.zeros(dims, np.float32)
    v[i % dims] = 1.0
    return Document(
        Product(id=f"p{i}", title=f"pan {i}", categories=(("Kitchen & Dining", "Cookware", "Pans"),)),
        {"v": v},
    )


@pytest.fixture
def stub() -> Iterator[EsStub]:
    server = start(EsState())
    yield server
    server.stop()


def store_for(stub: EsStub, index: str = "products", **options: object) -> ElasticsearchStore:
    return ElasticsearchStore(EsConnection(stub.url, index), sleep=lambda s: None, **options)  # type: ignore[arg-type]


def calls(stub: EsStub, start_at: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in stub.state.requests[start_at:]]


# ---------------------------------------------------------------- setup


def test_setup_creates_the_first_version_behind_the_alias(stub: EsStub) -> None:
    store = store_for(stub)
    assert store.setup(SCHEMA) == SCHEMA
    assert calls(stub) == [
        ("GET", "/products/_mapping"),
        ("GET", "/products-v*/_alias"),
        # cluster facts, once: the index type's minimum version, the text analyser
        ("GET", "/_nodes/plugins"),
        ("GET", "/"),
        ("GET", "/_license"),
        ("PUT", "/products-v1"),
        ("GET", "/products/_mapping"),
    ]
    assert not stub.state.pipelines  # mapping v3 needs no ingest pipeline
    create = stub.state.requests[5].json()
    assert create == bodies.with_alias(mapping.index_body(SCHEMA), "products")
    assert stub.state.aliases == {"products": ["products-v1"]}


def test_setup_is_idempotent(stub: EsStub) -> None:
    store_for(stub).setup(SCHEMA)
    before = len(stub.state.requests)
    assert store_for(stub).setup(SCHEMA) == SCHEMA
    writes = [c for c in calls(stub, before) if c[0] in ("PUT", "POST", "DELETE")]
    assert writes == []  # the index exists: nothing written
    assert list(stub.state.indices) == ["products-v1"]


@pytest.mark.parametrize(
    ("other", "what"), [(OTHER_DIMS, "index has 4 dims, encoder gives 8"), (OTHER_MODEL, "'bigger@2'")]
)
def test_mismatched_encoders_are_refused_with_the_way_out(
    stub: EsStub, other: IndexSchema, what: str
) -> None:
    store_for(stub).setup(SCHEMA)
    before = len(stub.state.requests)
    with pytest.raises(SchemaMismatch) as info:
        store_for(stub).setup(other)
    message = str(info.value)
    assert what in message and "products -> products-v1" in message
    assert "Nothing was written" in message
    assert "CTIR_ES_INDEX=products-v2 ctir-es ingest" in message and "ctir-es es swap products-v2" in message
    assert [c for c in calls(stub, before) if c[0] in ("PUT", "POST", "DELETE")] == []


def test_mismatched_vectors_are_never_sent(stub: EsStub) -> None:
    store = store_for(stub)
    store.setup(SCHEMA)
    result = store.upsert([doc(1), doc(2, dims=8)])
    assert result.written == 1 and "index has 4 dims, vector has 8" in result.errors["p2"]
    sent = stub.state.bulk_requests()[0].ndjson()
    assert [next(iter(a.values()))["_id"] for a in sent[::2]] == ["p1"]


def test_bulk_documents_carry_their_derived_fields(stub: EsStub) -> None:
    store = store_for(stub)
    store.setup(SCHEMA)
    store.upsert([doc(1)])
    assert stub.state.bulk_requests()[0].query == {}  # no pipeline
    stored = stub.state.docs("products")["p1"]
    assert stored["category_top"] == ["Kitchen & Dining"]
    assert stored["category_ancestors"][-1] == "Kitchen & Dining > Cookware > Pans"
    assert stored["ingested_at"].endswith("Z")
    assert store.get(["p1"])["p1"].product == doc(1).product


def test_an_index_of_an_older_mapping_is_refused_with_the_way_out(stub: EsStub) -> None:
    body = mapping.index_body(SCHEMA)
    body["mappings"]["_meta"] = mapping.meta(SCHEMA, mapping_version=2)
    stub.state.indices["products-v1"] = {"mappings": body["mappings"], "settings": {}, "docs": {}}
    stub.state.aliases["products"] = ["products-v1"]
    store = store_for(stub)
    with pytest.raises(SchemaMismatch, match="older ctir-es mapping \\(v2, current v4"):
        store.setup(SCHEMA)
    assert store.status()["needs_reindex"] is True


def test_a_versioned_name_is_a_plain_index(stub: EsStub) -> None:
    """How an index for new encoders is filled beside the live one."""
    store_for(stub).setup(SCHEMA)
    store_for(stub, "products-v2").setup(OTHER_DIMS)
    assert stub.state.aliases == {"products": ["products-v1"]}
    assert set(stub.state.indices) == {"products-v1", "products-v2"}


# ---------------------------------------------------------------- reindex, swap, drop


def test_reindex_copies_then_swaps_the_alias_atomically(stub: EsStub) -> None:
    store = store_for(stub)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(6)])
    before = len(stub.state.requests)
    report = store.reindex(index_options="hnsw")
    assert (report.source, report.dest, report.count, report.index_options) == (
        "products-v1",
        "products-v2",
        6,
        "hnsw",
    )
    steps = calls(stub, before)
    assert ("PUT", "/products-v2") in steps and ("POST", "/_reindex") in steps
    alias_calls = [r for r in stub.state.requests[before:] if r.path == "/_aliases"]
    assert len(alias_calls) == 1  # ONE request: remove + add, applied atomically
    assert alias_calls[0].json() == {
        "actions": bodies.alias_swap_actions("products", ["products-v1"], "products-v2")
    }
    reindex = next(r for r in stub.state.requests[before:] if r.path == "/_reindex")
    assert reindex.json() == bodies.reindex_body("products-v1", "products-v2")
    assert report.method == "server"  # modules unknown: the default distribution has _reindex
    assert reindex.query == {"wait_for_completion": "true", "refresh": "true"}
    new_index = next(r for r in stub.state.requests[before:] if r.path == "/products-v2")
    assert new_index.json()["mappings"]["properties"]["v"]["index_options"] == {"type": "hnsw"}
    assert stub.state.aliases == {"products": ["products-v2"]}
    assert "products-v1" in stub.state.indices  # kept for rollback
    assert store.count() == 6 and store.stats()["index_options"] == "hnsw"
    # rollback
    store.swap("products-v1")
    assert stub.state.aliases == {"products": ["products-v1"]}


def test_reindex_refuses_options_the_vectors_cannot_take(stub: EsStub) -> None:
    store = store_for(stub)
    store.setup(SCHEMA)
    with pytest.raises(Exception, match="at least 64 dims"):
        store.reindex(index_options="bbq_hnsw")
    assert list(stub.state.indices) == ["products-v1"]


def test_reindex_of_a_plain_index_replaces_it_by_the_alias(stub: EsStub) -> None:
    body = mapping.index_body(SCHEMA)
    stub.state.indices["products"] = {"mappings": body["mappings"], "settings": {}, "docs": {"p1": {"id": "p1"}}}
    store = store_for(stub)
    store.reindex()
    swap = next(r for r in stub.state.requests if r.path == "/_aliases").json()
    assert swap["actions"][0] == {"remove_index": {"index": "products"}}
    assert stub.state.aliases == {"products": ["products-v1"]} and "products" not in stub.state.indices


def test_swap_checks_its_target(stub: EsStub) -> None:
    store = store_for(stub)
    store.setup(SCHEMA)
    with pytest.raises(StoreError, match="does not exist"):
        store.swap("products-v9")
    store_for(stub, "products-v2").setup(SCHEMA)
    with pytest.raises(StoreError, match="holds no products"):
        store.swap("products-v2")
    stub.state.indices["foreign"] = {"mappings": {"properties": {}}, "settings": {}, "docs": {}}
    with pytest.raises(SchemaMismatch, match="not created by ctir-es"):
        store.swap("foreign")
    store.swap("products-v2", allow_empty=True)
    assert stub.state.aliases == {"products": ["products-v2"]}


def test_drop_removes_every_version(stub: EsStub) -> None:
    store = store_for(stub)
    store.setup(SCHEMA)
    store.upsert([doc(1)], checkpoint=("k", 1))
    store.reindex()
    gone = store.drop()
    assert set(gone) == {"products-v1", "products-v2", "products-ctir-meta"}
    assert stub.state.indices == {} and stub.state.aliases == {}
    assert store.schema() is None


def test_status(stub: EsStub) -> None:
    store = store_for(stub)
    assert store.status()["kind"] is None
    store.setup(SCHEMA)
    status = store.status()
    assert status["alias"] == "products" and status["live"] == "products-v1"
    assert status["versions"] == ["products-v1"] and status["text_analyzer"] == "english"
    assert status["mapping_version"] == mapping.MAPPING_VERSION and not status["needs_reindex"]
    assert status["cluster"]["server_side_fusion"]["rrf"]["allowed"] is False


# ---------------------------------------------------------------- capabilities and fusion


@pytest.mark.parametrize(
    ("version", "licence", "method", "allowed", "reason"),
    [
        ("8.19.10", "basic", "rrf", False, "enterprise or trial licence, the cluster has basic"),
        ("8.19.10", "platinum", "rrf", False, "has platinum"),
        ("8.19.10", "enterprise", "rrf", True, "rrf retriever"),
        ("8.16.0", "trial", "rrf", True, "rrf retriever"),
        ("8.15.3", "trial", "rrf", False, "needs Elasticsearch 8.16+"),
        ("8.17.1", "enterprise", "linear", False, "needs Elasticsearch 8.18+"),
        ("8.18.0", "enterprise", "linear", True, "linear retriever"),
        ("9.1.0", "trial", "linear", True, "linear retriever"),
    ],
)
def test_fusion_support_table(version: str, licence: str, method: str, allowed: bool, reason: str) -> None:
    info = ClusterInfo.from_responses(
        {"version": {"number": version}}, {"license": {"type": licence, "status": "active"}}
    )
    ok, why = info.fusion_support(method)
    assert ok is allowed and reason in why


def test_cluster_info_edge_cases() -> None:
    expired = ClusterInfo.from_responses(
        {"version": {"number": "8.19.0"}}, {"license": {"type": "trial", "status": "expired"}}
    )
    assert expired.fusion_support("rrf") == (False, "the cluster's trial licence is expired")
    unknown = ClusterInfo.from_responses({"version": {"number": "8.19.0"}}, None, "403")
    assert "could not be read (403)" in unknown.fusion_support("rrf")[1]
    serverless = ClusterInfo.from_responses({"version": {"number": "8.11.0", "build_flavor": "serverless"}}, None)
    assert serverless.fusion_support("linear")[0]
    assert parse_version("9.1.0-SNAPSHOT") == (9, 1, 0) and parse_version("8") == (8, 0, 0)


def _loaded(stub: EsStub) -> ElasticsearchStore:
    store = store_for(stub)
    store.setup(SCHEMA)
    store.upsert([doc(i) for i in range(3)])
    stub.state.search_hits = [{"_id": "p2", "_score": 0.9}, {"_id": "p0", "_score": 0.5}]
    return store


LEX = LexicalQuery("pan")
VEC = [VectorQuery("v", np.array([1, 0, 0, 0], np.float32))]


def fused_by_search(store: ElasticsearchStore, lexical: LexicalQuery | None, vectors: list[VectorQuery],
                    k: int, *, method: str = "rrf", weights: dict[str, float] | None = None) -> list[FusedHit]:
    """What ``Search`` (fusion_location auto) answers over ``store``: the server's fused list, or
    the client-side fusion of ``store.search`` when the store says the server cannot."""
    plan = Plan("text", "pan", lexical, vectors)
    return Search(store, fusion_location="auto").fused_by_server(plan, k, 100, (), method, weights or {})


def test_server_side_rrf_is_one_search_when_the_licence_allows(stub: EsStub) -> None:
    stub.state.licence = "enterprise"
    store = _loaded(stub)
    before = len(stub.state.requests)
    hits = store.search_fused(LEX, VEC, 2)
    assert [h.id for h in hits] == ["p2", "p0"]
    searches = [r for r in stub.state.requests[before:] if r.path.endswith("/_search")]
    assert len(searches) == 1 and not any(r.path == "/_msearch" for r in stub.state.requests[before:])
    # int8_hnsw (the default) on 8.18+: the kNN child rescores with the float vectors
    _, expected = search_bodies.retriever_body("rrf", LEX, VEC, 2, window=100,
                                                 rescore=search_bodies.RESCORE_OVERSAMPLE)
    assert searches[0].json() == expected
    assert "rescore_vector" in expected["retriever"]["rrf"]["retrievers"][1]["knn"]
    assert searches[0].path == "/products/_search"
    assert fused_by_search(store, LEX, VEC, 2) == [FusedHit("p2", 0.9, {}), FusedHit("p0", 0.5, {})]


def test_server_side_linear_sends_weights(stub: EsStub) -> None:
    stub.state.licence = "trial"
    store = _loaded(stub)
    store.search_fused(LEX, VEC, 2, method="linear", weights={"bm25": 0.3})
    body = [r for r in stub.state.requests if r.path.endswith("/_search")][-1].json()
    children = body["retriever"]["linear"]["retrievers"]
    assert [c["weight"] for c in children] == [0.3, 1.0]
    assert {c["normalizer"] for c in children} == {"minmax"}


def test_basic_licence_fuses_client_side_with_one_notice(
    stub: EsStub, caplog: pytest.LogCaptureFixture
) -> None:
    store = _loaded(stub)  # the stub's default licence is basic
    caplog.set_level(logging.WARNING, "ctir_es")
    with pytest.raises(ServerFusionUnavailable) as refused:
        store.search_fused(LEX, VEC, 2)
    assert str(refused.value).startswith("server-side rrf fusion unavailable (the rrf retriever needs an enterprise")
    assert "\n" not in str(refused.value) and refused.value.reason
    first = fused_by_search(store, LEX, VEC, 2)
    second = fused_by_search(store, LEX, VEC, 2)
    notices = [r for r in caplog.records if "fusion unavailable" in r.getMessage()]
    assert len(notices) == 1  # once per store, not per query
    assert notices[0].getMessage().endswith("; fusing client-side")
    assert second == first and [h.id for h in first] == ["p2", "p0"]
    assert all(h.sources for h in first)  # client-side fusion explains every hit
    assert sum(r.path == "/_msearch" for r in stub.state.requests) == 2
    assert not any(r.path.endswith("/_search") for r in stub.state.requests)  # no retriever tried


def test_unreadable_licence_and_weighted_rrf_fuse_client_side(stub: EsStub) -> None:
    stub.state.licence = None  # GET /_license answers 403
    store = _loaded(stub)
    with pytest.raises(ServerFusionUnavailable, match="licence could not be read"):
        store.search_fused(LEX, VEC, 2)
    assert [h.id for h in fused_by_search(store, LEX, VEC, 2)] == ["p2", "p0"]
    stub.state.licence = "enterprise"
    store2 = _loaded(stub)
    with pytest.raises(ServerFusionUnavailable, match="no per-source weights"):
        store2.search_fused(LEX, VEC, 2, weights={"bm25": 2.0})
    weighted = fused_by_search(store2, LEX, VEC, 2, weights={"bm25": 2.0})
    assert [h.id for h in weighted] == ["p2", "p0"] and all(h.sources for h in weighted)
    with pytest.raises(ServerFusionUnavailable) as single:
        store2.search_fused(None, VEC, 2)
    assert single.value.reason == ""  # one source: nothing to fuse
    assert [h.id for h in fused_by_search(store2, None, VEC, 2)] == ["p2", "p0"]
    strict = Search(store2, fusion_location="server")  # one source is no reason to refuse
    assert strict.fused_by_server(Plan("text", "pan", None, VEC), 2, 100, (), "rrf", {})


def test_num_candidates_is_configurable(stub: EsStub) -> None:
    store = store_for(stub, num_candidates=400)
    store.setup(SCHEMA)
    store.search(None, [VectorQuery("v", np.ones(4, np.float32) / 2)], 10)
    sent = next(r for r in stub.state.requests if r.path == "/_msearch").ndjson()
    assert sent[1]["knn"]["num_candidates"] == 400 and sent[1]["knn"]["k"] == 10
    with pytest.raises(Exception, match="num_candidates"):
        store_for(stub, num_candidates=0)


# ---------------------------------------------------------------- users with fewer privileges


def test_no_monitor_privilege_falls_back_to_client_side_fusion(stub: EsStub) -> None:
    """GET /, GET _nodes and GET _license answered 403 (no ``monitor``): nothing raises; the
    facts stay unknown and fusion runs client-side with the one-line notice."""
    stub.state.licence = "enterprise"
    _loaded(stub)
    stub.state.forbidden |= {"", "_nodes", "_license"}
    store = store_for(stub)
    info = store.cluster_info()
    assert info.version == "0.0.0" and info.modules is None and info.licence_type is None
    with pytest.raises(ServerFusionUnavailable, match="version could not be read"):
        store.search_fused(LEX, VEC, 2)
    assert [h.id for h in fused_by_search(store, LEX, VEC, 2)]  # answered all the same


def test_search_only_user_without_view_index_metadata(
    stub: EsStub, caplog: pytest.LogCaptureFixture
) -> None:
    """A key with ``read`` only: the mapping read is refused, searches still answer (cosine
    assumed), and what needs the mapping says which privilege is missing."""
    _loaded(stub)
    stub.state.forbidden.add("_mapping")
    store = store_for(stub)
    caplog.set_level(logging.WARNING, "ctir_es")
    for _ in range(2):
        runs = store.search(LEX, VEC, 2)
        assert set(runs) == {"bm25", "v"} and runs["v"]
    notices = [r for r in caplog.records if "view_index_metadata" in r.getMessage()]
    assert len(notices) == 1
    with pytest.raises(StoreError, match="`read` and `view_index_metadata`"):
        store_for(stub).schema()


def test_index_options_are_checked_against_the_cluster_version(stub: EsStub) -> None:
    """bbq_hnsw needs 8.16: an 8.14 cluster gets a clear error and nothing is created."""
    stub.state.version = "8.14.3"
    wide = IndexSchema({"v": VectorField(64, "cosine", {"id": "tiny@1"})})
    with pytest.raises(ConfigError, match="bbq_hnsw needs Elasticsearch 8.16\\+, the cluster runs 8.14.3"):
        store_for(stub, index_options="bbq_hnsw").setup(wide)
    assert stub.state.indices == {}
    store_for(stub, index_options="int8_hnsw").setup(wide)  # 8.12+: fine
    assert list(stub.state.indices) == ["products-v1"]


def test_a_client_without_retrievers_falls_back_to_client_side_fusion(
    stub: EsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """elasticsearch-py < 8.14 has no ``retriever`` argument: the TypeError never escapes."""
    stub.state.licence = "enterprise"
    store = _loaded(stub)

    def old_search(*args: object, **kwargs: object) -> None:
        if "retriever" in kwargs:
            raise TypeError("search() got an unexpected keyword argument 'retriever'")
        raise AssertionError("only the retriever search is expected here")

    monkeypatch.setattr(store.client, "search", old_search)
    with pytest.raises(ServerFusionUnavailable, match="older than 8.14"):
        store.search_fused(LEX, VEC, 2)
    assert [h.id for h in fused_by_search(store, LEX, VEC, 2)]
