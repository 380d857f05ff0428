"""download(): cache reuse, Range resume, retries and fast failure, against a real local server."""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ctir_es.errors import SourceError
from ctir_es.ingest.download import cache_path, download, xmarket_url
from ctir_es.ingest.readers import read_xmarket
from ctir_es.ingest.report import IngestReport

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several read chunks


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; ``mode`` scripts misbehaviour per test."""

    protocol_version = "HTTP/1.1"
    mode = "normal"  # normal | cut_first | ignore_range | busy_first | not_found
    payload = PAYLOAD
    requests: ClassVar[list[str | None]] = []  # the Range header of each request

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        cls.requests.append(self.headers.get("Range"))
        n = len(cls.requests)
        body = cls.payload
        if cls.mode == "not_found":
            return self._reply(404, b"no", {})
        if cls.mode == "busy_first" and n == 1:
            return self._reply(503, b"busy", {})
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and cls.mode != "ignore_range":
            start = int(m.group(1))
            if start >= len(body):
                return self._reply(416, b"", {"Content-Range": f"bytes */{len(body)}"})
            rng = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return self._reply(206, body[start:], {"Content-Range": rng})
        if cls.mode == "cut_first" and n == 1:  # promise everything, send a third, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return None
        return self._reply(200, body, {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[type[_RangeHandler]]:
    _RangeHandler.mode = "normal"
    _RangeHandler.payload = PAYLOAD
    _RangeHandler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    _RangeHandler.base = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield _RangeHandler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _url(handler: type[_RangeHandler], name: str = "data.bin") -> str:
    return f"{handler.base}/{name}"  # type: ignore[attr-defined]


def test_download_then_reuse_cache(server: type[_RangeHandler], tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    path = download(_url(server), tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == PAYLOAD and path.name == "data.bin"
    assert not path.with_name("data.bin.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert download(_url(server), tmp_path) == path
    assert server.requests == [None]  # the second call used the cached file


def test_resume_partial_file_with_range(server: type[_RangeHandler], tmp_path: Path) -> None:
    url = _url(server)
    part = cache_path(url, tmp_path).with_name("data.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:40_000])
    assert download(url, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == ["bytes=40000-"]


def test_transfer_cut_midway_is_resumed(server: type[_RangeHandler], tmp_path: Path) -> None:
    server.mode = "cut_first"
    assert download(_url(server), tmp_path, retries=2).read_bytes() == PAYLOAD
    assert len(server.requests) == 2 and server.requests[0] is None
    # the chunks that arrived before the cut were kept: the retry asks only for the rest
    m = re.fullmatch(r"bytes=(\d+)-", server.requests[1] or "")
    assert m and 0 < int(m.group(1)) <= len(PAYLOAD) // 3


def test_server_ignoring_range_restarts_cleanly(
    server: type[_RangeHandler], tmp_path: Path
) -> None:
    server.mode = "ignore_range"
    url = _url(server)
    part = cache_path(url, tmp_path).with_name("data.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes")
    assert download(url, tmp_path).read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_on_416(server: type[_RangeHandler], tmp_path: Path) -> None:
    url = _url(server)
    part = cache_path(url, tmp_path).with_name("data.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    assert download(url, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_busy_server_is_retried(server: type[_RangeHandler], tmp_path: Path) -> None:
    server.mode = "busy_first"
    assert download(_url(server), tmp_path, retries=1).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_http_error_names_url_and_local_option(server: type[_RangeHandler], tmp_path: Path) -> None:
    server.mode = "not_found"
    with pytest.raises(SourceError) as info:
        download(_url(server), tmp_path, retries=3)
    assert _url(server) in str(info.value) and "--source FILE_OR_DIR" in str(info.value)
    assert len(server.requests) == 1  # a 404 is final


@pytest.mark.parametrize("host", ["refused", "nonexistent.invalid"])
def test_no_network_fails_fast(tmp_path: Path, host: str) -> None:
    if host == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            host = f"127.0.0.1:{s.getsockname()[1]}"
    url = f"http://{host}/metadata_us_Electronics.json.gz"
    start = time.monotonic()
    with pytest.raises(SourceError, match="pass --source FILE_OR_DIR to read a local copy") as info:
        download(url, tmp_path, retries=5)
    assert url in str(info.value)
    assert time.monotonic() - start < 5


def test_xmarket_url() -> None:
    assert xmarket_url("us", "Electronics") == (
        "https://ciir.cs.umass.edu/downloads/XMarket/FULL/us/Electronics/metadata_us_Electronics.json.gz"
    )


def test_downloaded_xmarket_file_reads_with_its_market(
    server: type[_RangeHandler], tmp_path: Path
) -> None:
    lines = [json.dumps({"asin": "A1", "title": "Mixer"}), repr({"asin": "A2", "title": "Kettle"})]
    server.payload = gzip.compress("\n".join(lines).encode())
    path = download(_url(server, "metadata_uk_Home_and_Kitchen.json.gz"), tmp_path)
    products = list(read_xmarket(path, IngestReport()))
    assert [(p.id, p.market) for p in products] == [("A1", "uk"), ("A2", "uk")]
