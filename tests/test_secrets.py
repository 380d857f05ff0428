"""Secrets never reach logs or error messages, whatever fails and however verbose the logging."""

from __future__ import annotations

import logging
import socket

import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.errors import CtirError
from ctir_es.store.elasticsearch import ElasticsearchStore, EsConnection

PASSWORD = "S3cret-Pa55word"
API_KEY = "QVBJS0VZLXNlY3JldC12YWx1ZQ=="


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: connections are refused


@pytest.mark.parametrize("how", ["userinfo", "api_key", "basic"])
def test_failed_connection_logs_and_errors_hold_no_secret(how: str, caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    env = {"CTIR_ES_URL": f"http://127.0.0.1:{port}", "CTIR_ES_REQUEST_TIMEOUT": "2"}
    if how == "userinfo":
        env["CTIR_ES_URL"] = f"http://elastic:{PASSWORD}@127.0.0.1:{port}"
    elif how == "api_key":
        env["CTIR_ES_API_KEY"] = API_KEY
    else:
        env |= {"CTIR_ES_USERNAME": "elastic", "CTIR_ES_PASSWORD": PASSWORD}
    caplog.set_level(logging.DEBUG)  # everything, including elastic_transport and urllib3
    store = ElasticsearchStore(EsConnection.from_env(env), max_retries=0)
    with pytest.raises(CtirError) as info:
        store.count()
    texts = [str(info.value), repr(info.value), repr(store), str(store), repr(store.connection), caplog.text]
    for text in texts:
        assert PASSWORD not in text and API_KEY not in text
    assert "127.0.0.1" in str(info.value)  # the error still says where it tried


def test_cli_error_holds_no_secret(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_URL", f"http://elastic:{PASSWORD}@127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CTIR_ES_API_KEY", API_KEY)
    monkeypatch.setenv("CTIR_ES_REQUEST_TIMEOUT", "2")
    result = CliRunner().invoke(cli, ["-vv", "stats"])
    assert result.exit_code != 0
    assert PASSWORD not in result.output and API_KEY not in result.output
