"""Issue 24, item 5: image URLs from a catalogue cannot reach internal addresses (SSRF).

Every test talks to 127.0.0.1 only: in-process tests patch urllib3's connect to fail on any
other address, and the CLI tests use loopback URLs (plain, by name, and as a decimal number).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.util.connection
from PIL import Image

from ctir_es.errors import ImageError
from ctir_es.ingest.addresses import (
    MAX_LOOKUPS,
    AddressPolicy,
    GuardedAdapter,
    IPAddress,
    bounded_lookup,
    default_policy,
    numeric_host,
    refusal,
    resolve,
)
from ctir_es.ingest.images import ImageLoader

CLI = [sys.executable, "-m", "ctir_es.cli"]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


class _Server:
    """A 127.0.0.1 HTTP server: ``/img.png`` is an image, ``/go?<url>`` redirects to <url>."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.hosts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                outer.hits[path] += 1
                outer.hosts.append(self.headers.get("Host", ""))
                if path == "/go":
                    self.send_response(302)
                    self.send_header("Location", query)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture
def second_server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail (without a packet sent) any in-process connection not to 127.0.0.1."""
    real = urllib3.util.connection.create_connection
    seen: list[str] = []

    def guard(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        seen.append(address[0])
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a connection to {address[0]} was attempted")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guard)
    return seen


# -- the address rule, on a table of spellings -------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"), ("127.1", "loopback"), ("2130706433", "loopback"), ("0177.0.0.1", "loopback"),
    ("0x7f.0.0.1", "loopback"), ("0x7f000001", "loopback"), ("017700000001", "loopback"),
    ("0.0.0.0", "unspecified"), ("0", "unspecified"),
    ("169.254.169.254", "link-local"), ("2852039166", "link-local"), ("0xa9.0xfe.0xa9.0xfe", "link-local"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "private"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("224.0.1.1", "multicast"),
    ("240.0.0.1", "reserved"), ("192.0.2.1", "private"), ("198.18.0.1", "private"),
    ("::1", "loopback"), ("[::1]", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"), ("fc00::1", "private"), ("fd12:3456::1", "private"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:7f00:1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.1.2.3", "private"), ("::ffff:0.0.0.0", "unspecified"),
    ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
    ("2001:db8::1", "private"),  # documentation
]
ALLOWED = ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "0x8.8.8.8"]


@pytest.mark.parametrize(("host", "kind"), REFUSED)
def test_non_public_spellings_are_refused(host: str, kind: str) -> None:
    (address,) = resolve(host, 80)  # numeric: no DNS asked
    why = refusal(address)
    assert why is not None and why.startswith(f"{kind} address"), (host, why)


@pytest.mark.parametrize("host", ALLOWED)
def test_public_addresses_pass(host: str) -> None:
    (address,) = resolve(host, 80)
    assert refusal(address) is None


def test_numeric_spellings_and_names() -> None:
    assert numeric_host("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert numeric_host("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert numeric_host("10.1") == ipaddress.ip_address("10.0.0.1")
    for name in ("images.example.com", "1.2.3.example", "256.1.1.1", "08.1.1.1", "1.2.3.4.5", "0x", "", "1_0.0.0.1", "0x_7f.1", "١٢٧.0.0.1"):
        assert numeric_host(name) is None or name == "0x", name
    assert all(refusal(a) is not None for a in resolve("localhost", 80))  # /etc/hosts, not DNS


# -- fetching -------------------------------------------------------------------------------------

def _reason(loader: ImageLoader, url: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        loader.load(url)
    return info.value


def test_loopback_image_is_refused_by_default_and_fetched_with_the_opt_in(server: _Server) -> None:
    for url in (f"{server.url}/img.png", f"http://localhost:{server.port}/img.png",
                f"http://2130706433:{server.port}/img.png", f"http://[::ffff:127.0.0.1]:{server.port}/img.png"):
        err = _reason(ImageLoader(retries=0), url)
        assert err.reason == "refused" and "loopback address" in err.detail, (url, err.detail)
    assert server.hits["/img.png"] == 0  # refused before connecting
    assert ImageLoader(allow_private=True).load(f"{server.url}/img.png").size == (8, 6)
    assert ImageLoader(allow_private=True).load(f"http://2130706433:{server.port}/img.png").size == (8, 6)
    assert server.hits["/img.png"] == 2


def _first_hop_only(port: int) -> AddressPolicy:
    """Loopback on ``port`` plays "a public image host"; every other address gets the default rule."""
    def policy(address: IPAddress, p: int) -> str | None:
        if address == ipaddress.ip_address("127.0.0.1") and p == port:
            return None
        return default_policy(address, p)
    return policy


def test_redirect_to_an_internal_address_is_refused(server: _Server, second_server: _Server) -> None:
    loader = ImageLoader(retries=0, address_policy=_first_hop_only(server.port))
    assert loader.load(f"{server.url}/img.png").size == (8, 6)  # the first hop is allowed
    for target in (f"{second_server.url}/img.png", f"http://localhost:{second_server.port}/img.png",
                   f"http://0x7f000001:{second_server.port}/img.png"):
        err = _reason(loader, f"{server.url}/go?{target}")
        assert err.reason == "refused" and "loopback address" in err.detail, err.detail
    assert server.hits["/go"] == 3 and second_server.hits["/img.png"] == 0  # never reached
    # a relative redirect stays on the allowed host and is followed
    assert loader.load(f"{server.url}/go?/img.png").size == (8, 6)
    # the same redirect with both hops allowed is followed: the refusal above is the policy's
    both = ImageLoader(retries=0, allow_private=True)
    assert both.load(f"{server.url}/go?{second_server.url}/img.png").size == (8, 6)
    assert second_server.hits["/img.png"] == 1


def test_connects_to_the_address_it_checked(server: _Server, loopback_only: list[str]) -> None:
    """A rebinding DNS answers a checked address first and an internal one after: the name is
    resolved once per request, the connection goes to the first answer, Host keeps the name."""
    answers: list[str] = []

    def rebinding(host: str, port: int) -> list[IPAddress]:
        answers.append(host)
        first = len(answers) == 1
        return [ipaddress.ip_address("127.0.0.1" if first else "169.254.169.254")]

    loader = ImageLoader(retries=0, address_policy=_first_hop_only(server.port), resolver=rebinding)
    assert loader.load(f"http://images.test:{server.port}/img.png").size == (8, 6)
    assert answers == ["images.test"] and loopback_only == ["127.0.0.1"]
    assert server.hosts == [f"images.test:{server.port}"]
    err = _reason(loader, f"http://images.test:{server.port}/again.png")  # now it points at metadata
    assert err.reason == "refused" and "link-local address 169.254.169.254" in err.detail
    assert server.hits["/again.png"] == 0


def test_https_goes_to_the_checked_address_with_the_name_for_tls(server: _Server) -> None:
    """HTTPS: the pool is keyed to the pinned IP and sends/checks the original name (SNI)."""
    adapter = GuardedAdapter(policy=_first_hop_only(server.port),
                             resolver=lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(requests.exceptions.SSLError):  # the server speaks plain HTTP
        session.get(f"https://shop.test:{server.port}/img.png", timeout=5)
    keys = list(adapter.poolmanager.pools.keys())
    assert [(k.key_host, k.key_server_hostname, k.key_assert_hostname) for k in keys] == [
        ("127.0.0.1", "shop.test", "shop.test")]


def test_metadata_address_is_refused_without_a_connection() -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/",
                "http://0xa9fea9fe/x.png", "http://10.0.0.1/x.png", "http://0.0.0.0:80/x.png"):
        err = _reason(ImageLoader(retries=2), url)
        assert err.reason == "refused", url  # never retried into "unreachable"


# -- through the CLI ------------------------------------------------------------------------------

def _ingest(tmp_path: Path, urls: list[str], *extra: str, env: dict[str, str] | None = None) -> dict:
    tmp_path.mkdir()
    catalogue = tmp_path / "c.jsonl"
    catalogue.write_text("".join(json.dumps({"id": f"p{i}", "title": f"product {i}", "images": [u]}) + "\n"
                                 for i, u in enumerate(urls)), encoding="utf-8")
    base = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "c")}
    for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_ALLOW_PRIVATE_IMAGES"):
        base.pop(var, None)
    out = subprocess.run([*CLI, "ingest", "jsonl", str(catalogue), "--store", str(tmp_path / "s.db"),
                          "--text-model", "none", "--clip-weights", "none", "--no-resume", "--json", *extra],
                         env={**base, **(env or {})}, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout)


def test_cli_ingest_refuses_internal_images_and_the_opt_in_fetches_them(tmp_path: Path, server: _Server) -> None:
    urls = [f"{server.url}/img.png", f"http://localhost:{server.port}/img.png",
            f"http://2130706433:{server.port}/img.png", f"{server.url}/go?{server.url}/img.png"]
    report = _ingest(tmp_path / "default", urls)
    assert report["indexed"] == 4 and report["images_missing"] == {"refused": 4}
    assert {e["detail"].split(" for ")[0] for e in report["image_examples"]} == {"loopback address 127.0.0.1"}
    assert sum(server.hits.values()) == 0

    report = _ingest(tmp_path / "flag", urls, "--allow-private-images")
    assert report["indexed"] == 4 and report["images_missing"] == {}, report["images_missing"]
    assert server.hits["/img.png"] == 4 and server.hits["/go"] == 1

    report = _ingest(tmp_path / "env", urls[:1], env={"CTIR_ES_ALLOW_PRIVATE_IMAGES": "1"})
    assert report["images_missing"] == {}
    assert server.hits["/img.png"] == 5


def test_a_dns_lookup_that_never_answers_ends_at_the_image_deadline(server: _Server) -> None:
    """getaddrinfo cannot be interrupted: a resolver stuck on a dead DNS server used to hold the
    download past its deadline. The lookup now runs in a thread the request stops waiting for."""
    release = threading.Event()

    def dead_dns(host: str, port: int) -> list[IPAddress]:
        release.wait(30)  # a DNS server that does not answer
        return [ipaddress.ip_address("127.0.0.1")]

    loader = ImageLoader(retries=0, deadline=1.0, resolver=dead_dns, allow_private=True)
    started = time.monotonic()
    err = _reason(loader, f"http://slow-dns.test:{server.port}/img.png")
    took = time.monotonic() - started
    release.set()
    assert err.reason in {"too_slow", "unreachable"} and took < 5, (err.reason, took)
    assert server.hits["/img.png"] == 0


def test_lookups_stuck_on_dns_are_bounded_in_number() -> None:
    release = threading.Event()

    def dead_dns(host: str, port: int) -> list[IPAddress]:
        release.wait(30)
        return []

    try:
        for _ in range(MAX_LOOKUPS):  # each gives up waiting; its thread stays stuck
            with pytest.raises(TimeoutError, match="no DNS answer"):
                bounded_lookup(dead_dns, "stuck.test", 80, 0.05)
        with pytest.raises(TimeoutError, match="already waiting"):  # no seventeenth thread
            bounded_lookup(dead_dns, "stuck.test", 80, 0.05)
    finally:
        release.set()
    time.sleep(0.2)
    assert bounded_lookup(lambda host, port: [ipaddress.ip_address("192.0.2.1")], "ok.test", 80, 5) == [
        ipaddress.ip_address("192.0.2.1")]
