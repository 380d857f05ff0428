"""The Elasticsearch layer as data: index definition, bulk actions, search bodies, filters.

No cluster runs here, so what the store sends is pinned as golden JSON (``tests/golden``) and
was checked by hand against the Elasticsearch 8.x reference:

- dense_vector (dims, index, similarity, index_options types int8_hnsw / hnsw / int4_hnsw /
  bbq_hnsw / flat / int8_flat): https://www.elastic.co/guide/en/elasticsearch/reference/8.15/dense-vector.html
  and the index-option rules (int4 even dims, bbq >= 64 dims) in DenseVectorFieldMapper;
  cosine normalised at index time since 8.11: https://github.com/elastic/elasticsearch/pull/99445
- top-level knn with k, num_candidates (<= 10,000, >= k) and a pre-filter:
  https://www.elastic.co/guide/en/elasticsearch/reference/8.15/knn-search.html and
  https://www.elastic.co/docs/solutions/search/vector/knn/filtered-knn-search
- multi_match with field^boost and type most_fields / best_fields:
  https://elastic.co/guide/en/elasticsearch/reference/current/query-dsl-multi-match-query.html
- path_hierarchy tokenizer (delimiter, one token per ancestor):
  https://elastic.co/guide/en/elasticsearch/reference/current/analysis-pathhierarchy-tokenizer-examples.html
- _msearch header/body pairs: https://elastic.co/guide/en/elasticsearch/reference/8.17/search-multi-search.html
- bulk index actions with _id (add or replace): https://elastic.co/guide/en/elasticsearch/reference/7.12/docs-bulk.html
  (unchanged in 8.x: https://elastic.co/guide/en/elasticsearch/client/javascript-api/8.18/api-reference.html)
- _meta in mappings, updatable by put-mapping:
  https://elastic.co/guide/en/elasticsearch/reference/8.18/mapping-meta-field.html
- enabled: false objects kept in _source only: https://elastic.co/guide/en/elasticsearch/reference/8.17/enabled.html
- REST API compatibility headers (client 9.x vs server 8.x):
  https://elastic.co/guide/en/elasticsearch/reference/8.17/rest-api-compatibility.html,
  https://github.com/elastic/elasticsearch-py/pull/2928
- setup = create index with ``aliases`` + ``is_write_index`` and ``index.default_pipeline``:
  https://elastic.co/guide/en/elasticsearch/reference/8.15/indices-create-index.html,
  https://elastic.co/guide/en/elasticsearch/reference/8.15/ingest.html#set-default-pipeline;
  dynamic templates with ``path_match`` under a ``dynamic: true`` object:
  https://elastic.co/guide/en/elasticsearch/reference/8.15/dynamic-templates.html
- ingest pipeline (``PUT _ingest/pipeline/<id>`` with description, version, _meta, processors
  html_strip / gsub / trim / script (painless, params) / set with ``{{{_ingest.timestamp}}}``):
  https://elastic.co/guide/en/elasticsearch/reference/8.15/put-pipeline-api.html,
  .../htmlstrip-processor.html, .../gsub-processor.html, .../trim-processor.html,
  .../script-processor.html, .../set-processor.html, .../ingest.html#access-ingest-metadata
- alias swap in one atomic ``POST _aliases`` (remove + add, ``remove_index`` for a plain
  index of the alias' name): https://elastic.co/guide/en/elasticsearch/reference/8.15/indices-aliases.html
- ``POST _reindex`` with ``dest.pipeline``, ``dest.op_type``, ``conflicts``:
  https://elastic.co/guide/en/elasticsearch/reference/8.15/docs-reindex.html
- bulk NDJSON (action line + source line, ``?pipeline=``), item statuses, 429 back-off:
  https://elastic.co/guide/en/elasticsearch/reference/8.15/docs-bulk.html
- hybrid in one ``_search``: ``retriever.rrf`` (retrievers, rank_window_size, rank_constant;
  standard + knn children with ``filter``), ``retriever.linear`` (retriever, weight, normalizer
  minmax): https://elastic.co/guide/en/elasticsearch/reference/8.16/retriever.html,
  https://elastic.co/guide/en/elasticsearch/reference/8.18/retriever.html#linear-retriever,
  https://elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/linear-retriever
- ``GET /`` (``version.number``, ``build_flavor``) and ``GET /_license`` (``license.type``,
  ``license.status``): https://elastic.co/guide/en/elasticsearch/reference/8.15/rest-api-root.html,
  https://elastic.co/guide/en/elasticsearch/reference/8.15/get-license.html; rrf/linear are
  ENTERPRISE-licensed (x-pack/plugin/rank-rrf RRFRankPlugin.java)

Regenerate the golden files after an intended change with ``CTIR_UPDATE_GOLDEN=1 pytest tests/test_es_requests.py``
and review the diff against those pages.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from ctir_es.errors import ConfigError, FilterError, QueryError, StoreError
from ctir_es.filters import Filter, parse_filters
from ctir_es.products import Product
from ctir_es.schema import Document, Hit, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.base import Store
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bodies import documents, filters, responses
from ctir_es.store.elasticsearch.bodies import index as mapping
from ctir_es.store.elasticsearch.bodies import search as search_bodies
from ctir_es.store.elasticsearch.bodies import stats as stats_bodies
from ctir_es.store.elasticsearch.connection import (
    build_client,
    client_kwargs,
    compat_mimetype,
    redact_url,
)

GOLDEN = Path(__file__).parent / "golden"

SCHEMA = IndexSchema(
    {
        "image_vector": VectorField(
            512, "cosine", {"id": "clip-vit-b-32@openai", "name": "ViT-B-32", "dims": 512}
        ),
        "title_vector": VectorField(384, "cosine", {"id": "all-minilm-l6-v2@1", "dims": 384}),
    }
)
SMALL = IndexSchema({"v": VectorField(4, "cosine", {"id": "tiny@1"})})

PAN = Product(
    id="p-1",
    title="Non-stick frying pan 24 cm",
    categories=(("Kitchen & Dining", "Cookware", "Pans"), ("Cases & Covers/Sleeves",)),
    attributes={"Brand": "Hawkins", "Colour": "Black"},
    description="Induction friendly.",
    images=("img/p-1.jpg", "img/p-1b.jpg"),
    market="in",
)
TOWEL = Product(id="p-2", title="Cotton bath towel")


def golden(name: str, data: Any) -> None:
    """Compare ``data`` (as JSON) with ``tests/golden/<name>.json``; rewrite it on request."""
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    if os.environ.get("CTIR_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with CTIR_UPDATE_GOLDEN=1 and review it"
    assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), (
        f"{name} differs from {path}"
    )


FILTERS = parse_filters(
    [
        {"field": "category", "op": "subtree", "value": "Kitchen & Dining > Cookware"},
        {"field": "market", "op": "in", "value": ["US", "in"]},
        {"field": "has_image", "op": "eq", "value": True},
        {"field": "id", "op": "not_in", "value": ["p-9"]},
    ]
)


# ---------------------------------------------------------------- index definition


def test_index_body_golden() -> None:
    golden("index_body", mapping.index_body(SCHEMA))


def test_index_body_records_schema_for_the_query_side() -> None:
    body = mapping.index_body(SCHEMA, "bbq_hnsw", replicas=0)
    assert mapping.schema_from_mapping(body) == SCHEMA
    assert mapping.index_options_from_mapping(body) == "bbq_hnsw"
    assert body["settings"]["index"] == {
        "number_of_shards": 1,
        "number_of_replicas": 0,
    }
    assert mapping.schema_from_mapping({"mappings": {"properties": {}}}) is None


@pytest.mark.parametrize("option", sorted(mapping.INDEX_OPTION_TYPES))
def test_every_index_option_type(option: str) -> None:
    field = mapping.index_body(SCHEMA, option)["mappings"]["properties"]["image_vector"]
    assert field == {
        "type": "dense_vector",
        "dims": 512,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": option},
    }


@pytest.mark.parametrize(
    ("option", "dims", "message"),
    [
        ("int4_hnsw", 7, "even number of dims"),
        ("bbq_hnsw", 32, "at least 64 dims"),
        ("ivf", 8, "supported: int8_hnsw, hnsw"),
    ],
)
def test_index_options_that_cannot_hold_the_vectors(option: str, dims: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mapping.index_body(IndexSchema({"v": VectorField(dims)}), option)


@pytest.mark.parametrize("name", ["title", "record", "a.b", "_id", "9lives", ""])
def test_vector_names_that_would_clash(name: str) -> None:
    with pytest.raises(ConfigError, match="bad vector field name"):
        mapping.index_body(IndexSchema({name: VectorField(8)}))


def test_similarity_is_checked() -> None:
    with pytest.raises(ConfigError, match="similarity"):
        mapping.index_body(IndexSchema({"v": VectorField(8, "angular")}))


def test_path_key_keeps_slashes_and_ampersands() -> None:
    assert (
        mapping.path_key(("Cases & Covers/Sleeves", "A > B")) == "Cases & Covers/Sleeves\u001fA > B"
    )
    # the delimiter can never come from a level: it is whitespace to str.split()
    assert mapping.path_key(("Kitchen\u001fDining", "  Pans ")) == "Kitchen Dining\u001fPans"


def test_new_vector_fields_are_added_existing_kept() -> None:
    existing = IndexSchema({"title_vector": SCHEMA.vectors["title_vector"]})
    added = mapping.added_vector_properties(existing, SCHEMA)
    assert list(added) == ["image_vector"]
    merged = mapping.merged_schema(existing, SCHEMA)
    assert list(merged.vectors) == ["title_vector", "image_vector"]


def test_meta_index_body() -> None:
    golden("meta_index_body", mapping.meta_index_body())


# ---------------------------------------------------------------- documents


def _docs() -> list[Document]:
    return [
        Document(PAN, {"v": np.array([0.5, 0.5, 0.5, 0.5], np.float32)}, "img/p-1.jpg"),
        Document(TOWEL),
    ]


def test_bulk_actions_golden() -> None:
    golden("bulk_actions", documents.bulk_actions(_docs(), "products"))


def test_bulk_actions_use_the_product_id() -> None:
    actions = documents.bulk_actions(_docs(), "shop")
    assert [(a["_op_type"], a["_index"], a["_id"]) for a in actions] == [
        ("index", "shop", "p-1"),
        ("index", "shop", "p-2"),
    ]


def test_source_round_trips_the_exact_product() -> None:
    for doc in _docs():
        stored = documents.stored_product(json.loads(json.dumps(documents.document_source(doc))))
        assert stored.product == doc.product
        assert stored.vector_fields == tuple(sorted(doc.vectors))
    assert documents.stored_product(documents.document_source(_docs()[1])).image is None


def test_an_image_that_did_not_load_is_never_shown() -> None:
    source = documents.document_source(Document(PAN))  # PAN has an image reference; none loaded
    assert (source["has_image"], source["image"]) == (False, None)


@pytest.mark.parametrize(
    ("vector", "reason"),
    [
        (np.ones(5, np.float32), "index has 4 dims, vector has 5"),
        (np.array([np.nan, 1, 0, 0], np.float32), "non-finite"),
        (np.zeros(4, np.float32), "zero vector"),
    ],
)
def test_bad_vectors_are_reported_not_sent(vector: np.ndarray, reason: str) -> None:
    assert reason in (documents.check_document(Document(TOWEL, {"v": vector}), SMALL) or "")
    assert "unknown vector field" in (
        documents.check_document(Document(TOWEL, {"w": vector}), SMALL) or ""
    )
    assert documents.check_document(Document(TOWEL, {"v": np.ones(4, np.float32)}), SMALL) is None


def test_bulk_item_error() -> None:
    item = {
        "index": {
            "_index": "products",
            "_id": "p-7",
            "status": 400,
            "error": {"type": "document_parsing_exception", "reason": "[1:2] failed to parse"},
        }
    }
    assert documents.bulk_item_error(item) == (
        "p-7",
        "index failed (400): document_parsing_exception: [1:2] failed to parse",
    )


def test_mget_products_skips_missing() -> None:
    response = {
        "docs": [
            {"_id": "p-1", "found": True, "_source": documents.document_source(_docs()[0])},
            {"_id": "nope", "found": False},
        ]
    }
    got = documents.mget_products(response)
    assert list(got) == ["p-1"] and got["p-1"].product == PAN


# ---------------------------------------------------------------- filters


def test_filters_golden() -> None:
    golden("filters", filters.es_filter(FILTERS))


def test_every_grammar_operator_has_a_translation() -> None:
    from ctir_es.filters import SUPPORTED

    assert set(filters.FILTER_TRANSLATIONS) == {
        (f, op) for f, ops in SUPPORTED.items() for op in ops
    }


def test_filter_translation_of_each_kind() -> None:
    assert filters.es_filter([Filter("market", "eq", "UK")]) == [{"term": {"market": "uk"}}]
    assert filters.es_filter([Filter("id", "in", ["a", "b"])]) == [{"ids": {"values": ["a", "b"]}}]
    assert filters.es_filter([Filter("has_image", "eq", False)]) == [{"term": {"has_image": False}}]
    assert filters.es_filter([Filter("category", "subtree", ("Watches",))]) == [
        {"term": {"category_path": "Watches"}}
    ]
    assert filters.es_filter([]) == [] and filters.es_filter(None) == []


def test_unknown_filter_input_raises() -> None:
    with pytest.raises(FilterError, match="expected a Filter"):
        filters.es_filter([{"field": "market", "op": "eq", "value": "us"}])  # type: ignore[list-item]
    forged = Filter("market", "eq", "us")
    object.__setattr__(forged, "op", "regex")
    with pytest.raises(FilterError, match="supported: category subtree"):
        filters.es_filter([forged])


# ---------------------------------------------------------------- searches


def test_lexical_body_golden() -> None:
    golden("lexical_body", search_bodies.lexical_body(LexicalQuery("  hand   blender "), 10, FILTERS))


def test_lexical_body_without_filters_and_zero_weights() -> None:
    body = search_bodies.lexical_body(
        LexicalQuery("blender", {"title": 3, "categories": 0, "description": 0.25}), 5
    )
    # combined_fields (the default) needs boosts >= 1: the weights are scaled, ratios kept
    assert body == {
        "size": 5,
        "_source": False,
        "track_total_hits": False,
        "query": {"combined_fields": {"query": "blender", "fields": ["title^12", "description^1"]}},
        # ties by product id: every shard copy gives the same order
        "sort": [{"_score": "desc"}, {"id": "asc"}],
        "track_scores": True,
    }
    most = search_bodies.lexical_body(
        LexicalQuery("blender", {"title": 3, "categories": 0, "description": 0.25}),
        5,
        multi_match_type="most_fields",
    )
    assert most["query"] == {
        "multi_match": {
            "query": "blender",
            "type": "most_fields",
            "fields": ["title^3", "description^0.25"],
        }
    }
    with pytest.raises(QueryError, match="supported: most_fields, best_fields"):
        search_bodies.lexical_body(LexicalQuery("blender"), 5, multi_match_type="phrase")


def test_lexical_body_with_nothing_to_search() -> None:
    assert search_bodies.lexical_body(LexicalQuery("   "), 5) is None
    assert search_bodies.lexical_body(LexicalQuery("x", {"title": 0}), 5) is None


@pytest.mark.parametrize("weights", [{"brand": 1.0}, {"title": -1.0}, {"title": float("nan")}])
def test_lexical_weights_are_checked(weights: dict[str, float]) -> None:
    with pytest.raises(QueryError):
        search_bodies.lexical_body(LexicalQuery("x", weights), 5)


@pytest.mark.parametrize("k", [0, -1, 10_001, True, 2.5])
def test_k_is_checked(k: Any) -> None:
    with pytest.raises(QueryError, match="k must be"):
        search_bodies.lexical_body(LexicalQuery("x"), k)


def test_knn_body_golden() -> None:
    vq = VectorQuery("image_vector", np.array([0.5, -0.5, 0.5, -0.5], np.float32), "image")
    golden("knn_body", search_bodies.knn_body(vq, 10, FILTERS))


@pytest.mark.parametrize(("options", "oversample"), [("int8_hnsw", 3.0), ("int4_hnsw", 3.0), ("bbq_hnsw", 10.0),
                                                    ("bbq_flat", 10.0), ("int8_flat", 3.0)])
def test_rescoring_oversample_by_index_type(options: str, oversample: float) -> None:
    """bbq ranks its candidates by one bit per dimension: it rescores 10x k, the others 3x."""
    vq = VectorQuery("image_vector", np.array([0.5, -0.5, 0.5, -0.5], np.float32), "image")
    body = search_bodies.knn_body(vq, 10, rescore=search_bodies.rescore_oversample(options))
    assert body["knn"]["rescore_vector"] == {"oversample": oversample}
    assert "rescore_vector" not in search_bodies.knn_body(vq, 10)["knn"]  # float vectors: no rescoring


def test_num_candidates() -> None:
    assert search_bodies.num_candidates(10) == 100
    assert search_bodies.num_candidates(80) == 160
    assert search_bodies.num_candidates(10, 40) == 40
    assert search_bodies.num_candidates(50, 20) == 50  # never below k
    assert search_bodies.num_candidates(6000) == 10_000  # the server's cap
    with pytest.raises(QueryError):
        search_bodies.num_candidates(10, 0)


def test_knn_body_rejects_non_finite_vectors() -> None:
    with pytest.raises(QueryError, match="non-finite"):
        search_bodies.knn_body(VectorQuery("v", np.array([np.inf, 0, 0, 0])), 5)


def test_msearch_body_golden() -> None:
    names, searches = search_bodies.msearch_body(
        "products",
        LexicalQuery("blender", {"title": 3, "attributes": 1}),
        [
            VectorQuery(
                "title_vector",
                np.array([1.0, 0.0, 0.0, 0.0], np.float32),
                "text",
                num_candidates=50,
            ),
            VectorQuery("image_vector", np.array([0.0, 1.0, 0.0, 0.0], np.float32), "image"),
        ],
        5,
        [Filter("market", "eq", "us")],
    )
    assert names == ["bm25", "text", "image"]
    golden("msearch_body", searches)


def test_msearch_body_leaves_out_an_empty_lexical_search() -> None:
    names, searches = search_bodies.msearch_body(
        "products", LexicalQuery(""), [VectorQuery("v", np.ones(4))], 3
    )
    assert names == ["v"] and len(searches) == 2


def test_vector_queries_are_checked_against_the_schema() -> None:
    ok = VectorQuery("v", np.ones(4))
    search_bodies.check_vector_queries([ok, VectorQuery("v", np.ones(4), "other")], SMALL)
    with pytest.raises(QueryError, match="duplicate"):
        search_bodies.check_vector_queries([ok, ok], SMALL)
    with pytest.raises(QueryError, match="duplicate"):
        search_bodies.check_vector_queries([VectorQuery("v", np.ones(4), "bm25")], None)
    with pytest.raises(QueryError, match="no vector field 'w'"):
        search_bodies.check_vector_queries([VectorQuery("w", np.ones(4))], SMALL)
    with pytest.raises(QueryError, match="index has 4 dims, the query vector has 3"):
        search_bodies.check_vector_queries([VectorQuery("v", np.ones(3))], SMALL)


MSEARCH_RESPONSE = {
    "took": 3,
    "responses": [
        {
            "hits": {"hits": [{"_id": "a", "_score": 7.5}, {"_id": "b", "_score": 2.0}]},
            "status": 200,
        },
        {
            "hits": {"hits": [{"_id": "b", "_score": 0.9}, {"_id": "a", "_score": 0.75}]},
            "status": 200,
        },
    ],
}


def test_parse_msearch_keeps_rank_order_and_gives_cosines() -> None:
    converters = responses.vector_score_converters([VectorQuery("v", np.ones(4), "text")], SMALL)
    got = responses.parse_msearch(["bm25", "text"], MSEARCH_RESPONSE, converters)
    assert got["bm25"] == [Hit("a", 7.5), Hit("b", 2.0)]
    assert [h.id for h in got["text"]] == ["b", "a"]
    assert [h.score for h in got["text"]] == pytest.approx([0.8, 0.5])  # (1 + cos) / 2 -> cos


def test_parse_msearch_raises_on_a_failed_search() -> None:
    failed = {
        "responses": [
            {
                "error": {
                    "root_cause": [
                        {"type": "index_not_found_exception", "reason": "no such index [x]"}
                    ]
                },
                "status": 404,
            }
        ]
    }
    with pytest.raises(
        StoreError, match="search 'bm25' failed \\(404\\): index_not_found_exception"
    ):
        responses.parse_msearch(["bm25"], failed)
    with pytest.raises(StoreError, match="2 searches"):
        responses.parse_msearch(["a", "b"], failed)


def test_stats_body_and_parse() -> None:
    golden("stats_body", stats_bodies.stats_body())
    response = {
        "hits": {"total": {"value": 5, "relation": "eq"}},
        "aggregations": {
            "with_image": {"doc_count": 4},
            "vector_fields": {"buckets": [{"key": "title_vector", "doc_count": 5}]},
            "markets": {"buckets": [{"key": "in", "doc_count": 3}, {"key": "us", "doc_count": 2}]},
        },
    }
    assert stats_bodies.parse_stats(response) == {
        "products": 5,
        "with_image": 4,
        "vector_counts": {"title_vector": 5},
        "markets": {"in": 3, "us": 2},
    }


# ---------------------------------------------------------------- connection settings and secrets


def test_from_env_reads_every_variable() -> None:
    env = {
        "CTIR_ES_URL": "https://es.example:9243",
        "CTIR_ES_INDEX": "shop-v2",
        "CTIR_ES_USERNAME": "ingest",
        "CTIR_ES_PASSWORD": "pw-123",
        "CTIR_ES_CA_CERTS": "/etc/ca.pem",
        "CTIR_ES_VERIFY_CERTS": "false",
        "CTIR_ES_REQUEST_TIMEOUT": "12.5",
        "CTIR_ES_API_COMPAT": "none",
    }
    conn = EsConnection.from_env(env)
    assert conn == EsConnection(
        "https://es.example:9243",
        "shop-v2",
        None,
        "ingest",
        "pw-123",
        "/etc/ca.pem",
        False,
        12.5,
        None,
    )
    assert EsConnection.from_env({}) == EsConnection()
    assert EsConnection.from_env({"CTIR_ES_INDEX": "a"}, index="b", url=None).index == "b"


def test_credentials_in_the_url_move_out_of_it() -> None:
    conn = EsConnection.from_env({"CTIR_ES_URL": "https://elastic:s%40cret@localhost:9200"})
    assert (conn.url, conn.username, conn.password) == (
        "https://localhost:9200",
        "elastic",
        "s@cret",
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "localhost:9200"}, "http\\(s\\) URL"),
        ({"url": "http://h:99999"}, "bad port"),
        ({"index": "Products"}, "bad index name"),
        ({"index": "_hidden"}, "bad index name"),
        ({"index": "a/b"}, "bad index name"),
        ({"api_key": "k", "username": "u", "password": "p"}, "not both"),
        ({"username": "u"}, "CTIR_ES_PASSWORD is not"),
        ({"password": "p"}, "CTIR_ES_USERNAME is not"),
        ({"request_timeout": 0}, "request_timeout"),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EsConnection(**settings)


def test_bad_env_values() -> None:
    with pytest.raises(ConfigError, match="CTIR_ES_VERIFY_CERTS"):
        EsConnection.from_env({"CTIR_ES_VERIFY_CERTS": "maybe"})
    with pytest.raises(ConfigError, match="unknown Elasticsearch setting"):
        EsConnection.from_env({}, hostname="x")


PASSWORD = "hunter2-Zq9"
API_KEY = "a2V5aWQ6c2VjcmV0LWtleS1Yejc="


def test_repr_and_str_redact_secrets() -> None:
    for conn in (
        EsConnection(f"http://elastic:{PASSWORD}@127.0.0.1:9200"),
        EsConnection(api_key=API_KEY),
        EsConnection(api_key=f"id1:{API_KEY}"),
    ):
        store = ElasticsearchStore(conn)
        for text in (repr(conn), str(conn), repr(store), str(store)):
            assert PASSWORD not in text and API_KEY not in text
        assert "***" in repr(conn)
    assert redact_url(f"https://u:{PASSWORD}@h:1/x") == "https://***@h:1/x"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_construction_does_no_io() -> None:
    port = _closed_port()  # nothing listens there
    store = ElasticsearchStore(
        EsConnection(f"http://elastic:{PASSWORD}@127.0.0.1:{port}", "ctir-test")
    )
    assert isinstance(store, Store)
    build_client(store.connection)  # building the client connects to nothing either
    store.close()


@pytest.mark.parametrize(
    "conn",
    [
        EsConnection(f"http://elastic:{PASSWORD}@127.0.0.1:{_closed_port()}", "ctir-test"),
        EsConnection(f"http://127.0.0.1:{_closed_port()}", "ctir-test", api_key=API_KEY),
    ],
    ids=["password", "api_key"],
)
def test_errors_name_the_cluster_but_not_the_secret(conn: EsConnection) -> None:
    store = ElasticsearchStore(conn)
    with pytest.raises(StoreError) as info:
        store.count()
    message = str(info.value)
    assert "cannot reach Elasticsearch at http://127.0.0.1:" in message
    assert PASSWORD not in message and API_KEY not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_client_kwargs_pass_auth_separately() -> None:
    kwargs = client_kwargs(EsConnection(f"https://elastic:{PASSWORD}@es:9200", ca_certs="/ca.pem"))
    assert kwargs["hosts"] == ["https://es:9200"]
    assert kwargs["basic_auth"] == ("elastic", PASSWORD)
    assert kwargs["ca_certs"] == "/ca.pem" and kwargs["verify_certs"] is True
    assert client_kwargs(EsConnection(api_key="id1:key1"))["api_key"] == ("id1", "key1")
    assert "verify_certs" not in client_kwargs(EsConnection("http://es:9200"))


def test_compat_mimetype() -> None:
    assert (
        compat_mimetype("application/json", 8)
        == "application/vnd.elasticsearch+json; compatible-with=8"
    )
    assert (
        compat_mimetype("application/x-ndjson", 8)
        == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    )
    assert compat_mimetype("text/plain", 8) == "text/plain"


# ---------------------------------------------------------------- one round trip, against a stand-in server


class _FakeEs(BaseHTTPRequestHandler):
    """Answers like Elasticsearch for the few requests a search makes; records what it got."""

    requests: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=8")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.requests.append(
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if self.path.startswith("/_msearch"):
            self._reply(200, MSEARCH_RESPONSE)
        elif self.path.startswith("/products/_mapping"):
            self._reply(200, {"products-v1": mapping.index_body(SMALL)})
        else:
            self._reply(
                404, {"error": {"type": "index_not_found_exception", "reason": "no"}, "status": 404}
            )

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def fake_es() -> Iterator[str]:
    _FakeEs.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_search_is_one_msearch_round_trip_with_compat_8_headers(fake_es: str) -> None:
    store = ElasticsearchStore(EsConnection(fake_es, "products", api_key="id1:key1"))
    runs = store.search(
        LexicalQuery("blender"), [VectorQuery("v", np.ones(4, np.float32) / 2, "text")], 2
    )
    store.close()
    assert runs["bm25"] == [Hit("a", 7.5), Hit("b", 2.0)]
    assert [h.id for h in runs["text"]] == ["b", "a"]
    assert [h.score for h in runs["text"]] == pytest.approx([0.8, 0.5])
    # the schema is read once (dims, similarity, index type), the cluster facts once (a
    # quantised index is rescored on 8.18+; unknown here), then everything in one _msearch
    assert [(m, p.split("?")[0]) for m, p, _, _ in _FakeEs.requests] == [
        ("GET", "/products/_mapping"),
        ("GET", "/_nodes/plugins"),
        ("GET", "/"),
        ("GET", "/_license"),
        ("POST", "/_msearch"),
    ]
    _, _, headers, body = _FakeEs.requests[-1]
    assert headers["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    assert headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    assert headers["authorization"].startswith("ApiKey ")
    sent = [json.loads(line) for line in body.decode().splitlines()]
    _, expected = search_bodies.msearch_body(
        "products", LexicalQuery("blender"), [VectorQuery("v", np.ones(4) / 2, "text")], 2
    )
    assert sent == expected


def test_server_errors_become_store_errors(fake_es: str) -> None:
    store = ElasticsearchStore(EsConnection(fake_es, "missing"))
    assert store.schema() is None and store.count() == 0 and store.get(["x"]) == {}
    with pytest.raises(StoreError, match="failed \\(404\\): index_not_found_exception"):
        store.setup(SMALL)


# ---------------------------------------------------------------- setup: pipeline, alias, lifecycle bodies


def test_setup_request_golden() -> None:
    """What ``setup`` sends to create ``products-v1``: settings, mappings and the alias."""
    from ctir_es.store.elasticsearch.bodies import aliases as lifecycle

    golden("setup_create_index", lifecycle.with_alias(mapping.index_body(SCHEMA), "products"))


def test_no_ingest_pipeline_and_no_analysis_module_needed() -> None:
    """Mapping v3 needs only the server: no default pipeline, no custom analyser, and a
    category_path keyword instead of a path_hierarchy tokenizer (the test distribution has
    neither ingest-common, lang-painless nor analysis-common)."""
    body = mapping.index_body(SCHEMA)
    assert "default_pipeline" not in body["settings"]["index"]
    assert "analysis" not in body["settings"]
    props = body["mappings"]["properties"]
    assert props["category_path"] == {"type": "keyword"}
    assert {props[f]["analyzer"] for f in ("title", "categories", "attributes", "description")} == {"english"}
    standard = mapping.index_body(SCHEMA, text_analyzer="standard")["mappings"]
    assert standard["properties"]["title"]["analyzer"] == "standard"
    assert mapping.text_analyzer_from_mapping(standard) == "standard"
    with pytest.raises(ConfigError, match="supported: english, standard"):
        mapping.index_body(SCHEMA, text_analyzer="porter")


def test_category_derivation_meaning() -> None:
    """The derived category fields every document carries (computed client-side)."""
    paths = [*PAN.categories, ("Kitchen & Dining", "Cutlery")]
    derived = documents.derived_category_fields(paths)
    assert derived == {
        "category_path": [
            "Kitchen & Dining",
            "Kitchen & Dining\x1fCookware",
            "Kitchen & Dining\x1fCookware\x1fPans",
            "Cases & Covers/Sleeves",
            "Kitchen & Dining\x1fCutlery",
        ],
        "category_top": ["Kitchen & Dining", "Cases & Covers/Sleeves"],
        "category_ancestors": [
            "Kitchen & Dining",
            "Kitchen & Dining > Cookware",
            "Kitchen & Dining > Cookware > Pans",
            "Cases & Covers/Sleeves",
            "Kitchen & Dining > Cutlery",
        ],
        "category_levels": {
            "l1": ["Kitchen & Dining", "Cases & Covers/Sleeves"],
            "l2": ["Cookware", "Cutlery"],
            "l3": ["Pans"],
        },
        "category_depth": 3,
    }
    assert documents.derived_category_fields([])["category_depth"] == 0
    # every derived field is mapped (the mapping is strict)
    assert set(derived) <= set(mapping.product_properties())


def test_searched_text_is_cleaned_and_the_record_kept() -> None:
    product = Product(
        id="h1", title="Steel  pan", description="<p>Induction&nbsp;<b>friendly</b></p><br>24 cm"
    )
    source = documents.document_source(Document(product), ingested_at="2026-01-01T00:00:00.000Z")
    assert source["description"] == "Induction friendly 24 cm"
    assert source["record"]["description"] == product.description
    assert source["ingested_at"] == "2026-01-01T00:00:00.000Z"
    assert "ingested_at" not in documents.document_source(Document(product))
    assert documents.clean_text("a <b>not html") == "a <b>not html"  # markup only where asked
    assert documents.image_dir("/data/img/p1.jpg") == "/data/img"
    assert documents.image_dir("https://x/p1.jpg") is None and documents.image_dir("rel/p.jpg") is None


def test_index_records_its_analyser_and_mapping_version() -> None:
    body = mapping.index_body(SCHEMA)
    assert mapping.text_analyzer_from_mapping(body) == "english"
    assert mapping.mapping_version_from_mapping(body) == mapping.MAPPING_VERSION == 4
    old = mapping.meta(SCHEMA, "hnsw", mapping_version=1)
    assert old["ctir_es"]["mapping_version"] == 1


def test_versioned_names() -> None:
    from ctir_es.store.elasticsearch.bodies import aliases as lifecycle

    assert lifecycle.versioned_name("products", 3) == "products-v3"
    assert lifecycle.parse_versioned("products-v12") == ("products", 12)
    assert lifecycle.parse_versioned("products") is None
    assert lifecycle.parse_versioned("products-vintage") is None
    assert lifecycle.next_version("products", ["products-v1", "products-v7", "shop-v9"]) == 8
    assert lifecycle.next_version("products", []) == 1
    with pytest.raises(ConfigError):
        lifecycle.versioned_name("products", 0)


def test_alias_swap_and_reindex_golden() -> None:
    from ctir_es.store.elasticsearch.bodies import aliases as lifecycle

    golden(
        "alias_swap",
        {"actions": lifecycle.alias_swap_actions("products", ["products-v2"], "products-v3")},
    )
    golden("reindex_body", lifecycle.reindex_body("products-v2", "products-v3"))
    assert lifecycle.aliases_of(
        {"products-v2": {"aliases": {"products": {}}}, "other": {"aliases": {}}}, "products"
    ) == ["products-v2"]
    failed = {"failures": [{"id": "p1", "cause": {"type": "document_parsing_exception", "reason": "bad"}}]}
    assert lifecycle.reindex_failures(failed) == ["p1: document_parsing_exception: bad"]


def test_bulk_request_golden() -> None:
    """The exact NDJSON lines of a bulk request (action + source per product)."""
    lines = documents.bulk_lines(_docs(), "products")
    assert [pid for pid, _, _ in lines] == ["p-1", "p-2"]
    golden("bulk_request", [json.loads(part) for _, action, source in lines for part in (action, source)])


# ---------------------------------------------------------------- hybrid: server-side retrievers


HYBRID_VECTORS = [
    VectorQuery("title_vector", np.array([1.0, 0.0, 0.0, 0.0], np.float32), "text", num_candidates=50),
    VectorQuery("image_vector", np.array([0.0, 1.0, 0.0, 0.0], np.float32), "image"),
]


def test_rrf_retriever_golden() -> None:
    names, body = search_bodies.retriever_body(
        "rrf", LexicalQuery("blender", {"title": 3, "attributes": 1}), HYBRID_VECTORS, 5,
        [Filter("market", "eq", "us")], window=20,
    )
    assert names == ["bm25", "text", "image"]
    golden("rrf_retriever", body)


def test_linear_retriever_golden() -> None:
    names, body = search_bodies.retriever_body(
        "linear", LexicalQuery("blender", {"title": 3}), HYBRID_VECTORS, 5, FILTERS,
        window=20, weights={"bm25": 0.5, "image": 2.0},
    )
    assert names == ["bm25", "text", "image"]
    golden("linear_retriever", body)


def test_retriever_body_rules() -> None:
    one = search_bodies.retriever_body("rrf", None, HYBRID_VECTORS[:1], 5)
    assert one == (["text"], None)  # a compound retriever needs two children
    empty_text = search_bodies.retriever_body("rrf", LexicalQuery("  "), HYBRID_VECTORS[:1], 5)
    assert empty_text[1] is None
    with pytest.raises(QueryError, match="supported: rrf, linear"):
        search_bodies.retriever_body("borda", None, HYBRID_VECTORS, 5)
    with pytest.raises(QueryError, match="weight"):
        search_bodies.retriever_body("linear", None, HYBRID_VECTORS, 5, weights={"text": -1.0})
    _, body = search_bodies.retriever_body("rrf", None, HYBRID_VECTORS, 5)
    assert body is not None
    rrf = body["retriever"]["rrf"]
    assert rrf["rank_window_size"] == 5 and rrf["rank_constant"] == 60
    assert all("filter" not in child["knn"] for child in rrf["retrievers"])
    # knn k follows the window, num_candidates never below it
    _, deep = search_bodies.retriever_body("rrf", None, HYBRID_VECTORS, 5, window=300)
    assert deep is not None
    knn = deep["retriever"]["rrf"]["retrievers"][0]["knn"]
    assert knn["k"] == 300 and knn["num_candidates"] >= 300


def test_partial_results_are_never_returned_as_complete() -> None:
    """A node that left can leave a shard without an answering copy for a moment: the hits of
    the other shards would look like a full answer. They raise instead (the store retries)."""
    partial = {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 3, "successful": 2, "failed": 1, "failures": [
            {"shard": 1, "reason": {"type": "no_shard_available_action_exception", "reason": "gone"}}]},
        "hits": {"hits": [{"_id": "a", "_score": 1.0}]},
    }
    with pytest.raises(responses.PartialResults, match="1 of 3 shards failed"):
        responses.parse_msearch(["bm25"], {"responses": [partial]})
    slow = {"timed_out": True, "_shards": {"total": 1, "failed": 0}, "hits": {"hits": []}}
    with pytest.raises(responses.PartialResults, match="timed out"):
        responses.parse_msearch(["bm25"], {"responses": [slow]})
    whole = {"_shards": {"total": 3, "successful": 3, "failed": 0}, "hits": {"hits": [{"_id": "a", "_score": 2.0}]}}
    assert responses.parse_msearch(["bm25"], {"responses": [whole]}) == {"bm25": [Hit("a", 2.0)]}


def test_suggested_shards_follow_the_sizing_rules() -> None:
    """~30 GB per shard and under 200M documents per shard, at least one (docs/scaling.md)."""
    two = IndexSchema({"t": VectorField(384), "i": VectorField(512)})
    assert mapping.bytes_per_product(two, "int8_hnsw") == 2048 + 21 * (384 + 512)
    assert [mapping.suggested_shards(n, two, "int8_hnsw") for n in (0, 10**6, 10**7, 10**8)] == [1, 1, 7, 65]
    tiny = IndexSchema({"v": VectorField(2)})
    # 1e9 small documents: 2 TB at ~2 KB each, so the size rule (65 shards) asks for more
    # shards than the 200M-documents rule (5)
    assert mapping.suggested_shards(10**9, tiny) == 65
    with pytest.raises(ConfigError):
        mapping.suggested_shards(-1, tiny)


# ---------------------------------------------------------------- vectors written in place (VectorWriter)

CLIP_ITA = VectorField(4, "cosine", {"id": "clip-ita@1", "name": "clip_ita", "dims": 4})


def test_vector_update_request_golden() -> None:
    """Partial updates: the vector and the product's vector fields, no upsert (a missing id
    is answered 404 and skipped, never created)."""
    updates = [
        ("p-1", np.array([0.5, 0.5, 0.5, 0.5], np.float32), ["title_vector", "image_vector"]),
        ("p-2", np.array([1.0, 0.0, 0.0, 0.0], np.float32), ["clip_ita"]),
    ]
    lines = documents.vector_update_lines(updates, "clip_ita", "products")
    assert [pid for pid, _, _ in lines] == ["p-1", "p-2"]
    parts = [json.loads(part) for _, action, source in lines for part in (action, source)]
    assert all("upsert" not in p and "doc_as_upsert" not in p for p in parts)
    golden("vector_update_request", parts)


def test_vector_field_mapping_golden() -> None:
    """Mapped first, without ``_meta`` (the schema does not list it); then recorded in ``_meta``
    with the index's own options, analyser and mapping version."""
    added = mapping.add_vector_field_body("clip_ita", CLIP_ITA, "int8_hnsw")
    assert "_meta" not in added
    golden("add_vector_field_mapping", added)
    body = mapping.set_vector_field_body(SCHEMA, "clip_ita", CLIP_ITA, "int8_hnsw", "standard", 3)
    assert mapping.schema_from_mapping({"mappings": body}) == IndexSchema({**SCHEMA.vectors, "clip_ita": CLIP_ITA})
    golden("set_vector_field_mapping", body)
    # a field mapped already: only _meta (dims and similarity of a mapped field cannot change)
    only_meta = mapping.set_vector_field_body(SCHEMA, "clip_ita", CLIP_ITA, "int8_hnsw", add_property=False)
    assert set(only_meta) == {"_meta"}
    # a retrained encoder replaces the entry in place, other fields kept in order
    retrained = VectorField(384, "cosine", {"id": "all-minilm-l6-v2@2", "dims": 384})
    replaced = mapping.replaced_schema(SCHEMA, "title_vector", retrained)
    assert list(replaced.vectors) == ["image_vector", "title_vector"]
    assert replaced.vectors["title_vector"] == retrained
    with pytest.raises(ConfigError, match="bad vector field name"):
        mapping.add_vector_field_body("title", CLIP_ITA)


