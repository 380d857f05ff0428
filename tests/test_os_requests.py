"""What the OpenSearch store sends, as data: the bodies as golden JSON (``tests/golden/os_*``),
the cluster facts that choose between them, the client's plain-JSON requests against a stub
node (no ``X-Elastic-Product``, no vendor media types), the hybrid query a cluster with the
neural-search plugin would get, and ``--os-url`` / ``CTIR_ES_OS_URL`` / ``[opensearch]``
choosing the store. No node needed; ``tests/test_os_store.py`` runs the store on a real one.

Regenerate the golden files after an intended change with
``CTIR_UPDATE_GOLDEN=1 pytest tests/test_os_requests.py`` and review the diff.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import elasticsearch
import numpy as np
import pytest
from test_es_requests import FILTERS, SCHEMA, golden

from ctir_es.config import Settings, load_settings
from ctir_es.errors import ConfigError, QueryError, ServerFusionUnavailable
from ctir_es.filters import Filter
from ctir_es.schema import IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bodies import index as es_index
from ctir_es.store.open import open_store
from ctir_es.store.opensearch import OpenSearchStore
from ctir_es.store.opensearch.bodies import hybrid
from ctir_es.store.opensearch.bodies import index as os_index
from ctir_es.store.opensearch.bodies import search as os_search
from ctir_es.store.opensearch.client import plain_mimetype, query_string
from ctir_es.store.opensearch.cluster import KNN_PLUGIN, NEURAL_PLUGIN, OsClusterInfo

TEXT = VectorQuery("title_vector", np.array([1.0, 0.0, 0.0, 0.0], np.float32), "text", num_candidates=50)
IMAGE = VectorQuery("image_vector", np.array([0.0, 1.0, 0.0, 0.0], np.float32), "image")
LEXICAL = LexicalQuery("blender", {"title": 3, "attributes": 1})


# ---------------------------------------------------------------- the index


def test_index_body_golden() -> None:
    body = os_index.index_body(SCHEMA)
    golden("os_index_body", body)
    # everything but the vector fields and index.knn is the Elasticsearch mapping
    es = es_index.index_body(SCHEMA, "hnsw")
    for name in SCHEMA.vectors:
        del body["mappings"]["properties"][name], es["mappings"]["properties"][name]
    assert body["settings"]["index"].pop("knn") is True
    body["mappings"]["_meta"]["ctir_es"]["index_options"] = "hnsw"
    assert body == es


def test_add_and_set_vector_field_bodies_golden() -> None:
    field = VectorField(4, "cosine", {"id": "tiny@1"})
    golden("os_add_vector_field_mapping", es_index.add_vector_field_body("clip_ita", field, "hnsw", os_index.KNN_VECTORS))
    golden("os_set_vector_field_mapping", es_index.set_vector_field_body(
        SCHEMA, "clip_ita", field, "hnsw", "english", es_index.MAPPING_VERSION, vectors=os_index.KNN_VECTORS))


@pytest.mark.parametrize(("similarity", "space"), sorted(os_index.SPACE_TYPES.items()))
def test_a_mapped_vector_field_reads_back(similarity: str, space: str) -> None:
    field = VectorField(16, similarity, {"id": "x@1"})
    prop = os_index.KNN_VECTORS.vector_mapping("v", field, "hnsw")
    assert prop["method"]["space_type"] == space and prop["method"]["engine"] == "lucene"
    read = os_index.KNN_VECTORS.mapped_vector_field({"mappings": {"properties": {"v": prop}}}, "v")
    assert read == VectorField(16, similarity)
    # an Elasticsearch dense_vector is not an OpenSearch vector field, and the other way round
    dense = es_index.vector_mapping("v", field, "hnsw")
    assert os_index.KNN_VECTORS.mapped_vector_field({"properties": {"v": dense}}, "v") is None
    assert es_index.mapped_vector_field({"properties": {"v": prop}}, "v") is None


def test_only_lucene_hnsw_and_its_similarities() -> None:
    with pytest.raises(ConfigError, match="int8_hnsw"):
        os_index.KNN_VECTORS.vector_mapping("v", VectorField(4, "cosine"), "int8_hnsw")
    with pytest.raises(ConfigError, match="max_inner_product"):
        os_index.KNN_VECTORS.vector_mapping("v", VectorField(4, "max_inner_product"), "hnsw")
    with pytest.raises(ConfigError, match="unknown index_options type 'int8_hnsw'"):
        OpenSearchStore(EsConnection("http://127.0.0.1:1"), index_options="int8_hnsw")
    assert OpenSearchStore(EsConnection("http://127.0.0.1:1")).index_options == "hnsw"


# ---------------------------------------------------------------- searches


def test_knn_body_golden() -> None:
    body = os_search.knn_body(TEXT, 10, FILTERS)
    golden("os_knn_body", body)
    clause = body["query"]["knn"]["title_vector"]
    assert clause["k"] == 10 and clause["method_parameters"] == {"ef_search": 50}
    assert body["size"] == 10


def test_knn_body_before_2_16_carries_the_candidates_in_k() -> None:
    body = os_search.knn_body(TEXT, 10, ef_search=False)
    assert body["query"]["knn"]["title_vector"] == {"vector": [1.0, 0.0, 0.0, 0.0], "k": 50}
    assert body["size"] == 10
    default = os_search.knn_body(IMAGE, 10)["query"]["knn"]["image_vector"]
    assert default["method_parameters"] == {"ef_search": 100}  # max(100, 2k), as Elasticsearch


def test_knn_body_rejects_non_finite_vectors_and_bad_k() -> None:
    with pytest.raises(QueryError, match="non-finite"):
        os_search.knn_body(VectorQuery("v", np.array([np.nan, 0, 0, 0])), 5)
    with pytest.raises(QueryError, match="k must be"):
        os_search.knn_body(TEXT, 0)


def test_msearch_body_golden() -> None:
    names, searches = os_search.msearch_body("products", LEXICAL, [TEXT, IMAGE], 5, [Filter("market", "eq", "us")])
    assert names == ["bm25", "text", "image"]
    golden("os_msearch_body", searches)
    assert searches[1]["query"]["bool"]["must"][0]["multi_match"]["type"] == "cross_fields"
    _, newer = os_search.msearch_body("products", LEXICAL, [], 5, lexical_type="combined_fields")
    assert "combined_fields" in newer[1]["query"]


def test_scores_turn_back_into_similarities() -> None:
    cosine = os_search.score_converter("cosine")
    dot = os_search.score_converter("dot_product")
    assert cosine is not None and dot is not None and os_search.score_converter("l2_norm") is None
    for cos in (-0.5, 0.0, 0.3, 1.0):
        assert cosine((1 + cos) / 2) == pytest.approx(cos)  # cosinesimil: (2 - (1 - cos)) / 2
    for ip in (-2.0, -0.25, 0.0, 0.5, 3.0):  # Lucene innerproduct: ip + 1 above 0, 1 / (1 - ip) below
        score = ip + 1 if ip > 0 else 1 / (1 - ip)
        assert dot(score) == pytest.approx(ip)


# ---------------------------------------------------------------- hybrid query (neural-search)


def test_hybrid_bodies_golden() -> None:
    names, rrf = hybrid.hybrid_body("rrf", LEXICAL, [TEXT, IMAGE], 10, [Filter("market", "eq", "us")], window=100)
    assert names == ["bm25", "text", "image"]
    golden("os_hybrid_rrf", rrf)
    assert rrf is not None and rrf["size"] == 100  # each sub-query's depth: the window, not k
    _, linear = hybrid.hybrid_body("linear", LEXICAL, [TEXT], 10, window=100, weights={"bm25": 1.0, "text": 0.3})
    golden("os_hybrid_linear", linear)
    assert linear is not None
    weights = linear["search_pipeline"]["phase_results_processors"][0]["normalization-processor"][
        "combination"]["parameters"]["weights"]
    assert weights == pytest.approx([1 / 1.3, 0.3 / 1.3], abs=1e-6) and sum(weights) == pytest.approx(1.0)
    # every sub-query is window deep and filtered like the client-side lists
    assert all(q["knn"][f]["k"] == 100 for q in rrf["query"]["hybrid"]["queries"][1:] for f in q["knn"])  # type: ignore[index]
    assert all("filter" in q["knn"][f] for q in rrf["query"]["hybrid"]["queries"][1:] for f in q["knn"])  # type: ignore[index]


def test_hybrid_needs_two_to_five_sources_and_sane_weights() -> None:
    assert hybrid.hybrid_body("rrf", LexicalQuery(""), [TEXT], 5)[1] is None
    many = [VectorQuery(f"s{i}", np.ones(4), f"s{i}") for i in range(5)]
    with pytest.raises(QueryError, match="at most 5"):
        hybrid.hybrid_body("rrf", LEXICAL, many, 5)
    with pytest.raises(QueryError, match="finite number"):
        hybrid.hybrid_body("linear", LEXICAL, [TEXT], 5, weights={"text": -1.0})
    with pytest.raises(QueryError, match="unknown server-side fusion"):
        hybrid.hybrid_body("sum", LEXICAL, [TEXT], 5)
    equal = hybrid.rrf_pipeline(["bm25", "text"])["phase_results_processors"][0]["score-ranker-processor"]
    assert equal == {"combination": {"technique": "rrf", "rank_constant": 60}}


# ---------------------------------------------------------------- what the cluster allows


def info(version: str = "2.19.1", plugins: tuple[str, ...] | None = (KNN_PLUGIN,)) -> OsClusterInfo:
    return OsClusterInfo(version=version, flavor="opensearch",
                         modules=frozenset(plugins) if plugins is not None else None)


def test_cluster_facts_choose_the_bodies() -> None:
    assert info("2.19.1").lexical_type == "cross_fields" and info("3.2.0").lexical_type == "combined_fields"
    assert info("2.15.0").ef_search_in_query is False and info("2.16.0").ef_search_in_query
    assert info(plugins=None).knn and not info(plugins=()).knn  # unknown plugins: k-NN assumed
    ok, why = info().fusion_support("rrf")
    assert not ok and NEURAL_PLUGIN in why
    assert not info(plugins=None).fusion_support("linear")[0]  # unknown: never sent
    neural = (KNN_PLUGIN, NEURAL_PLUGIN)
    assert info("2.19.1", neural).fusion_support("rrf")[0]
    assert not info("2.18.0", neural).fusion_support("rrf")[0]  # score-ranker-processor: 2.19
    assert info("2.18.0", neural).fusion_support("linear")[0]
    assert info().index_options_support("hnsw") == (True, "")  # no Elasticsearch version rules


# ---------------------------------------------------------------- the client and store on a stub node

MSEARCH = {"responses": [
    {"hits": {"hits": [{"_id": "p1", "_score": 2.5}]}, "_shards": {"total": 1, "failed": 0}},
    {"hits": {"hits": [{"_id": "p2", "_score": 0.9}, {"_id": "p1", "_score": 0.75}]}, "_shards": {"total": 1, "failed": 0}},
]}


class _FakeOpenSearch(BaseHTTPRequestHandler):
    """Answers as OpenSearch does: plain JSON only (406 for a vendor media type), no
    ``X-Elastic-Product``; records what it got."""

    requests: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []
    plugins: ClassVar[list[str]] = [KNN_PLUGIN]

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.requests.append((self.command, self.path, headers, body))
        if "vnd.elasticsearch" in headers.get("content-type", "") + headers.get("accept", ""):
            self._reply(406, {"error": "Content-Type header is not supported", "status": 406})
        elif self.path.startswith("/_nodes"):
            node = {"version": "2.19.1", "roles": ["data"], "modules": [{"name": "transport-netty4"}],
                    "plugins": [{"name": p} for p in self.plugins]}
            self._reply(200, {"nodes": {"n1": node}})
        elif self.path == "/":
            self._reply(200, {"version": {"distribution": "opensearch", "number": "2.19.1"}})
        elif self.path.startswith("/_msearch"):
            self._reply(200, MSEARCH)
        elif self.path.startswith("/products/_mapping"):
            self._reply(200, {"products-v1": os_index.index_body(SMALL)})
        elif self.path.startswith("/products/_search"):
            self._reply(200, {"hits": {"hits": [{"_id": "p2", "_score": 0.8}, {"_id": "p1", "_score": 0.5}]}})
        else:
            self._reply(404, {"error": {"type": "index_not_found_exception", "reason": "no"}, "status": 404})

    do_GET = do_POST = do_PUT = do_HEAD = _handle

    def log_message(self, *args: Any) -> None:
        pass


SMALL = IndexSchema({"title_vector": VectorField(4, "cosine", {"id": "tiny@1"})})


@pytest.fixture
def fake_os() -> Iterator[str]:
    _FakeOpenSearch.requests = []
    _FakeOpenSearch.plugins = [KNN_PLUGIN]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenSearch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_speaks_plain_json_and_needs_no_product_header(fake_os: str) -> None:
    store = OpenSearchStore(EsConnection(fake_os, "products"))
    runs = store.search(LEXICAL, [VectorQuery("title_vector", np.array([1.0, 0, 0, 0]), "text")], 2)
    assert [h.id for h in runs["bm25"]] == ["p1"]
    assert [(h.id, round(h.score, 6)) for h in runs["text"]] == [("p2", 0.8), ("p1", 0.5)]  # 2s - 1
    _, _, headers, body = next(r for r in _FakeOpenSearch.requests if r[1].startswith("/_msearch"))
    assert headers["content-type"] == "application/x-ndjson" and headers["accept"] == "application/json"
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert lines[3]["query"]["knn"]["title_vector"]["method_parameters"] == {"ef_search": 100}
    assert lines[1]["query"]["multi_match"]["type"] == "cross_fields"  # 2.19: no combined_fields
    assert all("vnd." not in h.get("accept", "") + h.get("content-type", "") for _, _, h, _ in _FakeOpenSearch.requests)
    with pytest.raises(elasticsearch.NotFoundError):
        store.client.indices.get_mapping(index="missing")
    assert query_string({"a": [1, 2], "b": True, "c": "x y"}) == "a=1,2&b=true&c=x%20y"
    assert plain_mimetype("application/vnd.elasticsearch+x-ndjson; compatible-with=9") == "application/x-ndjson"
    store.close()


def test_search_fused_sends_one_hybrid_query_where_neural_search_is_reported(fake_os: str) -> None:
    vectors = [VectorQuery("title_vector", np.array([1.0, 0, 0, 0]), "text")]
    store = OpenSearchStore(EsConnection(fake_os, "products"))
    with pytest.raises(ServerFusionUnavailable, match=NEURAL_PLUGIN):
        store.search_fused(LEXICAL, vectors, 2)
    assert not any(r[1].startswith("/products/_search") for r in _FakeOpenSearch.requests)
    store.close()
    _FakeOpenSearch.plugins = [KNN_PLUGIN, NEURAL_PLUGIN]
    store = OpenSearchStore(EsConnection(fake_os, "products"))
    hits = store.search_fused(LEXICAL, vectors, 2, method="linear", weights={"bm25": 1.0, "text": 0.3})
    assert [h.id for h in hits] == ["p2", "p1"]
    _, _, _, body = next(r for r in _FakeOpenSearch.requests if r[1].startswith("/products/_search"))
    sent = json.loads(body)
    assert [next(iter(q)) for q in sent["query"]["hybrid"]["queries"]] == ["multi_match", "knn"]
    assert "normalization-processor" in sent["search_pipeline"]["phase_results_processors"][0]
    assert sent["size"] == 100  # max(100, 2k) per sub-query; the store keeps the top k
    store.close()


def test_an_unreachable_node_names_opensearch_and_its_script() -> None:
    store = OpenSearchStore(EsConnection("http://127.0.0.1:1", "products", request_timeout=2))
    with pytest.raises(Exception, match="cannot reach OpenSearch.*opensearch-local"):
        store.count()


# ---------------------------------------------------------------- choosing the engine


def test_os_url_chooses_opensearch_with_its_own_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CTIR_ES_URL", "CTIR_ES_USERNAME", "CTIR_ES_PASSWORD", "CTIR_ES_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("CTIR_ES_OS_URL", "http://127.0.0.1:9400")
    monkeypatch.setenv("CTIR_ES_OS_USERNAME", "admin")
    monkeypatch.setenv("CTIR_ES_OS_PASSWORD", "s3cret-pw")
    settings = load_settings()
    assert settings.engine == "opensearch" and settings.server_url == "http://127.0.0.1:9400"
    store = open_store(settings)
    assert isinstance(store, OpenSearchStore) and store.connection.username == "admin"
    assert "s3cret-pw" not in repr(store.connection) and store.index == "products"
    monkeypatch.setenv("CTIR_ES_URL", "http://127.0.0.1:9200")
    with pytest.raises(ConfigError, match="unset one"):
        open_store(load_settings())


def test_the_opensearch_config_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CTIR_ES_URL", "CTIR_ES_OS_URL", "CTIR_ES_OS_USERNAME", "CTIR_ES_OS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[opensearch]\nurl = "https://search.example:9200"\nindex = "shop"\n'
                      'username = "reader"\npassword = "pw-in-file"\nchunk_size = 100\n', encoding="utf-8")
    monkeypatch.setenv("CTIR_ES_CONFIG", str(config))
    settings = load_settings()
    assert settings.engine == "opensearch"
    store = open_store(settings)
    assert isinstance(store, OpenSearchStore)
    assert (store.index, store.connection.username, store.bulk_options.chunk_size) == ("shop", "reader", 100)
    assert isinstance(open_store(Settings(es_url="http://127.0.0.1:9200")), ElasticsearchStore)
    assert not isinstance(open_store(Settings(es_url="http://127.0.0.1:9200")), OpenSearchStore)


def test_opensearch_takes_no_api_key() -> None:
    with pytest.raises(ConfigError, match="not an API key"):
        OpenSearchStore(EsConnection("http://127.0.0.1:9400", api_key="id:key"))
