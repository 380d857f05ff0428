"""The HTTP service over the real embedded store, the bundled sample and the tiny real models:
endpoints, limits (413/415/422), timeouts, path traversal (404), and the one error shape."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_support import CATEGORY, SAMPLE_IMAGES, sample_image, sample_search

from ctir_es.errors import (
    AccessDenied,
    ConfigError,
    CtirError,
    EncoderError,
    LicenceRequired,
    NotFound,
    QueryError,
    SchemaMismatch,
    StoreCorrupted,
    StoreLocked,
    Unreachable,
)
from ctir_es.ingest.images import ImageLoader
from ctir_es.ranking.fusion import SourceScore, contribution
from ctir_es.search import Search
from ctir_es.service import Limits, create_app
from ctir_es.service.errors import documented, status_for
from ctir_es.service.routes.page import STATIC_FILES
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import RRF_K

SMALL = Limits(max_upload_bytes=200_000, max_image_pixels=1_000_000)


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path, tiny_clip):
    s, _ = sample_search(tmp_path_factory.mktemp("service"), tiny_text_model_dir, tiny_clip)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(search: Search) -> TestClient:
    return TestClient(create_app(search, [SAMPLE_IMAGES], SMALL), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def text_only(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path):
    s, _ = sample_search(tmp_path_factory.mktemp("text-only"), tiny_text_model_dir, None)
    yield TestClient(create_app(s, [SAMPLE_IMAGES]), raise_server_exceptions=False)
    s.close()


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


def upload(data: bytes, name: str = "q.jpg", mime: str = "image/jpeg") -> dict:
    return {"file": (name, data, mime)}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# -- search ------------------------------------------------------------------------------


def test_category_search_returns_ranked_products_with_images(client: TestClient) -> None:
    r = client.get("/search", params={"q": CATEGORY, "k": 10})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["mode"] == "category" and page["sources"] == ["bm25", "text", "image"]
    assert page["offset"] == 0 and page["k"] == 10 and page["has_more"] is True
    results = page["results"]
    assert [x["rank"] for x in results] == list(range(1, 11))
    assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
    assert page["max_score"] == results[0]["score"]
    in_subtree = [x for x in results if x["categories"][0][:2] == ["Kitchen & Dining", "Cookware"]]
    assert len(in_subtree) >= 8
    for x in results:
        assert x["image_url"] == f"/products/{x['id']}/image"
        # per-source breakdown: the bars add up to the fused score (RRF)
        assert sum(s["contribution"] for s in x["sources"].values()) == pytest.approx(x["score"])
        assert "image" not in x or not str(x.get("image", "")).startswith("/")  # no server paths
    img = client.get(results[0]["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(img.content)).size[0] > 0


def test_pagination_continues_the_same_ranking(client: TestClient) -> None:
    both = client.get("/search", params={"q": CATEGORY, "k": 20}).json()["results"]
    first = client.get("/search", params={"q": CATEGORY, "k": 10}).json()
    second = client.get("/search", params={"q": CATEGORY, "k": 10, "offset": 10}).json()
    assert [x["id"] for x in first["results"] + second["results"]] == [x["id"] for x in both]
    assert [x["rank"] for x in second["results"]] == list(range(11, 21))
    last = client.get("/search", params={"q": "watch", "k": 100, "offset": 900}).json()
    assert last["results"] == [] and last["has_more"] is False


def test_text_mode_filters_fusion_and_weights(client: TestClient) -> None:
    r = client.get("/search", params={"q": "steel", "within": "Watches", "k": 5})
    assert r.status_code == 200 and r.json()["mode"] == "text"
    assert r.json()["results"] and all(x["categories"][0][0] == "Watches" for x in r.json()["results"])
    r = client.get("/search", params={"q": CATEGORY, "fusion": "linear", "weights": "bm25=1,text=0,image=0"})
    page = r.json()
    assert r.status_code == 200 and page["fusion"] == "linear" and page["weights"]["text"] == 0
    assert all(x["sources"]["bm25"]["normalised"] is not None for x in page["results"] if "bm25" in x["sources"])
    assert client.get("/search", params={"q": "x", "market": "in", "with_image": "true"}).status_code == 200


def test_contributions_explain_the_fused_score_for_both_methods(client: TestClient) -> None:
    for fusion in ("rrf", "linear"):
        page = client.get("/search", params={"q": CATEGORY, "k": 10, "fusion": fusion,
                                             "weights": "bm25=1,text=0.3,image=0.5"}).json()
        assert page["fusion"] == fusion and page["results"]
        for x in page["results"]:
            assert sum(s["contribution"] for s in x["sources"].values()) == pytest.approx(x["score"])
            for name, s in x["sources"].items():
                expected = (page["weights"][name] / (RRF_K + s["rank"]) if fusion == "rrf"
                            else page["weights"][name] * s["normalised"])
                assert s["contribution"] == pytest.approx(expected)
    with pytest.raises(QueryError, match="supported: rrf, linear"):
        contribution("max", SourceScore(1, 1.0), 1.0)


def test_nonsense_query_says_no_word_matched(client: TestClient) -> None:
    page = client.get("/search", params={"q": "xqzvbnm plorf", "k": 10}).json()
    assert page["source_hits"]["bm25"] == 0 and page["source_hits"]["text"] > 0
    assert page["results"] and all("bm25" not in x["sources"] for x in page["results"])
    assert len(page["notices"]) == 1 and "no product matched the words" in page["notices"][0]
    normal = client.get("/search", params={"q": CATEGORY, "k": 10}).json()
    assert normal["notices"] == [] and normal["source_hits"]["bm25"] > 0
    assert set(normal["source_hits"]) == set(normal["sources"])


def test_blank_query_is_422_and_says_so(client: TestClient) -> None:
    for q in ("", "   ", "\t\n"):
        body = assert_error(client.get("/search", params={"q": q}), 422, "invalid_request")
        assert "q:" in body["error"]["message"]
    assert assert_error(client.get("/search", params={"q": "  "}), 422)["error"]["message"] == (
        "query.q: must not be blank")
    # a well-formed request the library cannot plan is a 400
    body = assert_error(client.get("/search", params={"q": "x", "weights": "colour=1"}), 400, "bad_query")
    assert "clip_ita" in body["error"]["message"]  # the supported names are listed


def test_audit_lists_suspects_with_suggestion_and_gap(client: TestClient) -> None:
    r = client.get("/audit", params={"k": 5})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["audited"] == 280 and report["depth"] == 3 and len(report["entries"]) == 5
    suspicion = [e["suspicion"] for e in report["entries"]]
    assert suspicion == sorted(suspicion, reverse=True)
    for e in report["entries"]:
        assert e["suggested"] != e["stored"] and e["gap"] > 0
        assert e["suggested_label"] == " > ".join(e["suggested"])
    kitchen = client.get("/audit", params={"k": 50, "within": "Kitchen & Dining"}).json()
    assert kitchen["audited"] == 40 and all(e["stored"][0] == "Kitchen & Dining" for e in kitchen["entries"])
    assert_error(client.get("/audit", params={"k": 0}), 422)
    assert_error(client.get("/audit", params={"within": " > "}), 400, "bad_query")


@pytest.mark.parametrize(("params", "status"), [
    ({"q": ""}, 422),
    ({"q": "x" * 1001}, 422),
    ({"q": "x", "k": 0}, 422),
    ({"q": "x", "k": 101}, 422),
    ({"q": "x", "offset": -1}, 422),
    ({"q": "x", "offset": 901}, 422),
    ({"q": "x", "mode": "image"}, 422),  # no server-side file paths or URLs as queries
    ({"q": "x", "fusion": "max"}, 422),
    ({"q": "x", "weights": "bm25=nan"}, 400),
    ({"q": "x", "weights": "bm25=-1"}, 400),  # the validator shared with the CLI (issue 12)
    ({"q": "x", "weights": "bm25=1e9"}, 400),
    ({"q": "x", "weights": "colour=1"}, 400),
    ({"q": "   "}, 422),  # blank is as invalid as empty: both break the declared parameter
    ({"q": "x", "within": " > "}, 400),
    ({}, 422),
])
def test_bad_search_parameters_are_4xx_with_the_error_shape(client: TestClient, params: dict, status: int) -> None:
    assert_error(client.get("/search", params=params), status)


# -- products ----------------------------------------------------------------------------


def test_product_similar_and_not_found(client: TestClient, search: Search) -> None:
    first = client.get("/search", params={"q": CATEGORY, "k": 1}).json()["results"][0]
    r = client.get(f"/products/{first['id']}")
    assert r.status_code == 200
    product = r.json()
    assert product["title"] == first["title"] and product["image_url"] == first["image_url"]
    stored = search.product(first["id"])
    assert product["vector_fields"] == list(stored.vector_fields)
    assert {"image_vector", "title_vector"} <= set(product["vector_fields"])
    # the product's own fields, as the library's JSON form, minus the local image paths
    assert product == {**{k: v for k, v in stored.product.to_json().items() if k != "images"},
                       "image_url": first["image_url"], "vector_fields": list(stored.vector_fields)}
    assert str(SAMPLE_IMAGES) not in r.text  # local paths never leave the server
    sim = client.get(f"/products/{first['id']}/similar", params={"k": 5}).json()
    assert sim["mode"] == "similar" and len(sim["results"]) == 5
    assert first["id"] not in {x["id"] for x in sim["results"]}
    assert_error(client.get("/products/no-such-id"), 404, "not_found")
    assert_error(client.get("/products/no-such-id/image"), 404, "not_found")
    assert_error(client.get("/products/no-such-id/similar"), 404, "not_found")
    assert_error(client.get("/products/" + "x" * 600), 422)


# -- uploads -----------------------------------------------------------------------------


def test_image_upload_finds_its_own_product(client: TestClient, search: Search) -> None:
    image = sample_image()
    r = client.post("/search/image", files=upload(image.read_bytes(), image.name), params={"k": 50})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["mode"] == "image" and page["query"] == image.name
    # image-to-image, and image-to-title where the index has CLIP title vectors
    assert page["sources"][0] == "image" and set(page["sources"]) <= {"image", "clip_title"}
    # the image source ranks the product whose own photo this is first (other sources may
    # reorder the fused list)
    nearest = next(x for x in page["results"] if x["sources"].get("image", {}).get("rank") == 1)
    assert search.product(nearest["id"]).image.endswith(image.name)


def test_categorize_upload(client: TestClient, search: Search) -> None:
    image = sample_image()
    r = client.post("/categorize", files=upload(image.read_bytes()), params={"k": 3, "depth": 2, "neighbours": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    own = search.product(image.stem).product  # the sample names each photo after its product
    assert search.product(image.stem).image.endswith(image.name)
    assert body["method"] == "fused" and body["neighbours"] == 1
    assert body["categories"] == [{"path": list(own.categories[0][:2]), "label": " > ".join(own.categories[0][:2]),
                                   "level": 2, "score": pytest.approx(1.0), "support": 1,
                                   "signals": {"image": pytest.approx(1.0)}}]
    assert [s["name"] for s in body["signals"] if s["voters"]] == ["image"]  # an image alone: only the image vote
    assert all(s["note"] for s in body["signals"] if not s["voters"])  # the others say why not
    many = client.post("/categorize", files=upload(image.read_bytes()), params={"k": 50, "depth": 1}).json()
    assert sum(c["score"] for c in many["categories"]) == pytest.approx(1.0)


def test_text_only_index_refuses_image_requests_with_409(text_only: TestClient) -> None:
    data = sample_image().read_bytes()
    body = assert_error(text_only.post("/categorize", files=upload(data)), 409, "unsupported")
    assert "no image vectors" in body["error"]["message"] and "--clip-weights" in body["error"]["message"]
    assert_error(text_only.post("/search/image", files=upload(data)), 409, "unsupported")
    health = text_only.get("/health").json()
    assert health["image_search"] is False and health["vector_fields"] == ["title_vector"]
    assert text_only.get("/search", params={"q": CATEGORY}).status_code == 200


def test_oversized_upload_is_413_before_decoding(client: TestClient) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (SMALL.max_body_bytes + 10)
    for path in ("/search/image", "/categorize"):
        assert_error(client.post(path, files=upload(big)), 413, "payload_too_large")
    # within the body cap, over the file cap: still 413
    assert_error(client.post("/categorize", files=upload(b"\0" * (SMALL.max_upload_bytes + 1))), 413,
                 "image_too_large")

    # a streamed body without Content-Length is cut off as it passes the cap
    def chunks():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(SMALL.max_body_bytes // 65536 + 2):
            yield b"\0" * 65536

    r = client.post("/search/image", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(r, 413, "payload_too_large")


def test_pixel_bomb_is_413_and_junk_is_415_or_422(client: TestClient) -> None:
    bomb = png(2000, 1000)  # 2 Mpx > 1 Mpx, yet only a few KB
    assert len(bomb) < SMALL.max_upload_bytes
    body = assert_error(client.post("/search/image", files=upload(bomb, "b.png", "image/png")), 413, "image_too_large")
    assert "pixels" in body["error"]["message"]
    assert_error(client.post("/categorize", files=upload(b"<svg xmlns='http://www.w3.org/2000/svg'/>")), 415,
                 "unsupported_image")
    assert_error(client.post("/categorize", files=upload(b"")), 415)
    truncated = sample_image().read_bytes()[:300]
    assert_error(client.post("/categorize", files=upload(truncated)), 422, "corrupt_image")
    assert_error(client.post("/categorize"), 422, "invalid_request")  # no file
    assert_error(client.post("/categorize", data={"file": "not a file"}), 422)


# -- errors, limits ----------------------------------------------------------------------


def test_every_error_has_one_shape(client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")
    assert_error(client.delete("/search"), 405, "method_not_allowed")
    assert_error(client.get("/search", params={"q": "x", "k": "many"}), 422, "invalid_request")
    assert_error(client.post("/search/image", content=b"garbage", headers={"content-type": "multipart/form-data"}),
                 400)


def test_unexpected_failure_is_a_bare_500(search: Search, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(search, [SAMPLE_IMAGES])

    def boom() -> int:
        raise RuntimeError("secret internals /etc/shadow")

    monkeypatch.setattr(search.store, "count", boom)
    r = TestClient(app, raise_server_exceptions=False).get("/health")
    body = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text and body


def test_slow_request_times_out_with_503(search: Search, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(search, [SAMPLE_IMAGES], Limits(timeout=0.2))
    monkeypatch.setattr(search.store, "category_counts", lambda: time.sleep(1.0) or {})
    start = time.monotonic()
    r = TestClient(app, raise_server_exceptions=False).get("/categories")
    assert time.monotonic() - start < 0.9
    assert_error(r, 503, "timeout")
    assert r.headers["retry-after"] == "5"


# -- path traversal and image serving ----------------------------------------------------


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/....//....//etc/passwd",
    "/static/app.js%00.png",
    "/static/",
    "/static/sample/images/x.jpg",
    "/products/..%2f..%2f..%2fetc%2fpasswd/image",
    "/products/%2e%2e/image",
    "/products/..%5c..%5cwindows%5cwin.ini/image",
    "/products/%2fetc%2fpasswd/image",
    "/products/..%252f..%252fetc%252fpasswd/image",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/products/../../etc/passwd",
])
def test_path_traversal_attempts_get_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert_error(r, 404)
    assert "root:" not in r.text


@pytest.fixture
def hostile_catalogue(tmp_path: Path, tiny_text_model_dir: Path):
    """Products whose stored image references point outside the image root, through symlinks,
    at non-images and at remote URLs."""
    from service_support import encoders

    root = tmp_path / "images"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    good = root / "good.jpg"
    good.write_bytes(sample_image().read_bytes())
    secret_jpg = outside / "secret.jpg"
    secret_jpg.write_bytes(sample_image().read_bytes())
    (root / "link.jpg").symlink_to(secret_jpg)  # a symlink escaping the root
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "notes.jpg").write_text("root:x:0:0:not an image\n")  # not an image, despite its name
    os.mkfifo(root / "fifo.jpg")
    text, _ = encoders(tiny_text_model_dir, None)
    cache = tmp_path / "cache"
    search = Search(EmbeddedStore(tmp_path / "h.db"), text, None, ImageLoader(cache_dir=cache))
    refs = {
        "good": str(good),
        "outside": str(secret_jpg),
        "dotdot": f"{root}/../secret/secret.jpg",
        "symlink": str(root / "link.jpg"),
        "symlinkdir": str(root / "linkdir" / "secret.jpg"),
        "notimage": str(root / "notes.jpg"),
        "fifo": str(root / "fifo.jpg"),
        "passwd": "/etc/passwd",
        "fileurl": f"file://{good}",
        "dir": str(root),
        "remote": "https://cdn.example.com/img/a.jpg",
        "cached": "https://cdn.example.com/img/cached.jpg",
        "js": "javascript:alert(1)",
    }
    search.index([{"id": pid, "title": f"product {pid}", "images": [ref]} for pid, ref in refs.items()])
    loader = search.image_loader
    cached = loader.cache_path(refs["cached"])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(sample_image().read_bytes())
    yield TestClient(create_app(search, [root]), raise_server_exceptions=False, follow_redirects=False)
    search.close()


def test_only_images_under_the_roots_are_served(hostile_catalogue: TestClient) -> None:
    c = hostile_catalogue
    ok = c.get("/products/good/image")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    for pid in ("outside", "dotdot", "symlink", "symlinkdir", "notimage", "fifo", "passwd", "fileurl", "dir", "js"):
        r = c.get(f"/products/{pid}/image")
        assert_error(r, 404, "not_found")
        assert "root:" not in r.text
    remote = c.get("/products/remote/image")
    assert remote.status_code == 307 and remote.headers["location"] == "https://cdn.example.com/img/a.jpg"
    cached = c.get("/products/cached/image")  # downloaded by the ingest: served from the cache
    assert cached.status_code == 200 and cached.content == sample_image().read_bytes()


def test_no_roots_means_no_local_files(search: Search) -> None:
    c = TestClient(create_app(search, []), raise_server_exceptions=False)
    first = c.get("/search", params={"q": CATEGORY, "k": 1}).json()["results"][0]
    assert_error(c.get(first["image_url"]), 404)
    assert c.get("/health").json()["image_roots"] == 0


# -- page, schema, health --------------------------------------------------------------------


def test_page_and_static_files_work_offline(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    for name in STATIC_FILES:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200
        # no CDN, no external host: every URL in the page's files is relative
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", r.text), name
        assert not re.search(r"\bimport\s*\(|https?://(?!www\.w3\.org)", r.text), name
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and page.headers["x-content-type-options"] == "nosniff"


def test_openapi_schema_lists_the_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "ctir-es"
    assert set(schema["paths"]) == {
        "/health", "/search", "/search/image", "/products/{product_id}", "/products/{product_id}/image",
        "/products/{product_id}/similar", "/categories", "/categorize", "/audit",
    }
    k = next(p for p in schema["paths"]["/search"]["get"]["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == SMALL.max_k
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_health_and_categories(client: TestClient, search: Search) -> None:
    health = client.get("/health").json()
    assert health == {"status": "ok", "products": 280, "backend": "EmbeddedStore",
                      "vector_fields": sorted(search.schema.vectors), "image_search": True, "image_roots": 1,
                      "values": {n: spec.to_json() for n, spec in sorted(search.schema.values.items())},
                      "calibration": {"status": "none", "note": "fixed default fusion (run `ctir-es calibrate`)"},
                      "learned": {"status": "none", "note": "no model learned on this index (run `ctir-es learn`)"}}
    assert {"image_vector", "title_vector"} <= set(health["vector_fields"])
    tree = client.get("/categories").json()
    assert tree["products"] == 280 and len(tree["tree"]) == 7
    kitchen = next(n for n in tree["tree"] if n["name"] == "Kitchen & Dining")
    assert kitchen["count"] == 40 and kitchen["label"] == "Kitchen & Dining"
    cookware = next(n for n in kitchen["children"] if n["name"] == "Cookware")
    assert cookware["path"] == ["Kitchen & Dining", "Cookware"] and cookware["count"] == 27
    shallow = client.get("/categories", params={"depth": 1}).json()
    assert all(n["children"] == [] for n in shallow["tree"]) and shallow["nodes"] == tree["nodes"]


@pytest.mark.parametrize(("error", "status", "code"), [
    (Unreachable("connection refused"), 503, "unavailable"),  # a retry may succeed
    (StoreLocked("another process writes"), 503, "unavailable"),
    (EncoderError("the text encoder failed"), 503, "unavailable"),
    (StoreCorrupted("the file is corrupted"), 500, "store_corrupted"),  # no retry mends these
    (SchemaMismatch("other encoders"), 500, "index_mismatch"),
    (ConfigError("bad setting"), 500, "misconfigured"),
    (AccessDenied("no privilege"), 502, "store_refused"),
    (LicenceRequired("basic licence"), 502, "store_refused"),
    (NotFound("no such product"), 404, "not_found"),
    (QueryError("empty"), 400, "bad_query"),
])
def test_library_errors_map_to_a_status_a_client_can_act_on(error: CtirError, status: int, code: str) -> None:
    assert status_for(error) == (status, code)
    documented_statuses = set(documented())
    assert status in documented_statuses or status < 500  # every 5xx is in the OpenAPI schema