def test_unlisted_vector_fields_are_kept_by_a_new_version() -> None:
    """A field written in place but not in ``_meta`` yet is mapped by the next version (a
    reindex copies documents that hold it into a ``dynamic: strict`` mapping)."""
    live = mapping.index_body(SCHEMA, "hnsw")
    live["mappings"]["properties"].update(mapping.add_vector_field_body("clip_ita", CLIP_ITA, "hnsw")["properties"])
    assert mapping.mapped_vector_field(live, "clip_ita") == VectorField(4, "cosine")
    assert mapping.mapped_vector_field(live, "title") is None
    assert mapping.mapped_vector_field(live, "nope") is None
    unlisted = mapping.unlisted_vector_fields(live)
    assert unlisted == {"clip_ita": VectorField(4, "cosine")}
    assert mapping.unlisted_vector_fields(mapping.index_body(SCHEMA)) == {}
    body = mapping.index_body(SCHEMA, "int8_hnsw", unlisted=unlisted)
    assert body["mappings"]["properties"]["clip_ita"]["index_options"] == {"type": "int8_hnsw"}
    assert mapping.schema_from_mapping(body) == SCHEMA  # still not listed
    assert mapping.index_body(SCHEMA, unlisted={}) == mapping.index_body(SCHEMA)


def test_mget_vector_fields() -> None:
    response = {"docs": [
        {"_id": "a", "found": True, "_source": {"vector_fields": ["title_vector"]}},
        {"_id": "b", "found": True, "_source": {}},
        {"_id": "c", "found": False},
    ]}
    assert documents.mget_vector_fields(response) == {"a": ["title_vector"], "b": []}
    assert documents.vector_fields_fetch_params() == {"source_includes": ["vector_fields"]}


