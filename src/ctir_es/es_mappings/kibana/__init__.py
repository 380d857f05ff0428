"""Kibana saved objects shipped with ctir-es (``saved_objects.ndjson``), as data.

- ``index-pattern`` ``ctir-es-products``: a data view whose title is the store's alias
  (``products`` by default, rewritten by ``saved_objects(index=...)``); the ``image`` field is
  formatted as an image (field format ``url`` with ``type: img``; ``urlTemplate`` may prefix a
  CDN when the catalogue stores relative paths); the vectors and the raw ``record`` are hidden
  (``sourceFilters``). No time field: a catalogue is not a time series, so dashboards show every
  product whatever the time picker says.
- ``visualization`` ``ctir-es-products-per-top-category``: count of products per
  ``category_top`` (a keyword the ingest pipeline derives), as horizontal bars.
- ``search`` ``ctir-es-products-search``: image, title, categories and market, newest first.
- ``dashboard`` ``ctir-es-catalogue``: the two panels side by side.

The objects use the 7.17 export shape (``migrationVersion`` per type), which Kibana 8.x
imports and migrates; Kibana 9.x needs ``compatibilityMode=true`` on import (``ctir-es kibana
setup --compatibility-mode``). Field formatter params: Kibana
``field_formats/common/converters/url.ts`` (``type``, ``urlTemplate``, ``labelTemplate``,
``width``, ``height``). Import API: kibana/8.15/saved-objects-api-import.html.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from ...errors import ConfigError

SAVED_OBJECTS_FILE = "saved_objects.ndjson"
DATA_VIEW_ID = "ctir-es-products"
DASHBOARD_ID = "ctir-es-catalogue"
# attributes holding JSON documents as strings (checked by the tests, rewritten below)
JSON_STRING_ATTRIBUTES: tuple[str, ...] = (
    "fieldFormatMap",
    "sourceFilters",
    "visState",
    "uiStateJSON",
    "panelsJSON",
    "optionsJSON",
)


def raw_ndjson() -> str:
    return files(__package__).joinpath(SAVED_OBJECTS_FILE).read_text(encoding="utf-8")


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    """One saved object per non-empty line; a malformed line raises ``ConfigError``."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{SAVED_OBJECTS_FILE} line {n}: not JSON ({exc})") from None
        if not isinstance(obj, dict) or not {"type", "id", "attributes"} <= set(obj):
            raise ConfigError(f"{SAVED_OBJECTS_FILE} line {n}: needs type, id and attributes")
        out.append(obj)
    return out


def saved_objects(index: str = "products", image_url_template: str | None = None) -> list[dict[str, Any]]:
    """The saved objects with the data view pointed at ``index`` (the alias) and, when given,
    the image URL template (e.g. ``https://cdn.example.com/{{rawValue}}``)."""
    objects = parse_ndjson(raw_ndjson())
    for obj in objects:
        if obj["type"] == "index-pattern" and obj["id"] == DATA_VIEW_ID:
            obj["attributes"]["title"] = index
            if image_url_template is not None:
                formats = json.loads(obj["attributes"]["fieldFormatMap"])
                formats["image"]["params"]["urlTemplate"] = image_url_template
                obj["attributes"]["fieldFormatMap"] = json.dumps(formats)
    return objects


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)
