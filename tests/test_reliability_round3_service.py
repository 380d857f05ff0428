"""Issue 24, service hygiene and bounded work (items 3, 6 and the service part of 7): the real
``ctir-es serve`` in a subprocess on 127.0.0.1, or the app under ``TestClient``, over stores
made by the real ``ctir-es ingest``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

import pytest
from fastapi.testclient import TestClient
from service_support import SAMPLE_IMAGES, free_port
from test_reliability_ingest import run_cli

from ctir_es import search as search_module
from ctir_es.config import load_settings
from ctir_es.errors import Unsupported
from ctir_es.filters import Filter
from ctir_es.search import Search
from ctir_es.service import Limits, create_app
from ctir_es.service.hosts import allowed_hosts_for

CLI = Path(sys.executable).parent / "ctir-es"


def catalogue(tmp: Path, n: int, name: str = "c.jsonl") -> Path:
    path = tmp / name
    path.write_text("".join(json.dumps({"id": f"p{i}", "title": f"steel pan number {i} with lid",
                                        "description": "a fine pan " * 30,
                                        "categories": [["Kitchen", f"Pans {i % 7}"]]}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def ingest(tmp: Path, n: int, store: Path, *extra: str) -> Path:
    out = run_cli(tmp, "ingest", "jsonl", str(catalogue(tmp, n)), "--store", str(store), "--no-images",
                  "--text-model", "none", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return store


def corrupt_middle_page(src: Path, dst: Path) -> None:
    """A copy of ``src`` with the page in the middle of the file overwritten: the header, the
    schema and the first pages still read, so the store opens and counts its products."""
    dst.write_bytes(src.read_bytes())
    with sqlite3.connect(dst) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    conn.close()
    assert pages >= 8, pages
    with open(dst, "r+b") as fh:
        fh.seek((pages // 2) * page)
        fh.write(b"\xa5" * page)


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else body


class Serve:
    """``ctir-es serve`` in a subprocess, answered at all (whatever /health says), stopped by pid."""

    def __init__(self, tmp: Path, store: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        full_env = {**os.environ, "CTIR_ES_CONFIG": str(tmp / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp / "cache")}
        for var in ("CTIR_ES_URL", "CTIR_ES_STORE", "CTIR_ES_ALLOWED_HOSTS", "CTIR_ES_SERVICE_API_KEY"):
            full_env.pop(var, None)
        full_env.update(env or {})
        self.cmd = [str(CLI), "serve", "--store", str(store), "--port", str(self.port), *extra]
        self.env = full_env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.fh = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.output()}")
            try:
                get(f"{self.url}/openapi.json", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"serve did not answer: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.fh.close()


def health_settled(url: str, timeout: float = 30) -> tuple[int, Any]:
    """/health once the background integrity check is no longer ``checking``."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(f"{url}/health")
        if status != 200 or body.get("integrity") != "checking" or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


# -- 1. /health reports a damaged store ------------------------------------------------------------

def test_health_reports_a_store_damaged_in_the_middle_before_any_query(tmp_path: Path) -> None:
    sound = ingest(tmp_path, 400, tmp_path / "s.db")
    broken = tmp_path / "broken.db"
    corrupt_middle_page(sound, broken)
    with Serve(tmp_path, broken) as server:
        status, body = health_settled(server.url)
        assert status == 503, body
        assert body["error"]["code"] == "store_corrupted"
        assert "is corrupted" in body["error"]["message"] and "ctir-es ingest" in body["error"]["message"]
        assert get(f"{server.url}/health")[0] == 503  # and it stays so
        assert "Traceback" not in server.output()
    with Serve(tmp_path, sound) as server:
        status, body = health_settled(server.url)
        assert status == 200 and body["status"] == "ok" and body["integrity"] == "ok", body
        assert body["products"] == 400


# -- 2. bounded /audit ---------------------------------------------------------------------------

AUDIT_CAP = 60  # below the 400 products of the store, above one category's 57 or 58