def test_bulk_update_of_a_missing_document_is_skipped_not_an_error() -> None:
    from ctir_es.store.elasticsearch.bulk import BulkLine, BulkWriter

    def item(op: str, pid: str, status: int, error: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"_index": "products-v1", "_id": pid, "status": status}
        if error:
            info["error"] = {"type": error, "reason": f"[{pid}]: {error}"}
        return {op: info}

    answer = {"errors": True, "items": [
        item("update", "a", 200),
        item("update", "ghost", 404, "document_missing_exception"),
        item("update", "gone", 404, "index_not_found_exception"),
        item("index", "x", 404, "document_missing_exception"),
        item("update", "bad", 400, "document_parsing_exception"),
    ]}
    lines = [BulkLine(pid, "{}", "{}") for pid in ("a", "ghost", "gone", "x", "bad")]
    result = BulkWriter(lambda body: answer).write(lines)
    assert result.written == 1 and result.written_ids == {"a"}
    assert result.missing == {"ghost"}
    assert set(result.errors) == {"gone", "x", "bad"}


# ---------------------------------------------------------------- typed values (mapping v4, issue 23)

from ctir_es.filters import VALUE_OPS, check_filters
from ctir_es.values import ValueSpec

VALUE_SPECS = {
    "brand": ValueSpec("keyword"),
    "price": ValueSpec("number", "INR"),
    "rating": ValueSpec("number"),
    "fk_advantage": ValueSpec("boolean"),
}
VALUED = IndexSchema(SMALL.vectors, VALUE_SPECS)
SONY = Product(
    id="v-1",
    title="Sony headphones",
    categories=(("Electronics", "Audio"),),
    values={"brand": "SONY", "price": 1299.0, "fk_advantage": True, "colour": "Black"},
)
VALUE_FILTERS = check_filters(
    parse_filters(
        [
            {"field": "category", "op": "subtree", "value": "Electronics > Audio"},
            {"field": "brand", "op": "in", "value": ["Sony", "Bose"]},
            {"field": "brand", "op": "not_in", "value": ["JBL"]},
            {"field": "price", "op": "range", "value": ["500", "₹2,000"]},
            {"field": "rating", "op": "range", "value": [4, None]},
            {"field": "price", "op": "eq", "value": "1,299"},
            {"field": "fk_advantage", "op": "eq", "value": "yes"},
            {"field": "rating", "op": "exists", "value": True},
            {"field": "colour", "op": "exists", "value": False},
        ]
    ),
    IndexSchema(SMALL.vectors, {**VALUE_SPECS, "colour": ValueSpec("keyword")}),
)


