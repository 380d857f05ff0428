"""Authentication, TLS settings and secret redaction of the Elasticsearch connection.

API key, basic auth or bearer token - one kind at a time, from env/config only; TLS verified by
default, against a CA file or a pinned SHA-256 fingerprint; secrets never in repr, errors or
log records. Reference: elasticsearch-py ``api_key`` / ``basic_auth`` / ``bearer_auth`` /
``ca_certs`` / ``ssl_assert_fingerprint`` (https://elasticsearch-py.readthedocs.io/en/v8.15.0/api/elasticsearch.html),
https://elastic.co/guide/en/elasticsearch/reference/8.15/http-clients.html (Authorization:
ApiKey / Basic / Bearer).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest
from es_stub import EsState, EsStub, start

from ctir_es.errors import ConfigError
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection
from ctir_es.store.elasticsearch.connection import client_kwargs

SECRET = "s3cr3t-Pw-998"
FINGERPRINT = "AA:" * 31 + "AA"


@pytest.fixture
def stub() -> Iterator[EsStub]:
    server = start(EsState())
    yield server
    server.stop()


def auth_header(stub: EsStub) -> str:
    return stub.state.requests[-1].headers.get("authorization", "")


@pytest.mark.parametrize(
    ("conn_kwargs", "expected"),
    [
        ({"api_key": "id1:" + SECRET}, "ApiKey " + base64.b64encode(f"id1:{SECRET}".encode()).decode()),
        ({"username": "elastic", "password": SECRET}, "Basic " + base64.b64encode(f"elastic:{SECRET}".encode()).decode()),
        ({"bearer_token": SECRET}, "Bearer " + SECRET),
    ],
    ids=["api_key", "basic", "bearer"],
)
def test_each_kind_of_credentials_is_sent(stub: EsStub, conn_kwargs: dict[str, str], expected: str) -> None:
    store = ElasticsearchStore(EsConnection(stub.url, "products", **conn_kwargs))
    store.count()
    assert auth_header(stub) == expected
    store.close()


def test_env_reads_bearer_token_and_fingerprint() -> None:
    conn = EsConnection.from_env(
        {"CTIR_ES_URL": "https://es:9200", "CTIR_ES_BEARER_TOKEN": SECRET, "CTIR_ES_SSL_FINGERPRINT": FINGERPRINT}
    )
    assert conn.bearer_token == SECRET and conn.ssl_fingerprint == FINGERPRINT
    kwargs = client_kwargs(conn)
    assert kwargs["bearer_auth"] == SECRET
    assert kwargs["ssl_assert_fingerprint"] == "aa" * 32 and kwargs["verify_certs"] is True
    assert SECRET not in repr(conn) and "bearer_token='***'" in repr(conn)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api_key": "k", "bearer_token": "t"}, "one kind of credentials"),
        ({"username": "u", "password": "p", "bearer_token": "t"}, "one kind of credentials"),
        ({"ssl_fingerprint": "zz"}, "SHA-256 fingerprint"),
        ({"ssl_fingerprint": FINGERPRINT, "ca_certs": "/ca.pem"}, "not both"),
    ],
)
def test_bad_security_settings(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EsConnection("https://es:9200", **settings)


def test_tls_verification_is_on_by_default_and_off_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    assert EsConnection("https://es:9200").verify_certs is True
    assert client_kwargs(EsConnection("https://es:9200", ca_certs="/ca.pem"))["ca_certs"] == "/ca.pem"
    caplog.set_level(logging.WARNING)
    EsConnection("https://es:9200", verify_certs=False)
    assert "verification is OFF" in caplog.text


def test_secrets_never_reach_the_logs(stub: EsStub, caplog: pytest.LogCaptureFixture) -> None:
    """Every record of the client stack at DEBUG, including one that tries to print the secret."""
    caplog.set_level(logging.DEBUG)
    url = stub.url.replace("http://", f"http://elastic:{SECRET}@")
    store = ElasticsearchStore(EsConnection(url, "products"))
    store.count()
    logging.getLogger("elastic_transport.transport").debug("header Authorization: %s", SECRET)
    logging.getLogger("ctir_es.store").warning("url was http://elastic:%s@host", SECRET)
    token = base64.b64encode(f"elastic:{SECRET}".encode()).decode()
    assert "Authorization" in caplog.text  # the records are there...
    assert SECRET not in caplog.text and token not in caplog.text  # ...without the secret
    store.close()
