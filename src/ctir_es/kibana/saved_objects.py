"""Kibana saved objects shipped with ctir-es (``saved_objects.ndjson``), as data.

The file is in the shape Kibana 8.x exports (one object a line, each with ``references``,
``typeMigrationVersion``, ``coreMigrationVersion`` and ``managed: false``):

- ``index-pattern`` ``ctir-es-products``: a data view whose title is the store's alias
  (``products`` by default, rewritten by ``saved_objects(index=...)``). The ``image`` field is
  formatted as an image (field format ``url`` with ``type: img``; ``urlTemplate`` may prefix a
  CDN when the catalogue stores relative paths). The vectors and the raw ``record`` are hidden
  (``sourceFilters``). No time field: a catalogue is not a time series, so dashboards show every
  product whatever the time picker says.
- ``lens`` ``ctir-es-products-per-top-category``: count of products per ``category_top`` (a
  keyword the client derives per document), as horizontal bars. Lens replaces the legacy
  aggregation-based ``visualization`` object; its layer names the data view only through the
  reference ``indexpattern-datasource-layer-<layer id>``.
- ``search`` ``ctir-es-products-search``: image, title, categories and market, newest first.
- ``dashboard`` ``ctir-es-catalogue``: the two panels side by side; each panel's
  ``panelRefName`` ``panel_<panelIndex>`` has the reference ``<panelIndex>:panel_<panelIndex>``.

Which Kibana imports them (rules read in Kibana's source, saved-objects migration server):

- ``coreMigrationVersion`` must not be newer than the Kibana that imports
  (``assertValidCoreVersion``: "has a coreMigrationVersion which belongs to a more recent
  version of Kibana").
- ``typeMigrationVersion`` must not be newer than the newest migration Kibana knows for that
  type (``DocumentUpgradePipeline.assertCompatibility`` / ``downgradeRequired``: "belongs to a
  more recent version of Kibana"). Every type here was converted to multi-namespace in 8.0.0
  (``convertToMultiNamespaceTypeVersion: '8.0.0'``), so 8.0.0 is known to every 8.x and 9.x
  Kibana. The ``index-pattern`` type has no migration after 8.0.0 even in 9.x, so 8.0.0 is also
  the *highest* version it accepts: Kibana 8.19 exports data views with ``8.0.0`` too.
- An object with no version runs every migration from the start (``collectSavedObjects`` sets
  ``typeMigrationVersion: ''``), which breaks a modern Lens state. Kibana 8.0-8.7 read the
  legacy ``migrationVersion: {<type>: <version>}`` map instead of ``typeMigrationVersion``, so
  each object carries both, with the same version; 8.8+ turns the map into
  ``typeMigrationVersion`` (core transform 8.8.0), so they agree everywhere.

Hence :data:`MIGRATION_VERSION` ``8.0.0`` for every object, whose attributes are in their 8.0
shape (the Lens state under ``datasourceStates.indexpattern``, the count column on
``Records``): Kibana 8.0 and newer migrate them up (8.6 renames the Lens datasource to
``formBased``; 9.x still registers those migrations). Importable: Kibana 8.0.0 - 9.x.
``compatibilityMode`` is not needed (it only adds legacy URL aliases for objects whose ids
change). Import API: https://www.elastic.co/guide/en/kibana/8.15/saved-objects-api-import.html;
url field format params: Kibana ``field_formats/common/converters/url.ts``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

from ..errors import ConfigError

SAVED_OBJECTS_FILE = "saved_objects.ndjson"
DATA_VIEW_ID = "ctir-es-products"
LENS_ID = "ctir-es-products-per-top-category"
SEARCH_ID = "ctir-es-products-search"
DASHBOARD_ID = "ctir-es-catalogue"
# typeMigrationVersion / coreMigrationVersion / migrationVersion of every shipped object.
MIGRATION_VERSION = "8.0.0"
# The Kibana versions that import MIGRATION_VERSION objects (see the module docstring).
MIN_KIBANA_VERSION = "8.0.0"
KIBANA_MAJORS: tuple[int, ...] = (8, 9)
# The data view fields hidden from Discover besides the vector fields.
HIDDEN_FIELDS: tuple[str, ...] = ("record",)
DEFAULT_VECTOR_FIELDS: tuple[str, ...] = ("title_vector", "image_vector")
# attributes holding JSON documents as strings (checked by the tests, rewritten below)
JSON_STRING_ATTRIBUTES: tuple[str, ...] = (
    "fieldFormatMap",
    "fieldAttrs",
    "sourceFilters",
    "runtimeFieldMap",
    "fields",
    "typeMeta",
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


def saved_objects(
    index: str = "products",
    image_url_template: str | None = None,
    vector_fields: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The saved objects with the data view pointed at ``index`` (the alias) and, when given,
    the image URL template (e.g. ``https://cdn.example.com/{{rawValue}}``) and the vector
    fields to hide (default ``title_vector``, ``image_vector``)."""
    if not index or not index.strip():
        raise ConfigError("the Kibana data view needs an index or alias name")
    objects = parse_ndjson(raw_ndjson())
    for obj in objects:
        if obj["type"] == "index-pattern" and obj["id"] == DATA_VIEW_ID:
            attributes = obj["attributes"]
            attributes["title"] = index
            if image_url_template is not None:
                formats = json.loads(attributes["fieldFormatMap"])
                formats["image"]["params"]["urlTemplate"] = image_url_template
                attributes["fieldFormatMap"] = json.dumps(formats, separators=(",", ":"))
            if vector_fields is not None:
                hidden = [*dict.fromkeys(vector_fields), *HIDDEN_FIELDS]
                attributes["sourceFilters"] = json.dumps(
                    [{"value": name} for name in hidden], separators=(",", ":")
                )
    return objects


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)