def test_value_filters_golden() -> None:
    """Every value operator beside the category filter, typed by check_filters first."""
    golden("value_filters", filters.es_filter(VALUE_FILTERS))


def test_every_value_operator_has_a_translation() -> None:
    assert set(filters.VALUE_TRANSLATIONS) == set(VALUE_OPS)


def test_value_filter_clauses() -> None:
    def one(f: Filter) -> dict[str, Any]:
        return filters.es_filter([f])[0]

    assert one(Filter("price", "range", (None, 2000.0))) == {"range": {"values.price": {"lte": 2000.0}}}
    assert one(Filter("price", "range", (500.0, None))) == {"range": {"values.price": {"gte": 500.0}}}
    assert one(Filter("brand", "in", ("Sony",))) == {"terms": {"values.brand": ["Sony"]}}
    assert one(Filter("brand", "not_in", ("Sony",))) == {
        "bool": {"must_not": [{"terms": {"values.brand": ["Sony"]}}]}
    }
    assert one(Filter("fk_advantage", "eq", False)) == {"term": {"values.fk_advantage": False}}
    assert one(Filter("brand", "exists", True)) == {"exists": {"field": "values.brand"}}
    assert one(Filter("brand", "exists", False)) == {
        "bool": {"must_not": [{"exists": {"field": "values.brand"}}]}
    }


