"""The shipped Kibana saved objects (NDJSON), validated as data, and their import request.

No Kibana runs here, so the objects are checked against the rules Kibana applies on import,
read in Kibana's source (saved-objects migration and import server packages):

- ``coreMigrationVersion`` may not be newer than the importing Kibana (``assertValidCoreVersion``);
- ``typeMigrationVersion`` may not be newer than the newest migration Kibana knows for the type
  (``DocumentUpgradePipeline.assertCompatibility``, ``downgradeRequired``); every type here was
  converted to multi-namespace in 8.0.0, and ``index-pattern`` has no later migration even in
  9.x, so 8.0.0 is the one version every 8.x and 9.x Kibana accepts;
- an object without a version runs every migration from the start (``collectSavedObjects``);
  Kibana 8.0-8.7 read ``migrationVersion`` instead of ``typeMigrationVersion``;
- ``(type, id)`` pairs must be unique in a file (``nonUniqueImportObjects``), and references to
  ``index-pattern``/``search`` objects must resolve in the file or in Kibana
  (``validateReferences``: ``missing_references``);
- a dashboard panel's ``panelRefName`` is looked up among the references named
  ``<panelIndex>:<panelRefName>`` (``createInject``: "Could not find reference");
- saved searches and dashboards are validated against their attribute schemas
  (``search`` 8.8.0 schema, ``dashboardAttributesSchema`` v1, unknown keys forbidden).

The import request (``POST /api/saved_objects/_import?overwrite=true``, ``kbn-xsrf``,
multipart ``file`` part; kibana/8.15/saved-objects-api-import.html) is checked as data and
against a stub Kibana on 127.0.0.1. ``test_real_kibana_import`` runs only with ``KIBANA_URL``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from ctir_es.errors import ConfigError, StoreError
from ctir_es.kibana.client import (
    IMPORT_FILENAME,
    KibanaConnection,
    import_request,
    import_saved_objects,
)
from ctir_es.kibana.saved_objects import (
    BRANDS_LENS_ID,
    DASHBOARD_ID,
    DATA_VIEW_ID,
    DEFAULT_VECTOR_FIELDS,
    JSON_STRING_ATTRIBUTES,
    LENS_ID,
    MIGRATION_VERSION,
    MIN_KIBANA_VERSION,
    PRICE_LENS_ID,
    SEARCH_ID,
    SHOP_DASHBOARD_ID,
    SHOP_IDS,
    SHOP_SEARCH_ID,
    parse_ndjson,
    raw_ndjson,
    saved_objects,
    to_ndjson,
)
from ctir_es.store.elasticsearch.bodies import index as mapping
from ctir_es.values import ValueSpec

TYPES = ["index-pattern", "lens", "search", "dashboard", "lens", "lens", "search", "dashboard"]
ALL_IDS = [DATA_VIEW_ID, LENS_ID, SEARCH_ID, DASHBOARD_ID, *SHOP_IDS]
# each dashboard's panels: the objects they show
DASHBOARD_PANELS = {DASHBOARD_ID: {LENS_ID, SEARCH_ID},
                    SHOP_DASHBOARD_ID: {BRANDS_LENS_ID, PRICE_LENS_ID, SHOP_SEARCH_ID}}
# attribute keys Kibana's create schemas allow (unknown keys are refused on create)
SEARCH_ATTRIBUTES = {  # saved_search search.ts, schemas['8.8.0']
    "title", "description", "columns", "sort", "grid", "rowHeight", "rowsPerPage", "hideChart",
    "breakdownField", "kibanaSavedObjectMeta", "isTextBasedQuery", "usesAdHocDataView",
    "timeRestore", "timeRange", "refreshInterval", "viewMode", "hideAggregatedPreview", "hits",
    "version",
}
DASHBOARD_ATTRIBUTES = {  # dashboard schema/v1 dashboardAttributesSchema
    "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
    "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
}
URL_FORMAT_PARAMS = {"type", "urlTemplate", "labelTemplate", "width", "height"}  # converters/url.ts
LENS_RECORDS_FIELD = "Records"  # the count column's field before Lens's 8.1.0 migration
# Kibana versions to check the version rules against: the first 8.x, the first with
# typeMigrationVersion (8.8), the one docker/ pins, and 9.x.
KIBANA_VERSIONS = ["8.0.0", "8.7.1", "8.8.0", "8.19.10", "9.0.0", "9.2.0"]
# the newest migration each type has in Kibana 8.0.0 (the oldest importer): its
# convertToMultiNamespaceTypeVersion; later Kibanas only add versions, except index-pattern.
OLDEST_LATEST_TYPE_VERSION = {"index-pattern": "8.0.0", "lens": "8.0.0", "search": "8.0.0", "dashboard": "8.0.0"}


def version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts), f"not a semver x.y.z: {text!r}"
    return int(parts[0]), int(parts[1]), int(parts[2])


def refused_by(obj: dict[str, Any], kibana: str, latest_type_version: str) -> str | None:
    """Kibana's own version checks on an imported object, or None when it passes."""
    core = obj.get("coreMigrationVersion")
    if core and version(core) > version(kibana):
        return f"coreMigrationVersion {core} is newer than Kibana {kibana}"
    legacy = (obj.get("migrationVersion") or {}).get(obj["type"])
    type_version = obj.get("typeMigrationVersion") if version(kibana) >= (8, 8, 0) else legacy
    type_version = type_version or legacy
    if not type_version:
        return "no migration version: every migration would run from the start"
    if version(type_version) > version(latest_type_version):
        return f"{obj['type']} {type_version} is newer than the newest migration {latest_type_version}"
    return None


