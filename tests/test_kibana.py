"""The shipped Kibana saved objects (NDJSON) and their import through the saved-objects API.

The NDJSON is checked as Kibana reads it: one object per line with type/id/attributes,
references that resolve inside the file, JSON-in-string attributes that parse, fields that exist
in the index mapping, the image field formatted as an image. The import runs against a stub
Kibana on 127.0.0.1 that checks what the real API requires: ``POST /api/saved_objects/_import``,
the ``kbn-xsrf`` header, multipart/form-data with a ``file`` part
(https://elastic.co/guide/en/kibana/8.15/saved-objects-api-import.html); the url field format
params are those of Kibana's ``field_formats/common/converters/url.ts``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from ctir_es.errors import ConfigError, StoreError
from ctir_es.es_mappings import index as mapping
from ctir_es.es_mappings.kibana import (
    DASHBOARD_ID,
    DATA_VIEW_ID,
    JSON_STRING_ATTRIBUTES,
    parse_ndjson,
    raw_ndjson,
    saved_objects,
    to_ndjson,
)
from ctir_es.store.es.kibana import KibanaConnection, import_saved_objects

KNOWN_TYPES = {"index-pattern", "visualization", "search", "dashboard"}


def mapped_fields() -> set[str]:
    props = mapping.product_properties()
    return set(props) | {"title.keyword", "categories.keyword"}


def test_every_line_is_a_saved_object() -> None:
    text = raw_ndjson()
    assert text.endswith("\n") and all(line.strip() for line in text.splitlines())
    objects = parse_ndjson(text)
    assert [o["type"] for o in objects] == ["index-pattern", "visualization", "search", "dashboard"]
    ids = [o["id"] for o in objects]
    assert len(set(ids)) == len(ids)
    for obj in objects:
        assert obj["type"] in KNOWN_TYPES and obj["attributes"]["title"]
        assert obj["migrationVersion"].keys() == {obj["type"]}
        for name in JSON_STRING_ATTRIBUTES:
            if name in obj["attributes"]:
                json.loads(obj["attributes"][name])
        meta = obj["attributes"].get("kibanaSavedObjectMeta")
        if meta:
            json.loads(meta["searchSourceJSON"])


def test_references_resolve_inside_the_file() -> None:
    objects = parse_ndjson(raw_ndjson())
    by_key = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, ref
        meta = obj["attributes"].get("kibanaSavedObjectMeta")
        if meta and obj["type"] != "dashboard":
            source = json.loads(meta["searchSourceJSON"])
            assert source["indexRefName"] in {r["name"] for r in obj["references"]}
    dashboard = next(o for o in objects if o["id"] == DASHBOARD_ID)
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert {p["panelRefName"] for p in panels} == {r["name"] for r in dashboard["references"]}
    assert {r["type"] for r in dashboard["references"]} == {"visualization", "search"}


def test_data_view_shows_the_image_as_an_image() -> None:
    view = next(o for o in parse_ndjson(raw_ndjson()) if o["id"] == DATA_VIEW_ID)
    assert view["attributes"]["title"] == "products"  # the alias, not a version
    assert "timeFieldName" not in view["attributes"]
    formats = json.loads(view["attributes"]["fieldFormatMap"])
    assert formats["image"]["id"] == "url" and formats["image"]["params"]["type"] == "img"
    assert set(formats["image"]["params"]) <= {"type", "urlTemplate", "labelTemplate", "width", "height"}


def test_fields_used_exist_in_the_mapping() -> None:
    objects = parse_ndjson(raw_ndjson())
    vis = next(o for o in objects if o["type"] == "visualization")
    state = json.loads(vis["attributes"]["visState"])
    terms = next(a for a in state["aggs"] if a["type"] == "terms")
    assert terms["params"]["field"] == mapping.CATEGORY_TOP_FIELD  # products per top category
    assert mapping.product_properties()[mapping.CATEGORY_TOP_FIELD]["type"] == "keyword"
    search = next(o for o in objects if o["type"] == "search")
    assert set(search["attributes"]["columns"]) <= mapped_fields()
    assert search["attributes"]["columns"][0] == "image"


def test_saved_objects_follow_the_alias_and_url_template() -> None:
    objects = saved_objects("shop", "https://cdn.example.com/{{rawValue}}")
    view = next(o for o in objects if o["id"] == DATA_VIEW_ID)
    assert view["attributes"]["title"] == "shop"
    formats = json.loads(view["attributes"]["fieldFormatMap"])
    assert formats["image"]["params"]["urlTemplate"] == "https://cdn.example.com/{{rawValue}}"
    assert parse_ndjson(to_ndjson(objects)) == objects
    with pytest.raises(ConfigError, match="line 1"):
        parse_ndjson("{not json\n")


class _FakeKibana(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[tuple[int, dict[str, Any]]] = (200, {})

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        part = parts.get("file")
        self.received.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
             "file": part.get_payload(decode=True).decode() if part else None,
             "filename": part.get_filename() if part else None}
        )
        status, payload = self.answer
        if self.headers.get("kbn-xsrf") is None:
            status, payload = 400, {"statusCode": 400, "message": "Request must contain a kbn-xsrf header."}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def kibana() -> Iterator[str]:
    _FakeKibana.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKibana)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_posts_the_ndjson_as_the_api_expects(kibana: str) -> None:
    _FakeKibana.answer = (200, {"success": True, "successCount": 4, "successResults": []})
    conn = KibanaConnection.from_env({"CTIR_KIBANA_URL": kibana, "CTIR_ES_USERNAME": "elastic",
                                      "CTIR_ES_PASSWORD": "pw-77"})
    ndjson = to_ndjson(saved_objects())
    result = import_saved_objects(conn, ndjson, space="shop")
    assert result["successCount"] == 4
    got = _FakeKibana.received[-1]
    assert got["path"] == "/s/shop/api/saved_objects/_import?overwrite=true"
    assert got["headers"]["kbn-xsrf"] == "true"
    assert got["headers"]["content-type"].startswith("multipart/form-data")
    assert got["headers"]["authorization"].startswith("Basic ")
    assert got["file"] == ndjson and got["filename"].endswith(".ndjson")


def test_import_errors_are_clear_and_redacted(kibana: str) -> None:
    conn = KibanaConnection(kibana, api_key="id9:key-secret-123")
    _FakeKibana.answer = (200, {"success": False, "successCount": 3, "errors": [
        {"type": "dashboard", "id": DASHBOARD_ID, "error": {"type": "missing_references"}}]})
    with pytest.raises(StoreError, match="failed on 1: dashboard/ctir-es-catalogue: missing_references"):
        import_saved_objects(conn, to_ndjson(saved_objects()), compatibility_mode=True)
    assert _FakeKibana.received[-1]["path"].endswith("overwrite=true&compatibilityMode=true")
    _FakeKibana.answer = (500, {"message": "boom key-secret-123"})
    with pytest.raises(StoreError) as info:
        import_saved_objects(conn, "{}\n")
    assert "key-secret-123" not in str(info.value) and "500" in str(info.value)
    assert "key-secret-123" not in repr(conn)


def test_unreachable_kibana() -> None:
    with pytest.raises(StoreError, match="cannot reach Kibana"):
        import_saved_objects(KibanaConnection("http://127.0.0.1:9", timeout=2), "{}\n")