def test_a_value_filter_still_in_text_form_is_refused() -> None:
    """A filter read from text before the schema was known must be typed first."""
    forged = Filter("brand", "in", ("Sony",))
    object.__setattr__(forged, "op", "text")
    with pytest.raises(FilterError, match="check_filters"):
        filters.es_filter([forged])


def test_value_filters_go_into_bm25_and_knn_alike_golden() -> None:
    """One _msearch: the bool filter of the BM25 query and the knn filter are the same clauses
    (kNN pre-filters)."""
    value_filters = check_filters(
        [Filter("brand", "in", ("Sony", "Bose")), Filter("price", "range", (500, 2000))], VALUED
    )
    names, searches = search_bodies.msearch_body(
        "products",
        LexicalQuery("headphones", {"title": 3}),
        [VectorQuery("v", np.array([1.0, 0.0, 0.0, 0.0], np.float32), "text")],
        5,
        value_filters,
    )
    assert names == ["bm25", "text"]
    lexical, knn = searches[1], searches[3]
    assert lexical["query"]["bool"]["filter"] == knn["knn"]["filter"] == filters.es_filter(value_filters)
    golden("msearch_value_filters", searches)


def test_retrievers_carry_value_filters_on_every_child() -> None:
    value_filters = check_filters([Filter("fk_advantage", "eq", True)], VALUED)
    _, body = search_bodies.retriever_body(
        "rrf",
        LexicalQuery("headphones"),
        [VectorQuery("v", np.array([1.0, 0.0, 0.0, 0.0], np.float32), "text")],
        5,
        value_filters,
    )
    assert body is not None
    children = body["retriever"]["rrf"]["retrievers"]
    clause = [{"term": {"values.fk_advantage": True}}]
    assert children[0]["standard"]["filter"] == clause and children[1]["knn"]["filter"] == clause


