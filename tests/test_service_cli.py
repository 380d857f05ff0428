"""``ctir-es serve``: the real command, in a subprocess, on the bundled sample."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_support import CATEGORY, SAMPLE_IMAGES, ServeProcess, sample_store_file

from ctir_es.cli.main import cli


def get(url: str) -> tuple[int, dict | bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
            ctype = r.headers["content-type"]
            status = r.status
    except urllib.error.HTTPError as err:
        body, ctype, status = err.read(), err.headers["content-type"], err.code
    return status, (json.loads(body) if ctype.startswith("application/json") else body), ctype


def test_serve_help() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--store", "--es-url", "--image-root", "--timeout", "--max-upload-mb"):
        assert option in result.output


def test_serve_before_ingest_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("CTIR_ES_URL", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "empty.db")])
    assert result.exit_code == 1 and "run `ctir-es ingest" in result.output


def test_serve_answers_a_category_query_on_the_sample(tmp_path: Path, tiny_text_model_dir: Path, tiny_clip) -> None:
    store = sample_store_file(tmp_path, tiny_text_model_dir, tiny_clip)
    with ServeProcess(store, tmp_path) as server:
        status, page, _ = get(f"{server.url}/search?" + urllib.parse.urlencode({"q": CATEGORY, "k": 10}))
        assert status == 200
        assert page["mode"] == "category" and [r["rank"] for r in page["results"]] == list(range(1, 11))
        assert sum(r["categories"][0][:2] == ["Kitchen & Dining", "Cookware"] for r in page["results"]) >= 8
        status, image, ctype = get(server.url + page["results"][0]["image_url"])
        assert status == 200 and ctype == "image/jpeg" and image[:3] == b"\xff\xd8\xff"
        status, html, ctype = get(server.url + "/")
        assert status == 200 and ctype.startswith("text/html") and b"/static/app.js" in html
        status, err, _ = get(f"{server.url}/products/..%2f..%2fetc%2fpasswd/image")
        assert status == 404 and err["error"]["code"] == "not_found"
        status, health, _ = get(f"{server.url}/health")
        assert health["products"] == 280 and health["image_search"] is True and health["image_roots"] == 1
    out = server.output()
    assert f"local images served only from: {SAMPLE_IMAGES}" in out
    assert "Traceback" not in out
