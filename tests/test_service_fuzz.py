"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis + hypothesis), on the real
sample store and tiny real models: no input may produce a 5xx, and every answer must match
the documented schema and content type."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from service_support import SAMPLE_IMAGES, sample_search

from ctir_es.service import Limits, create_app

MAX_EXAMPLES = 25  # per operation and generation mode: bounded, a few seconds each


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path, tiny_clip):
    search, _ = sample_search(tmp_path_factory.mktemp("fuzz"), tiny_text_model_dir, tiny_clip)
    app = create_app(search, [SAMPLE_IMAGES], Limits(max_upload_bytes=100_000, max_image_pixels=500_000))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    search.close()


@pytest.fixture(scope="module")
def client(api_schema) -> TestClient:
    return TestClient(api_schema.app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def product_ids(client: TestClient) -> list[str]:
    return [r["id"] for r in client.get("/search", params={"q": "Watches > Wrist Watches", "k": 20}).json()["results"]]


# Every operation of the schema (test_openapi_schema_lists_the_endpoints keeps the list honest).
OPERATIONS = [
    ("GET", "/health"), ("GET", "/search"), ("POST", "/search/image"), ("GET", "/products/{product_id}"),
    ("GET", "/products/{product_id}/image"), ("GET", "/products/{product_id}/similar"),
    ("GET", "/categories"), ("POST", "/categorize"), ("GET", "/audit"),
]


CASES = [
    pytest.param(method, path, mode, id=f"{mode.value}-{method}-{path}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (path == "/health" and mode is GenerationMode.NEGATIVE)  # no parameters to get wrong
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_never_answers_5xx(api_schema, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call()
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                 content_type_conformance])
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}

    fuzz()
    assert seen and max(seen) < 500


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf[:cut] if cut else buf)


SEED_IMAGES = sorted(SAMPLE_IMAGES.glob("*.jpg"))[:3]


@given(
    seed=st.sampled_from(SEED_IMAGES),
    fmt=st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
    cut=st.none() | st.integers(1, 4_000),
    endpoint=st.sampled_from(["/search/image", "/categorize"]),
)
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_corrupted_real_images_never_5xx(client: TestClient, seed: Path, fmt: str, edits, cut, endpoint: str) -> None:
    """Real product photos re-encoded in every accepted format, then bit-flipped and cut."""
    buf = io.BytesIO()
    with Image.open(seed) as im:
        im.convert("RGB").save(buf, format=fmt)
    data = _mutate(buf.getvalue(), edits, cut)
    r = client.post(endpoint, files={"file": ("x", data, "application/octet-stream")})
    assert r.status_code in (200, 413, 415, 422), r.text[:300]
    if r.status_code != 200:
        assert set(r.json()["error"]) == {"code", "message"}


@given(
    index=st.integers(0, 19),
    k=st.integers(-5, 120),
    offset=st.integers(-5, 1_000),
    within=st.none() | st.text(max_size=40),
    market=st.none() | st.text(max_size=10),
    fusion=st.sampled_from(["rrf", "linear", "RRF", ""]),
    weights=st.none() | st.from_regex(r"(bm25|text|image|x)=[0-9.e+-]{0,6}(,(bm25|text|image)=[0-9.]{0,4})?",
                                      fullmatch=True),
)
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_similar_on_real_products_never_5xx(client: TestClient, product_ids: list[str], index: int, k: int,
                                            offset: int, within, market, fusion: str, weights) -> None:
    params = {"k": k, "offset": offset, "fusion": fusion}
    params.update({n: v for n, v in (("within", within), ("market", market), ("weights", weights)) if v is not None})
    r = client.get(f"/products/{product_ids[index]}/similar", params=params)
    assert r.status_code in (200, 400, 422), r.text[:300]
    if r.status_code == 200:
        page = r.json()
        assert product_ids[index] not in {x["id"] for x in page["results"]}
        assert len(page["results"]) <= k