def test_index_body_with_values_golden() -> None:
    body = mapping.index_body(VALUED, "hnsw")
    golden("index_body_values", body)
    props = body["mappings"]["properties"]["values"]
    assert props["dynamic"] is False
    assert props["properties"] == {
        "brand": {"type": "keyword", "normalizer": "lowercase"},
        "fk_advantage": {"type": "boolean"},
        "price": {"type": "double"},
        "rating": {"type": "double"},
    }
    # the units live in the schema recorded in _meta
    assert mapping.schema_from_mapping(body) == VALUED
    assert mapping.schema_from_mapping(body).values["price"].unit == "INR"  # type: ignore[union-attr]
    assert mapping.mapped_value_types(body) == {
        "brand": "keyword", "fk_advantage": "boolean", "price": "double", "rating": "double",
    }


def test_values_added_to_an_index_golden() -> None:
    """setup(schema) with new values: one PUT _mapping of the whole values object (fields
    mapped alike are accepted again) and the merged schema in _meta."""
    existing_body = mapping.index_body(IndexSchema(SMALL.vectors, {"brand": ValueSpec("keyword")}))
    existing = mapping.schema_from_mapping(existing_body)
    assert existing is not None
    assert mapping.added_values(existing, existing_body, VALUED) == ["fk_advantage", "price", "rating"]
    assert mapping.value_conflicts(existing, existing_body, VALUED) == []
    merged = mapping.merged_schema(existing, VALUED)
    assert merged.values == {**VALUE_SPECS}
    golden("add_values_mapping", {
        "properties": mapping.values_put_mapping(merged.values),
        "_meta": mapping.meta(merged, "hnsw"),
    })