@pytest.fixture(scope="module")
def vector_store(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    """400 products in 7 categories of 57 or 58, with title vectors (the tiny text model)."""
    tmp = tmp_path_factory.mktemp("audit")
    return ingest(tmp, 400, tmp / "v.db", "--text-model", str(tiny_text_model_dir))


def open_search(store: Path, tmp: Path) -> Search:
    return Search.open(load_settings(env={"CTIR_ES_STORE": str(store), "CTIR_ES_CONFIG": str(tmp / "absent.toml"),
                                          "CTIR_ES_CACHE_DIR": str(tmp / "cache")}))


def test_audit_over_the_limit_is_refused_at_once_and_within_or_offset_bound_it(vector_store: Path,
                                                                               tmp_path: Path) -> None:
    search = open_search(vector_store, tmp_path)
    with TestClient(create_app(search, limits=Limits(max_audit=AUDIT_CAP))) as client:
        started = time.monotonic()
        resp = client.get("/audit")
        assert time.monotonic() - started < 5
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        assert error["code"] == "too_many_products"
        assert "400 products" in error["message"] and f"at most {AUDIT_CAP}" in error["message"]
        assert "within=" in error["message"] and "offset=" in error["message"]

        resp = client.get("/audit", params={"within": "Kitchen > Pans 3", "k": 200})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["total"] == 57 and body["audited"] == 57 and body["next_offset"] is None
        assert {e["id"] for e in body["entries"]} <= {f"p{i}" for i in range(400) if i % 7 == 3}

        seen, offset, pages = 0, 0, 0
        while offset is not None:
            page = client.get("/audit", params={"offset": offset}).json()
            assert page["total"] == 400 and page["offset"] == offset and page["audited"] <= AUDIT_CAP
            seen, offset, pages = seen + page["audited"], page["next_offset"], pages + 1
        assert (seen, pages) == (400, 7)
        assert "offset" in client.get("/openapi.json").json()["paths"]["/audit"]["get"]["description"]


def test_filtered_audit_on_an_index_larger_than_max_audit_lists_only_the_matches(
        vector_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``audit --within`` used to be refused on any index over MAX_AUDIT products (the count
    ignored the filter); here MAX_AUDIT is 100 and the index holds 400."""
    monkeypatch.setattr(search_module, "MAX_AUDIT", 100)
    search = open_search(vector_store, tmp_path)
    try:
        report = search.audit(k=100, filters=[Filter("category", "subtree", "Kitchen > Pans 3")])
        assert report.audited == 57
        assert search.audit_selection([Filter("category", "subtree", "Kitchen > Pans 3")]) == \
            sorted(f"p{i}" for i in range(400) if i % 7 == 3)
        with pytest.raises(Unsupported, match="100 or more of the index's 400 products match the filter"):
            search.audit(filters=[Filter("category", "subtree", "Kitchen")])
    finally:
        search.close()


def test_serve_max_audit_flag_bounds_audit(vector_store: Path, tmp_path: Path) -> None:
    with Serve(tmp_path, vector_store, "--max-audit", "100") as server:
        status, body = get(f"{server.url}/audit")
        assert status == 422 and body["error"]["code"] == "too_many_products", body
        assert "at most 100" in body["error"]["message"]
        status, body = get(f"{server.url}/audit?offset=300")
        assert status == 200 and body["audited"] == 100 and body["next_offset"] is None, body


# -- 3. allowed hosts (DNS rebinding) ------------------------------------------------------------

def test_a_wrong_host_header_is_400_and_the_local_names_are_answered(vector_store: Path, tmp_path: Path) -> None:
    search = open_search(vector_store, tmp_path)
    app = create_app(search, allowed_hosts=allowed_hosts_for("127.0.0.1", None))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", "", "a b"):
            resp = client.post("/categorize", headers={"host": host}, json={"text": "steel pan"})
            assert resp.status_code == 400, (host, resp.text)
            assert resp.json()["error"]["code"] == "bad_host"
            assert resp.headers["x-content-type-options"] == "nosniff"  # the security headers still apply


def test_allowed_hosts_rules() -> None:
    assert allowed_hosts_for("127.0.0.1", None) == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts_for("::1", None) == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts_for("192.168.1.5", None) == ["127.0.0.1", "localhost", "[::1]", "192.168.1.5"]
    assert allowed_hosts_for("0.0.0.0", None) is None  # a wildcard bind: serve says "any" at start
    assert allowed_hosts_for("127.0.0.1", "Shop.Example, *.intra.example,fe80::1") == \
        ["shop.example", "*.intra.example", "[fe80::1]"]


def test_serve_refuses_a_rebound_host_and_takes_the_setting(vector_store: Path, tmp_path: Path) -> None:
    def status_for(server: Serve, host: str) -> int:
        return get(f"{server.url}/health", headers={"Host": host})[0]

    with Serve(tmp_path, vector_store) as server:
        assert status_for(server, "rebind.attacker.example") == 400
        assert status_for(server, f"localhost:{server.port}") == 200
        assert "answers the Host names: 127.0.0.1, localhost, [::1]" in server.output()
    with Serve(tmp_path, vector_store, env={"CTIR_ES_ALLOWED_HOSTS": "shop.example"}) as server:
        assert status_for(server, "shop.example") == 200
        assert status_for(server, "localhost") == 400


# -- 4. serve starts despite one bad image path --------------------------------------------------

def test_serve_starts_despite_one_image_path_with_a_flipped_byte_and_reports_it(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for src in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:3]:
        (images / src.name).write_bytes(src.read_bytes())
    source = tmp_path / "c.jsonl"
    source.write_text("".join(json.dumps({"id": f"p{i}", "title": f"pan {i}", "categories": [["Kitchen", "Pans"]],
                                          "images": [str(p)]}) + "\n"
                              for i, p in enumerate(sorted(images.iterdir()))), encoding="utf-8")
    store = tmp_path / "s.db"
    out = run_cli(tmp_path, "ingest", "jsonl", str(source), "--store", str(store), "--text-model", "none",
                  "--clip-weights", "none", "--json")
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(store) as conn:  # one byte of one stored path flipped: no longer UTF-8
        path = bytearray(conn.execute("SELECT image FROM products WHERE id = 'p1'").fetchone()[0].encode())
        path[len(path) // 2] ^= 0x80
        conn.execute("UPDATE products SET image = CAST(? AS TEXT) WHERE id = 'p1'", (bytes(path),))
    conn.close()
    with Serve(tmp_path, store) as server:
        status, body = health_settled(server.url)
        assert status == 200 and body["products"] == 3 and body["integrity"] == "ok", body
        log = server.output()
        assert "the image directories could not be listed from the store" in log
        assert "serving no local images: pass --image-root DIR" in log and "Traceback" not in log
    with Serve(tmp_path, store, "--image-root", str(images)) as server:  # the fix it names works
        status, body = get(f"{server.url}/products/p0")
        assert status == 200 and body["image_url"], body


# -- 5. an optional API key for the expensive routes ---------------------------------------------

KEY = "k3y-Only-The-Operator-Knows"


def test_audit_needs_the_api_key_when_one_is_set(vector_store: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    search = open_search(vector_store, tmp_path)
    with TestClient(create_app(search, api_key=KEY)) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}):
            resp = client.get("/audit", params={"within": "Kitchen > Pans 1"}, headers=headers)
            assert resp.status_code == 401, (headers, resp.text)
            assert resp.json()["error"]["code"] == "unauthorized" and resp.headers["www-authenticate"] == "Bearer"
            assert KEY not in resp.text
        resp = client.get("/audit", params={"within": "Kitchen > Pans 1"}, headers={"Authorization": f"Bearer {KEY}"})
        assert resp.status_code == 200 and resp.json()["total"] == 57, resp.text
        assert client.get("/search", params={"q": "steel pan"}).status_code == 200  # other routes stay open
        schema = client.get("/openapi.json").json()
        scheme = schema["components"]["securitySchemes"]["apiKey"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        assert schema["paths"]["/audit"]["get"]["security"] == [{"apiKey": []}]
        assert "401" in schema["paths"]["/audit"]["get"]["responses"]
    assert KEY not in caplog.text
    with TestClient(create_app(open_search(vector_store, tmp_path))) as client:  # no key: open as before
        assert client.get("/audit", params={"within": "Kitchen > Pans 1"}).status_code == 200


def test_serve_takes_the_api_key_from_the_environment_and_never_prints_it(vector_store: Path,
                                                                          tmp_path: Path) -> None:
    with Serve(tmp_path, vector_store, env={"CTIR_ES_SERVICE_API_KEY": KEY}) as server:
        url = f"{server.url}/audit?within=Kitchen%20%3E%20Pans%202"
        assert get(url)[0] == 401
        status, body = get(url, headers={"Authorization": f"Bearer {KEY}"})
        assert status == 200 and body["total"] == 57, body
        assert "GET /audit needs the API key (CTIR_ES_SERVICE_API_KEY)" in server.output()
        assert KEY not in server.output()
