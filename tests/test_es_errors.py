"""What callers branch on is the error's type, never its text (issue 26, item 4).

Elasticsearch answers are classified from their status and body: a licence refusal (a 403
``security_exception`` carrying ``license.expired.feature``) is ``LicenceRequired``, any other
403 ``AccessDenied``; a transport failure is ``Unreachable``; a bulk write that gave up because
the cluster went away is ``BulkUnreachable``. The classification is tested as data, then through
the stub (the store's fallbacks) and the real node.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import elastic_transport
import numpy as np
import pytest
from es_stub import EsState, EsStub, es_error, start

from ctir_es.errors import (
    AccessDenied,
    LicenceRequired,
    ServerFusionUnavailable,
    StoreError,
    Unreachable,
)
from ctir_es.products import Product
from ctir_es.ranking.plan import Plan
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bodies.responses import error_class, error_type, refused_feature
from ctir_es.store.elasticsearch.bulk import (
    BulkAborted,
    BulkLine,
    BulkOptions,
    BulkUnreachable,
    BulkWriter,
)
from ctir_es.store.elasticsearch.session import EsSession

LICENCE_BODY = {
    "error": {
        "root_cause": [
            {
                "type": "security_exception",
                "reason": "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]",
                "license.expired.feature": "Reciprocal Rank Fusion (RRF)",
            }
        ],
        "type": "security_exception",
        "reason": "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]",
        "license.expired.feature": "Reciprocal Rank Fusion (RRF)",
    },
    "status": 403,
}
# the same refusal reworded: the class must not depend on the words
REWORDED_LICENCE = {
    "error": {"type": "security_exception", "reason": "nope", "license.expired.feature": "rrf"},
    "status": 403,
}
PRIVILEGE_BODY = es_error(
    403, "security_exception", "action [indices:admin/mappings/get] is unauthorized for user [s]"
)
# a privilege error whose text happens to mention a licence is still a privilege error
PRIVILEGE_SAYS_LICENSE = es_error(403, "security_exception", "user [license] is unauthorized")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, LICENCE_BODY, LicenceRequired),
        (403, REWORDED_LICENCE, LicenceRequired),
        (403, PRIVILEGE_BODY, AccessDenied),
        (403, PRIVILEGE_SAYS_LICENSE, AccessDenied),
        (403, "forbidden", AccessDenied),  # a proxy's plain-text 403
        (404, es_error(404, "index_not_found_exception", "no such index [x]"), StoreError),
        (400, es_error(400, "parsing_exception", "license (403) Connection"), StoreError),
        (500, None, StoreError),
    ],
)
def test_error_class_from_status_and_body(status: int, body: Any, expected: type) -> None:
    assert error_class(status, body) is expected


def test_error_type_and_refused_feature_read_the_body() -> None:
    assert error_type(LICENCE_BODY) == "security_exception"
    assert error_type({"error": "plain string"}) is None and error_type("x") is None
    assert refused_feature(LICENCE_BODY) == "Reciprocal Rank Fusion (RRF)"
    assert refused_feature(PRIVILEGE_BODY) is None and refused_feature(None) is None
    root_only = {"error": {"type": "t", "root_cause": [{"license.expired.feature": "ml"}]}}
    assert refused_feature(root_only) == "ml"


def test_session_builds_the_typed_error_with_a_useful_message() -> None:
    session = EsSession(EsConnection("http://127.0.0.1:9", "products"))
    licence = session.api_error("searching", 403, LICENCE_BODY)
    assert type(licence) is LicenceRequired
    assert "licence does not cover 'Reciprocal Rank Fusion (RRF)'" in str(licence)
    denied = session.api_error("reading the mapping", 403, PRIVILEGE_BODY)
    assert type(denied) is AccessDenied and "view_index_metadata" in str(denied)
    other = session.api_error("searching", 404, es_error(404, "index_not_found_exception", "x"))
    assert type(other) is StoreError and "(404)" in str(other)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_unreachable() -> None:
    store = ElasticsearchStore(EsConnection(f"http://127.0.0.1:{_free_port()}", "products"))
    with pytest.raises(Unreachable, match="cannot reach Elasticsearch"):
        store.count()
    store.close()


def _lines(n: int) -> list[BulkLine]:
    return [BulkLine(f"p{i}", f'{{"index":{{"_id":"p{i}"}}}}', f'{{"t":{i}}}') for i in range(n)]


def test_bulk_gave_up_on_a_lost_connection_is_unreachable() -> None:
    def send(body: bytes) -> Any:
        raise elastic_transport.ConnectionError("connection refused")

    writer = BulkWriter(send, BulkOptions(max_retries=1), sleep=lambda s: None)
    with pytest.raises(BulkUnreachable) as caught:
        writer.write(_lines(3))
    assert isinstance(caught.value, Unreachable) and caught.value.pending == ["p0", "p1", "p2"]


def test_bulk_gave_up_on_busy_items_is_not_unreachable() -> None:
    busy = {"items": [{"index": {"_id": f"p{i}", "status": 429}} for i in range(2)]}
    writer = BulkWriter(lambda body: busy, BulkOptions(max_retries=1), sleep=lambda s: None)
    with pytest.raises(BulkAborted) as caught:
        writer.write(_lines(2))
    assert not isinstance(caught.value, Unreachable)


# ---------------------------------------------------------------- the store's fallbacks (stub)

SCHEMA = IndexSchema({"v": VectorField(4, "cosine", {"id": "tiny@1"})})


@pytest.fixture
def stub() -> Iterator[EsStub]:
    server = start(EsState())
    yield server
    server.stop()


def _loaded(stub: EsStub) -> ElasticsearchStore:
    store = ElasticsearchStore(EsConnection(stub.url, "products"), sleep=lambda s: None)
    store.setup(SCHEMA)
    vectors = [np.eye(4, dtype=np.float32)[i] for i in range(2)]
    store.upsert(
        [Document(Product(id=f"p{i}", title=f"pan {i}"), {"v": v}) for i, v in enumerate(vectors)]
    )
    return store


def test_a_licence_refusal_falls_back_to_client_side_fusion(stub: EsStub) -> None:
    """The licence said enterprise when read, but the cluster refuses the retriever (the licence
    changed since): the store says why it cannot, reworded refusal or not, and ``Search`` fuses
    client-side."""
    stub.state.licence = "enterprise"
    store = _loaded(stub)
    stub.state.search_error = (403, REWORDED_LICENCE)
    stub.state.search_hits = [{"_id": "p1", "_score": 0.9}, {"_id": "p0", "_score": 0.5}]
    lexical, vectors = LexicalQuery("pan"), [VectorQuery("v", np.ones(4, np.float32) / 2)]
    with pytest.raises(ServerFusionUnavailable, match="licence does not cover 'rrf'"):
        store.search_fused(lexical, vectors, 2)
    fused = Search(store, fusion_location="auto").fused_by_server(
        Plan("text", "pan", lexical, vectors), 2, 100, (), "rrf", {})
    assert [h.id for h in fused] == ["p1", "p0"] and all(h.sources for h in fused)  # fused client-side
    store.close()


def test_a_privilege_refusal_on_search_is_not_taken_for_a_licence(stub: EsStub) -> None:
    stub.state.licence = "enterprise"
    store = _loaded(stub)
    stub.state.search_error = (403, PRIVILEGE_SAYS_LICENSE)
    with pytest.raises(AccessDenied):
        store.search_fused(LexicalQuery("pan"), [VectorQuery("v", np.ones(4, np.float32) / 2)], 2)
    store.close()


def test_an_unreadable_mapping_is_access_denied_and_queries_go_on(stub: EsStub) -> None:
    _loaded(stub).close()
    stub.state.forbidden.add("_mapping")
    store = ElasticsearchStore(EsConnection(stub.url, "products"), sleep=lambda s: None)
    with pytest.raises(AccessDenied):
        store.session.body(
            "reading the mapping", lambda: store.client.indices.get_mapping(index="products")
        )
    assert store.search(LexicalQuery("pan"), [], 2) is not None  # the 403 became a notice
    store.close()


# ---------------------------------------------------------------- the real node


@pytest.mark.integration
def test_real_node_errors_are_classified_by_body(es_connection: EsConnection) -> None:
    session = EsSession(es_connection.with_index("ctir-test-errors-missing"))
    with pytest.raises(StoreError) as caught:
        session.body(
            "reading the mapping",
            lambda: session.client.indices.get_mapping(index="ctir-test-errors-missing"),
        )
    assert type(caught.value) is StoreError  # a 404 is neither a privilege nor a licence error
    name = "ctir-test-errors-twice"
    try:
        session.call("creating", lambda: session.client.indices.create(index=name))
        with pytest.raises(StoreError):
            session.call("creating again", lambda: session.client.indices.create(index=name))
        try:
            session.client.indices.create(index=name)
        except Exception as exc:  # noqa: BLE001 - the raw client error, to read its body
            assert error_type(getattr(exc, "body", None)) == "resource_already_exists_exception"
    finally:
        session.client.indices.delete(index=name, ignore_unavailable=True)
        session.close()