def test_value_type_conflicts_are_named() -> None:
    body = mapping.index_body(VALUED)
    existing = mapping.schema_from_mapping(body)
    assert existing is not None
    wanted = IndexSchema(SMALL.vectors, {
        "brand": ValueSpec("number"),
        "price": ValueSpec("number", "USD"),
        "rating": ValueSpec("number", "USD"),  # the index's rating has no unit: it stays so
        "fk_advantage": ValueSpec("boolean"),
    })
    assert mapping.value_conflicts(existing, body, wanted) == [
        "value 'brand' is a keyword in the index, the catalogue gives a number",
        "value 'price' is a number in INR in the index, the catalogue gives a number in USD",
    ]
    # a bare number (no unit) takes the index's unit
    assert mapping.value_conflicts(existing, body, IndexSchema({}, {"price": ValueSpec("number")})) == []
    # a mapping that disagrees with _meta (a field mapped by hand) is named too
    body["mappings"]["properties"]["values"]["properties"]["rating"] = {"type": "keyword"}
    assert mapping.value_conflicts(existing, body, IndexSchema({}, {"rating": ValueSpec("number")})) == [
        "value 'rating' is mapped as keyword in the index, a number needs double"
    ]


def test_bulk_source_carries_values_golden() -> None:
    vector = np.array([0.0, 0.0, 1.0, 0.0], np.float32)
    golden("bulk_actions_values", documents.bulk_actions([Document(SONY, {"v": vector})], "products"))
    source = documents.document_source(Document(SONY))
    assert source["values"] == {"brand": "SONY", "colour": "Black", "fk_advantage": True, "price": 1299.0}
    assert "values" not in documents.document_source(Document(TOWEL))  # no values, no object


