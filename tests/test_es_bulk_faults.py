"""Client fault tests: the bulk writer against a stub Elasticsearch on 127.0.0.1 (tests/es_stub.py).

The stub answers as Elasticsearch does when it is overloaded (429
``es_rejected_execution_exception``), unavailable (502/503/504), unreachable (connection
refused, connection dropped) or handed a document its mapping rejects (400
``document_parsing_exception`` inside a 200 bulk response). Each test checks two things:
the retries that happened (requests seen by the server, back-off delays asked for), and that
nothing is lost or duplicated - every product is in the index exactly once, and for transient
errors the server applied each product exactly once. A permanent failure stops with
``BulkAborted`` naming the checkpoint, and a second run resumes from it.
Reference: https://elastic.co/guide/en/elasticsearch/reference/8.15/docs-bulk.html
("429 ... retry with exponential backoff"), https://elastic.co/guide/en/elasticsearch/reference/8.15/tune-for-indexing-speed.html
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import numpy as np
import pytest
from es_stub import EsState, EsStub, start

from ctir_es.errors import StoreError
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.bulk import BulkAborted, BulkLine, BulkOptions, BulkWriter, chunks

SCHEMA = IndexSchema({"v": VectorField(4, "cosine", {"id": "tiny@1"})})
N = 50


def docs(n: int = N) -> list[Document]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        v = rng.normal(size=4).astype(np.float32)
        out.append(
            Document(
                Product(id=f"p{i:03d}", title=f"product {i}", categories=(("Home", f"Cat {i % 3}"),)),
                {"v": v / np.linalg.norm(v)},
            )
        )
    return out


class Sleeps(list[float]):
    """Records the back-off delays instead of waiting; can run a hook on the first one."""

    def __init__(self, hook: object = None) -> None:
        super().__init__()
        self.hook = hook

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.hook is not None and len(self) == 1:
            self.hook()  # type: ignore[operator]


@pytest.fixture
def stub() -> Iterator[EsStub]:
    server = start(EsState())
    yield server
    server.stop()


def make_store(url: str, sleeps: Sleeps, **options: object) -> ElasticsearchStore:
    options.setdefault("chunk_size", 10)
    options.setdefault("max_retries", 4)
    options.setdefault("initial_backoff", 0.5)
    options.setdefault("refresh", False)
    store = ElasticsearchStore(EsConnection(url, "products"), sleep=sleeps, **options)  # type: ignore[arg-type]
    return store


def bulk_ids(stub: EsStub) -> list[list[str]]:
    """The product ids of each _bulk request the server received, in order."""
    out = []
    for req in stub.state.bulk_requests():
        lines = req.ndjson()
        out.append([next(iter(a.values()))["_id"] for a in lines[::2]])
    return out


def assert_exactly_once(stub: EsStub, store: ElasticsearchStore, expected: list[str]) -> None:
    assert sorted(stub.state.docs("products")) == sorted(expected)
    assert store.count() == len(expected)
    assert all(stub.state.accepted[i] == 1 for i in expected), dict(stub.state.accepted)


def test_transient_429_and_503_mid_bulk_lose_nothing(stub: EsStub) -> None:
    sleeps = Sleeps()
    store = make_store(stub.url, sleeps)
    store.setup(SCHEMA)
    # chunk 1 ok, chunk 2 rejected 429 then 503, then every chunk ok
    stub.state.faults[:] = ["ok", "429", "503"]
    report = store.bulk_load(docs(), checkpoint_key="src")
    assert report.written == N and not report.errors
    assert report.retries == 2 and report.requests == N // 10 + 2
    assert sleeps == [0.5, 1.0]  # exponential back-off
    sent = bulk_ids(stub)
    assert len(sent) == 7 and sent[1] == sent[2] == sent[3]  # the same chunk, three times
    assert_exactly_once(stub, store, [d.product.id for d in docs()])
    assert report.count_after == N and report.distinct_written == N
    assert store.checkpoint("src") is None  # cleared once complete
    store.close()


def test_items_rejected_inside_a_200_are_resent_alone(stub: EsStub) -> None:
    sleeps = Sleeps()
    store = make_store(stub.url, sleeps)
    store.setup(SCHEMA)
    stub.state.faults[:] = [("items429", 3)]
    result = store.upsert(docs(10))
    assert result.written == 10 and not result.errors
    sent = bulk_ids(stub)
    assert [len(s) for s in sent] == [10, 3] and sent[1] == sent[0][:3]
    assert sleeps == [0.5]
    assert_exactly_once(stub, store, [d.product.id for d in docs(10)])
    store.close()


@pytest.mark.parametrize("status", ["502", "504"])
def test_gateway_errors_are_retried(stub: EsStub, status: str) -> None:
    store = make_store(stub.url, Sleeps())
    store.setup(SCHEMA)
    stub.state.faults[:] = [status, status]
    assert store.upsert(docs(5)).written == 5
    assert_exactly_once(stub, store, [d.product.id for d in docs(5)])
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_retried_until_the_server_is_up() -> None:
    """Nothing listens at first (connection refused); the server comes up during the back-off."""
    port = _free_port()
    holder: dict[str, EsStub] = {}
    state = EsState()
    # the index exists already and the store has read its mapping: the store's next
    # request is the bulk itself
    sleeps = Sleeps(hook=lambda: holder.__setitem__("stub", start(state, port=port)))
    store = make_store(f"http://127.0.0.1:{port}", sleeps)
    setup_server = start(state, port=port)
    store.setup(SCHEMA)
    setup_server.stop()
    try:
        result = store.upsert(docs(20))
        assert result.written == 20 and not result.errors
        assert len(sleeps) == 1  # one refused attempt, then success
        assert_exactly_once(holder["stub"], store, [d.product.id for d in docs(20)])
    finally:
        store.close()
        if "stub" in holder:
            holder["stub"].stop()


def test_dropped_connection_after_the_write_does_not_duplicate(stub: EsStub) -> None:
    """The server applied the chunk but the answer was lost: it is sent again, and replaced
    by id - still one document per product."""
    store = make_store(stub.url, Sleeps())
    store.setup(SCHEMA)
    stub.state.faults[:] = ["drop-after-apply", "drop"]
    result = store.upsert(docs(10))
    assert result.written == 10
    assert sorted(stub.state.docs("products")) == sorted(d.product.id for d in docs(10))
    assert store.count() == 10
    assert max(stub.state.accepted.values()) == 2  # applied twice, stored once
    store.close()


def test_mapping_errors_are_reported_not_retried(stub: EsStub) -> None:
    sleeps = Sleeps()
    store = make_store(stub.url, sleeps)
    store.setup(SCHEMA)
    stub.state.bad_ids = {"p004", "p017"}
    report = store.bulk_load(docs())
    assert set(report.errors) == {"p004", "p017"}
    assert "document_parsing_exception" in report.errors["p004"]
    assert "400" in report.errors["p004"]
    assert sleeps == [] and report.retries == 0  # never retried
    assert report.written == N - 2 and report.count_after == N - 2
    assert_exactly_once(stub, store, [d.product.id for d in docs() if d.product.id not in stub.state.bad_ids])
    store.close()


def test_permanent_failure_stops_with_a_resumable_checkpoint(stub: EsStub) -> None:
    sleeps = Sleeps()
    store = make_store(stub.url, sleeps, max_retries=3)
    store.setup(SCHEMA)
    stub.state.faults[:] = ["ok", "ok"] + ["503"] * 4  # chunk 3 never gets through
    with pytest.raises(BulkAborted) as info:
        store.bulk_load(docs(), checkpoint_key="catalogue")
    message = str(info.value)
    assert "gave up after 4 attempts" in message and "HTTP 503" in message
    assert "checkpoint 'catalogue' is at position 20" in message and "resume" in message
    assert info.value.pending == [f"p{i:03d}" for i in range(20, 30)]
    assert isinstance(info.value, StoreError)  # the CLI shows it as one clear line
    assert store.checkpoint("catalogue") == 20
    assert sleeps == [0.5, 1.0, 2.0]
    # the cluster recovers; the same load resumes after position 20
    report = store.bulk_load(docs(), checkpoint_key="catalogue")
    assert report.skipped_resumed == 20 and report.written == N - 20
    assert_exactly_once(stub, store, [d.product.id for d in docs()])
    assert store.checkpoint("catalogue") is None
    store.close()


def test_upsert_failure_keeps_the_previous_checkpoint(stub: EsStub) -> None:
    store = make_store(stub.url, Sleeps(), max_retries=1)
    store.setup(SCHEMA)
    store.upsert(docs(10), checkpoint=("k", 10))
    stub.state.always = 429
    with pytest.raises(BulkAborted, match="429"):
        store.upsert(docs(20)[10:], checkpoint=("k", 20))
    stub.state.always = None
    assert store.checkpoint("k") == 10  # the failed batch did not move it
    store.close()


def test_non_retryable_errors_are_not_retried(stub: EsStub) -> None:
    """A 400 on the whole request (or an auth error) is not transient: one request, one error."""
    sleeps = Sleeps()
    store = make_store(stub.url, sleeps)
    store.setup(SCHEMA)
    stub.state.always = 400
    with pytest.raises(StoreError, match="failed \\(400\\): illegal_argument_exception"):
        store.upsert(docs(5))
    assert sleeps == [] and len(stub.state.bulk_requests()) == 1
    stub.state.always = None
    writer = BulkWriter(lambda body: (_ for _ in ()).throw(ValueError("boom")), BulkOptions(), sleep=sleeps)
    with pytest.raises(ValueError):  # not a client error at all: surfaces as is
        writer.write([BulkLine("a", "{}", "{}")])
    assert sleeps == []
    store.close()


def test_chunks_respect_count_and_bytes() -> None:
    lines = [BulkLine(str(i), '{"index":{}}', json.dumps({"t": "x" * (10 * i)})) for i in range(30)]
    out = list(chunks(lines, chunk_size=7, max_bytes=400))
    assert [line.id for c in out for line in c] == [str(i) for i in range(30)]  # order kept
    assert all(len(c) <= 7 for c in out)
    assert all(sum(line.nbytes for line in c) <= 400 or len(c) == 1 for c in out)
    big = [BulkLine("big", "{}", "x" * 5000)]
    assert list(chunks(big, 10, 1024)) == [big]  # a single oversized doc still goes, alone


def test_byte_limit_shapes_the_requests(stub: EsStub) -> None:
    store = make_store(stub.url, Sleeps(), chunk_size=1000, max_chunk_bytes=2048)
    store.setup(SCHEMA)
    assert store.bulk_load(docs()).written == N
    sizes = [len(r.body) for r in stub.state.bulk_requests()]
    assert len(sizes) > 1 and max(sizes) <= 2048
    store.close()


def test_backoff_is_exponential_and_capped() -> None:
    options = BulkOptions(initial_backoff=1.0, max_backoff=5.0)
    assert [options.backoff(a) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
