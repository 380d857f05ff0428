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

Shop search (docs/shop-search.md) over the typed values, ``values.<name>`` of mapping v4 (a
``keyword`` with the ``lowercase`` normalizer, a ``double``, a ``boolean``): the data view labels
``values.brand`` and ``values.price`` and formats the price as a number (``0,0.[00]``);

- ``lens`` ``ctir-es-shop-brands``: products per brand (``terms`` on ``values.brand``, top 20);
- ``lens`` ``ctir-es-shop-price-histogram``: products per price interval (Lens's ``range``
  operation in ``histogram`` mode on ``values.price``, ``maxBars: auto``);
- ``search`` ``ctir-es-shop-priced``: products with a price (an ``exists`` filter on
  ``values.price``, whose data view is the reference
  ``kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index``, as Kibana exports a filter),
  with brand and price columns, cheapest first;
- ``dashboard`` ``ctir-es-shop``: the two charts above the saved search.

``brand`` and ``price`` are the names the Flipkart and XMarket readers give those values; for an
index that names them otherwise, ``saved_objects(keyword_value=..., number_value=...)`` points
the shop objects at its own keyword and number values.

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
import re
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

from ..errors import ConfigError

SAVED_OBJECTS_FILE = "saved_objects.ndjson"
DATA_VIEW_ID = "ctir-es-products"
LENS_ID = "ctir-es-products-per-top-category"
SEARCH_ID = "ctir-es-products-search"
DASHBOARD_ID = "ctir-es-catalogue"
# shop search over the typed values (mapping v4)
BRANDS_LENS_ID = "ctir-es-shop-brands"
PRICE_LENS_ID = "ctir-es-shop-price-histogram"
SHOP_SEARCH_ID = "ctir-es-shop-priced"
SHOP_DASHBOARD_ID = "ctir-es-shop"
SHOP_IDS: tuple[str, ...] = (BRANDS_LENS_ID, PRICE_LENS_ID, SHOP_SEARCH_ID, SHOP_DASHBOARD_ID)
# the typed values the shipped objects name (the Flipkart and XMarket readers' names)
KEYWORD_VALUE = "brand"
NUMBER_VALUE = "price"
VALUES_PREFIX = "values."
# a value name as ``ctir_es.values`` normalises it: letters, digits, marks and single ``_``
_VALUE_NAME = re.compile(r"^[^\W_](?:_?[^\W_])*$")
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
    keyword_value: str = KEYWORD_VALUE,
    number_value: str = NUMBER_VALUE,
) -> list[dict[str, Any]]:
    """The saved objects with the data view pointed at ``index`` (the alias) and, when given,
    the image URL template (e.g. ``https://cdn.example.com/{{rawValue}}``) and the vector
    fields to hide (default ``title_vector``, ``image_vector``). The shop objects chart the
    keyword value ``keyword_value`` (default ``brand``) and the number value ``number_value``
    (default ``price``): the index's own names of them (``ctir-es stats`` lists its values)."""
    if not index or not index.strip():
        raise ConfigError("the Kibana data view needs an index or alias name")
    for name in (keyword_value, number_value):
        if not _VALUE_NAME.match(name) or name != name.casefold():
            raise ConfigError(f"{name!r} is not a value name (lower case letters and digits joined by single '_')")
    if keyword_value == number_value:
        raise ConfigError("the keyword and the number value must differ")
    text = raw_ndjson()
    renames = {KEYWORD_VALUE: keyword_value, NUMBER_VALUE: number_value}
    if renames != {KEYWORD_VALUE: KEYWORD_VALUE, NUMBER_VALUE: NUMBER_VALUE}:
        # every mention of the two fields, in attributes and in JSON held as strings alike
        pattern = re.compile(re.escape(VALUES_PREFIX) + r"(" + "|".join(map(re.escape, renames)) + r")\b")
        text = pattern.sub(lambda m: VALUES_PREFIX + renames[m.group(1)], text)
    objects = parse_ndjson(text)
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