def test_values_read_back_typed_exactly() -> None:
    wire = json.loads(json.dumps(documents.document_source(Document(SONY))))
    stored = documents.stored_product(wire).product
    assert stored == SONY
    assert {n: type(v) for n, v in stored.values.items()} == {
        "brand": str, "colour": str, "fk_advantage": bool, "price": float,
    }
    # another writer's integer comes back a float; a bool never becomes a number
    assert documents.stored_values({"price": 5, "ok": False, "junk": [1]}) == {"price": 5.0, "ok": False}
    assert type(documents.stored_values({"price": 5})["price"]) is float


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"price": "1,299"}, "value 'price': the index holds a number, the product gives str '1,299'"),
        ({"price": True}, "the index holds a number, the product gives bool"),
        ({"brand": 5.0}, "value 'brand': the index holds a keyword, the product gives float"),
        ({"fk_advantage": "yes"}, "the index holds a boolean, the product gives str"),
        ({"price": float("nan")}, "the index holds a number"),
    ],
)
def test_a_value_of_another_kind_is_reported_not_sent(values: dict[str, Any], reason: str) -> None:
    product = Product(id="bad", title="x", values=values)
    assert reason in (documents.check_document(Document(product), VALUED) or "")


def test_values_the_schema_does_not_name_are_sent() -> None:
    """Kept in _source (dynamic: false), not indexed until the schema maps them."""
    product = Product(id="extra", title="x", values={"colour": "Red", "price": 10.0})
    assert documents.check_document(Document(product), VALUED) is None