def schema() -> Any:
    return mapping.IndexSchema(
        {"title_vector": mapping.VectorField(384), "image_vector": mapping.VectorField(512)},
        # the typed values the Flipkart reader declares (mapping v4: values.<name>)
        {"brand": ValueSpec("keyword"), "price": ValueSpec("number", "INR"), "rating": ValueSpec("number"),
         "fk_advantage": ValueSpec("boolean")},
    )


def field_types(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Every field path of a mapping (multi-fields and object sub-fields too) -> its type."""
    out: dict[str, str] = {}
    for name, spec in properties.items():
        path = prefix + name
        out[path] = spec.get("type", "object")
        for sub, sub_spec in (spec.get("fields") or {}).items():
            out[f"{path}.{sub}"] = sub_spec["type"]
        if "properties" in spec:
            out.update(field_types(spec["properties"], path + "."))
    return out


@pytest.fixture(scope="module")
def fields() -> dict[str, str]:
    return field_types(mapping.mappings(schema())["properties"])


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return parse_ndjson(raw_ndjson())


def by_type(objects: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    """The one object of a type that is not a shop object (the catalogue's)."""
    (obj,) = [o for o in objects if o["type"] == type_ and o["id"] not in SHOP_IDS]
    return obj


def all_of(objects: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["type"] == type_]


def by_id(objects: list[dict[str, Any]], id_: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["id"] == id_]
    return obj


def filter_refs(obj: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each filter of a saved search with the reference its ``meta.indexRefName`` names."""
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    refs = {r["name"]: r for r in obj["references"]}
    return [(f, refs[f["meta"]["indexRefName"]]) for f in source["filter"]]


# ------------------------------------------------------------------------- the file as data


def test_every_line_is_a_saved_object_in_8x_export_shape() -> None:
    text = raw_ndjson()
    assert text.endswith("\n") and all(line.strip() for line in text.splitlines())
    for line in text.splitlines():
        assert isinstance(json.loads(line), dict)
    objects = parse_ndjson(text)
    assert [o["type"] for o in objects] == TYPES  # Lens, not the legacy "visualization"
    for obj in objects:
        assert set(obj) == {"type", "id", "attributes", "references", "typeMigrationVersion",
                            "coreMigrationVersion", "migrationVersion", "managed"}, obj["id"]
        assert obj["managed"] is False
        assert obj["attributes"]["title"]
        assert isinstance(obj["references"], list)
        for name in JSON_STRING_ATTRIBUTES:
            if name in obj["attributes"]:
                assert isinstance(obj["attributes"][name], str)
                json.loads(obj["attributes"][name])
        meta = obj["attributes"].get("kibanaSavedObjectMeta")
        if meta:
            source = json.loads(meta["searchSourceJSON"])
            assert source["query"] == {"query": "", "language": "kuery"}
            assert source["filter"] == [] or obj["id"] == SHOP_SEARCH_ID  # the one with a value filter
            assert "index" not in source  # by reference only
            assert all("index" not in f["meta"] for f in source["filter"])


def test_ids_are_unique(objects: list[dict[str, Any]]) -> None:
    keys = [(o["type"], o["id"]) for o in objects]
    ids = [o["id"] for o in objects]
    assert len(set(keys)) == len(keys) and len(set(ids)) == len(ids)
    assert ids == ALL_IDS


def test_every_reference_resolves(objects: list[dict[str, Any]]) -> None:
    in_file = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        names = [r["name"] for r in obj["references"]]
        assert len(set(names)) == len(names), obj["id"]
        for ref in obj["references"]:
            assert set(ref) == {"type", "id", "name"}
            assert (ref["type"], ref["id"]) in in_file, ref
            if ref["type"] == "index-pattern":
                assert ref["id"] == DATA_VIEW_ID
        meta = obj["attributes"].get("kibanaSavedObjectMeta")
        if meta and obj["type"] == "search":
            source = json.loads(meta["searchSourceJSON"])
            ref = next(r for r in obj["references"] if r["name"] == source["indexRefName"])
            assert (ref["type"], ref["id"]) == ("index-pattern", DATA_VIEW_ID)


@pytest.mark.parametrize("dashboard_id", sorted(DASHBOARD_PANELS))
def test_every_dashboard_panel_has_its_reference(objects: list[dict[str, Any]], dashboard_id: str) -> None:
    dashboard = by_id(objects, dashboard_id)
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    assert len(panels) == len(DASHBOARD_PANELS[dashboard_id])
    indexes = [p["panelIndex"] for p in panels]
    assert len(set(indexes)) == len(indexes)
    used = set()
    for panel in panels:
        assert panel["panelRefName"] == f"panel_{panel['panelIndex']}"
        ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]  # as Kibana 8.x exports it
        assert panel["type"] == ref["type"]
        assert version(panel["version"]) <= version(MIGRATION_VERSION)
        grid = panel["gridData"]
        assert grid["i"] == panel["panelIndex"] and 0 <= grid["x"] and grid["x"] + grid["w"] <= 48
        assert "id" not in panel and "savedObjectId" not in panel.get("embeddableConfig", {})
        used.add(ref["name"])
    assert used == set(refs)
    assert {r["id"] for r in dashboard["references"]} == DASHBOARD_PANELS[dashboard_id]
    assert set(dashboard["attributes"]) <= DASHBOARD_ATTRIBUTES
    assert dashboard["attributes"]["timeRestore"] is False


def test_migration_versions_are_importable_on_8x_and_9x(objects: list[dict[str, Any]]) -> None:
    assert MIGRATION_VERSION == MIN_KIBANA_VERSION == "8.0.0"
    for obj in objects:
        assert obj["typeMigrationVersion"] == obj["coreMigrationVersion"] == MIGRATION_VERSION
        assert obj["migrationVersion"] == {obj["type"]: obj["typeMigrationVersion"]}
        for kibana in KIBANA_VERSIONS:
            latest = OLDEST_LATEST_TYPE_VERSION[obj["type"]]
            assert refused_by(obj, kibana, latest) is None, (obj["id"], kibana)


def test_the_version_rule_refuses_what_kibana_refuses(objects: list[dict[str, Any]]) -> None:
    view = dict(by_type(objects, "index-pattern"))
    # an 8.19 data view: index-pattern's newest migration is 8.0.0, even in 9.x
    assert refused_by({**view, "typeMigrationVersion": "8.19.0", "migrationVersion": None},
                      "9.0.0", "8.0.0")
    assert refused_by({**view, "coreMigrationVersion": "8.8.0"}, "8.7.1", "8.0.0")
    assert refused_by({**view, "typeMigrationVersion": None, "migrationVersion": None}, "9.0.0", "8.0.0")
    assert refused_by({**view, "typeMigrationVersion": "8.0.0", "migrationVersion": None}, "8.7.1",
                      "8.0.0")  # 8.0-8.7 do not read typeMigrationVersion


@pytest.mark.parametrize("lens_id", [LENS_ID, BRANDS_LENS_ID, PRICE_LENS_ID])
def test_lens_references_the_data_view_by_name(objects: list[dict[str, Any]], fields: dict[str, str],
                                               lens_id: str) -> None:
    lens = by_id(objects, lens_id)
    state = lens["attributes"]["state"]
    assert lens["attributes"]["visualizationType"] == "lnsXY"
    assert "indexPatternId" not in json.dumps(state) and "currentIndexPatternId" not in json.dumps(state)
    layers = state["datasourceStates"]["indexpattern"]["layers"]  # the 8.0 shape; 8.6 renames it
    refs = {r["name"]: r for r in lens["references"]}
    assert refs["indexpattern-datasource-current-indexpattern"]["id"] == DATA_VIEW_ID
    vis_layers = {layer["layerId"]: layer for layer in state["visualization"]["layers"]}
    assert set(vis_layers) == set(layers)
    for layer_id, layer in layers.items():
        ref = refs[f"indexpattern-datasource-layer-{layer_id}"]
        assert (ref["type"], ref["id"]) == ("index-pattern", DATA_VIEW_ID)
        assert layer["columnOrder"] == list(layer["columns"])
        vis = vis_layers[layer_id]
        assert vis["layerType"] == "data"
        assert {vis["xAccessor"], *vis["accessors"]} == set(layer["columns"])
        for column in layer["columns"].values():
            if column["operationType"] == "count":
                assert column["sourceField"] == LENS_RECORDS_FIELD
            elif column["operationType"] == "terms":
                assert fields[column["sourceField"]] == "keyword"  # aggregatable
                assert column["sourceField"] in (mapping.CATEGORY_TOP_FIELD, "values.brand")
                assert column["dataType"] == "string"
            else:  # a histogram of a number value
                assert column["operationType"] == "range" and column["params"]["type"] == "histogram"
                assert fields[column["sourceField"]] == "double" and column["sourceField"] == "values.price"
                assert column["dataType"] == "number" and column["scale"] == "interval"
            order = (column.get("params") or {}).get("orderBy")
            if order and order["type"] == "column":
                assert order["columnId"] in layer["columns"]
    # read by Lens migrations 8.1.0 (filters) and 8.3.0 (legend) on the way up
    assert state["filters"] == [] and "legend" in state["visualization"]


def test_data_view_fields_exist_in_the_mapping(objects: list[dict[str, Any]], fields: dict[str, str]) -> None:
    view = by_type(objects, "index-pattern")
    attributes = view["attributes"]
    assert attributes["title"] == "products"  # the alias, not a version
    assert "timeFieldName" not in attributes
    formats = json.loads(attributes["fieldFormatMap"])
    assert set(formats) <= set(fields)
    assert formats["image"]["id"] == "url" and formats["image"]["params"]["type"] == "img"
    assert set(formats["image"]["params"]) <= URL_FORMAT_PARAMS
    assert set(json.loads(attributes["fieldAttrs"])) <= set(fields)
    hidden = [f["value"] for f in json.loads(attributes["sourceFilters"])]
    assert set(hidden) <= set(fields)
    vectors = {name for name, kind in fields.items() if kind == "dense_vector"}
    assert vectors <= set(hidden) and mapping.RECORD_FIELD in hidden
    assert json.loads(attributes["fields"]) == [] and json.loads(attributes["runtimeFieldMap"]) == {}


@pytest.mark.parametrize("search_id", [SEARCH_ID, SHOP_SEARCH_ID])
def test_saved_search_fields_exist_in_the_mapping(objects: list[dict[str, Any]], fields: dict[str, str],
                                                  search_id: str) -> None:
    search = by_id(objects, search_id)
    attributes = search["attributes"]
    assert set(attributes) <= SEARCH_ATTRIBUTES
    assert set(attributes["columns"]) <= set(fields) and attributes["columns"][0] == mapping.IMAGE_FIELD
    for field, direction in attributes["sort"]:
        assert fields[field] in {"date", "keyword", "double"} and direction in {"asc", "desc"}
    assert attributes["sort"][0][0] == (mapping.INGESTED_AT_FIELD if search_id == SEARCH_ID else "values.price")


def test_shop_search_filters_on_a_typed_value(objects: list[dict[str, Any]], fields: dict[str, str]) -> None:
    """The shop's saved search keeps the products with a price: an ``exists`` filter as Kibana
    exports one (its data view by the reference ``...filter[0].meta.index``)."""
    search = by_id(objects, SHOP_SEARCH_ID)
    ((flt, ref),) = filter_refs(search)
    assert ref["name"] == "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"
    assert (ref["type"], ref["id"]) == ("index-pattern", DATA_VIEW_ID)
    meta = flt["meta"]
    assert meta["type"] == "exists" and meta["negate"] is False and meta["disabled"] is False
    assert flt["query"] == {"exists": {"field": meta["key"]}} and fields[meta["key"]] == "double"
    assert {"values.brand", "values.price"} <= set(search["attributes"]["columns"])
    assert by_type(objects, "search")["attributes"]["columns"] == ["image", "title", "categories", "market"]


def test_the_data_view_labels_and_formats_the_values(objects: list[dict[str, Any]], fields: dict[str, str]) -> None:
    attributes = by_type(objects, "index-pattern")["attributes"]
    labels = json.loads(attributes["fieldAttrs"])
    assert labels["values.brand"] == {"customLabel": "Brand"} and labels["values.price"] == {"customLabel": "Price"}
    price = json.loads(attributes["fieldFormatMap"])["values.price"]
    assert price == {"id": "number", "params": {"pattern": "0,0.[00]"}} and fields["values.price"] == "double"
    # value fields in the mapping are typed by kind: the charts can aggregate them
    assert fields["values.brand"] == "keyword" and fields["values.fk_advantage"] == "boolean"


def test_shop_objects_follow_the_index_value_names() -> None:
    objects = saved_objects(keyword_value="manufacturer", number_value="retail_price")
    text = to_ndjson(objects)
    assert "values.brand" not in text and "values.price\"" not in text and 'values.price"' not in text
    assert by_id(objects, BRANDS_LENS_ID)["attributes"]["state"]["datasourceStates"]["indexpattern"]["layers"][
        "ctir-brands"]["columns"]["ctir-brand"]["sourceField"] == "values.manufacturer"
    ((flt, _),) = filter_refs(by_id(objects, SHOP_SEARCH_ID))
    assert flt["query"] == {"exists": {"field": "values.retail_price"}}
    labels = json.loads(by_id(objects, DATA_VIEW_ID)["attributes"]["fieldAttrs"])
    assert "values.manufacturer" in labels and "values.retail_price" in labels
    # the default names leave the shipped file as it is; a name that is not a value name is refused
    assert to_ndjson(saved_objects(keyword_value="brand", number_value="price")) == to_ndjson(saved_objects())
    for bad in ("Brand", "a.b", 'x"y', "", "a__b", "price"):
        with pytest.raises(ConfigError):
            saved_objects(keyword_value=bad)


# ------------------------------------------------------------------- rewriting for the alias


def test_saved_objects_follow_the_alias_url_template_and_vectors() -> None:
    objects = saved_objects("shop", "https://cdn.example.com/{{rawValue}}", ["clip", "clip", "minilm"])
    view = next(o for o in objects if o["id"] == DATA_VIEW_ID)
    assert view["attributes"]["title"] == "shop"
    formats = json.loads(view["attributes"]["fieldFormatMap"])
    assert formats["image"]["params"]["urlTemplate"] == "https://cdn.example.com/{{rawValue}}"
    hidden = [f["value"] for f in json.loads(view["attributes"]["sourceFilters"])]
    assert hidden == ["clip", "minilm", mapping.RECORD_FIELD]
    assert parse_ndjson(to_ndjson(objects)) == objects
    default = next(o for o in saved_objects() if o["id"] == DATA_VIEW_ID)
    assert [f["value"] for f in json.loads(default["attributes"]["sourceFilters"])] == [
        *DEFAULT_VECTOR_FIELDS, mapping.RECORD_FIELD]
    assert to_ndjson(saved_objects()) == to_ndjson(parse_ndjson(raw_ndjson()))
    with pytest.raises(ConfigError, match="line 1"):
        parse_ndjson("{not json\n")
    with pytest.raises(ConfigError, match="needs type, id and attributes"):
        parse_ndjson('{"type": "lens"}\n')
    with pytest.raises(ConfigError, match="index or alias"):
        saved_objects(" ")


def test_cli_dry_run_prints_the_objects() -> None:
    from ctir_es.cli.main import cli

    result = CliRunner().invoke(cli, ["kibana", "setup", "--dry-run", "--vector-field", "clip"],
                                env={"CTIR_ES_INDEX": "shop"})
    assert result.exit_code == 0, result.output
    printed = parse_ndjson(result.output)
    assert [o["type"] for o in printed] == TYPES
    view = printed[0]["attributes"]
    assert view["title"] == "shop"
    assert [f["value"] for f in json.loads(view["sourceFilters"])] == ["clip", mapping.RECORD_FIELD]


# ----------------------------------------------------------------- the import request as data


def _multipart(request: requests.PreparedRequest) -> dict[str, Any]:
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + str(request.headers["Content-Type"]).encode() + b"\r\n\r\n" + body
    )
    return {str(p.get_param("name", header="content-disposition")): p for p in message.iter_parts()}


def _payload(part: Any) -> str:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data.decode()


def test_import_request_as_data() -> None:
    conn = KibanaConnection.from_env({"CTIR_KIBANA_URL": "https://kibana.example:5601/",
                                      "CTIR_KIBANA_API_KEY": "id1:key-1"})
    ndjson = to_ndjson(saved_objects())
    request = import_request(conn, ndjson)
    url = urlsplit(request.url)
    assert request.method == "POST"
    assert (url.scheme, url.netloc, url.path, url.query) == (
        "https", "kibana.example:5601", "/api/saved_objects/_import", "overwrite=true")
    assert request.headers["kbn-xsrf"] == "true"
    assert str(request.headers["Authorization"]).startswith("ApiKey ")
    assert str(request.headers["Content-Type"]).startswith("multipart/form-data; boundary=")
    parts = _multipart(request)
    assert set(parts) == {"file"}
    part = parts["file"]
    assert part.get_filename() == IMPORT_FILENAME and IMPORT_FILENAME.endswith(".ndjson")
    assert _payload(part) == ndjson
    spaced = import_request(conn, ndjson, space="shop", compatibility_mode=True)
    assert urlsplit(spaced.url).path == "/s/shop/api/saved_objects/_import"
    assert urlsplit(spaced.url).query == "overwrite=true&compatibilityMode=true"
    assert urlsplit(import_request(conn, ndjson, space="default").url).path == "/api/saved_objects/_import"


# ---------------------------------------------------------------------- against a stub Kibana


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
             "file": _payload(part) if part else None,
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
    assert got["file"] == ndjson and got["filename"] == IMPORT_FILENAME


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
    _FakeKibana.answer = (401, {"message": "unauthorized"})
    with pytest.raises(StoreError, match="rejected the credentials"):
        import_saved_objects(conn, "{}\n")


def test_unreachable_kibana() -> None:
    with pytest.raises(StoreError, match="cannot reach Kibana"):
        import_saved_objects(KibanaConnection("http://127.0.0.1:9", timeout=2), "{}\n")


# ------------------------------------------------------------------------- a real Kibana


@pytest.mark.skipif(
    not os.environ.get("KIBANA_URL"),
    reason="needs a running Kibana 8.x or 9.x: set KIBANA_URL (and CTIR_KIBANA_* credentials); "
    "no Kibana distribution is reachable from this machine",
)
def test_real_kibana_import() -> None:
    conn = KibanaConnection.from_env(url=os.environ["KIBANA_URL"])
    result = import_saved_objects(conn, to_ndjson(saved_objects()))
    assert result["success"] is True and result["successCount"] == len(TYPES)
    for type_, id_ in zip(TYPES, ALL_IDS, strict=True):
        response = requests.get(f"{conn.url.rstrip('/')}/api/saved_objects/{type_}/{id_}",
                                headers=conn.headers(), timeout=conn.timeout,
                                verify=conn.ca_certs or conn.verify_certs)
        assert response.status_code == 200, (type_, response.text[:300])
        assert not response.json().get("error")
    # idempotent: overwrite=true imports the same objects again
    assert import_saved_objects(conn, to_ndjson(saved_objects()))["success"] is True
