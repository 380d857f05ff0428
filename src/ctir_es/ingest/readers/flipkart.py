"""Flipkart products CSV (the ``flipkart-1050`` sample and the larger crawl it comes from).

Column mapping:

- ``uniq_id`` -> ``id``; ``product_name`` -> ``title``; ``description``;
- ``product_category_tree``: a JSON list holding one string with levels separated by
  ``" >> "``. Levels ending in ``...`` are the product's own name cut off by the crawl,
  not categories: they are dropped and counted in
  ``report.notes["dropped truncated category level"]``;
- ``product_specifications``: a Ruby-hash string
  ``{"product_specification"=>[{"key"=>"Brand", "value"=>"Elegance"}, ...]}``, parsed
  WITHOUT eval (``=>`` / ``nil`` rewritten outside strings, then ``json.loads``; a regex
  pair scan as fallback). Values without a key (warranty texts, package contents) are
  joined with ``" ; "`` under one attribute ``"Details"``; a repeated key keeps every
  distinct value, joined with ``", "``;
- ``brand`` -> attribute ``"Brand"`` unless the specifications already name one;
- ``image``: a file name in ``DIR/images/`` -> its absolute path, whether or not the file
  exists (the image loader reports missing ones). Names with path parts are refused;
- market ``"in"``;
- typed ``values`` (``VALUE_SPECS``; docs/shop-search.md has the table):
  ``discounted_price`` -> ``price`` and ``retail_price`` (numbers in INR);
  ``product_rating`` -> ``rating`` and ``overall_rating`` (numbers; ``"No rating available"``
  is absent); ``brand`` (keyword: the brand column, else the specifications' Brand - the
  column keeps ``K&P`` where the specifications write ``KandP``); ``is_FK_Advantage_product``
  -> ``fk_advantage`` (boolean); ``crawl_timestamp`` -> ``added`` (Unix seconds, for
  "newest"); and the specification keys in ``SPEC_VALUES`` (Color -> ``colour``, Size,
  Material, Type, Ideal For, ... and the Yes/No ones as booleans). A cell that does not fit
  (a price ``"abc"``) is dropped from the product and counted in ``report.notes``.

Rows are numbered from 1 for the first product after the header: ``products.csv row 42``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import InvalidRecord, SourceError
from ...products import Product
from ...values import Value, ValueSpec
from ..report import IngestReport
from ._parse import build

CSV_NAME = "products.csv"
MARKET = "in"
KEYLESS_ATTRIBUTE = "Details"
DROPPED_LEVEL_NOTE = "dropped truncated category level"
UNSAFE_IMAGE_NOTE = "unsafe image name"
REQUIRED_COLUMNS = ("uniq_id", "product_name")
# Real descriptions can pass the csv module's 128 KiB default; a bigger field is rejected
# (``bad_csv``) and reading resumes at the next physical line.
MAX_FIELD_CHARS = 10 * 1024 * 1024

NO_RATING = "no rating available"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S %z"  # "2016-04-30 03:22:56 +0000"
# specification key (case-folded) -> value name; these are facts a shop filters on, the
# rest of the 607 keys of flipkart-1050 (Model ID, Sales Package, Warranty Summary...) stay text only.
SPEC_VALUES: dict[str, str] = {
    "color": "colour", "colour": "colour", "size": "size", "material": "material",
    "type": "type", "ideal for": "ideal_for", "pattern": "pattern", "occasion": "occasion",
    "fabric": "fabric", "water resistant": "water_resistant", "microwave safe": "microwave_safe",
    "machine washable": "machine_washable",
}
_KEYWORD = ValueSpec("keyword")
_BOOLEAN = ValueSpec("boolean")
VALUE_SPECS: dict[str, ValueSpec] = {
    "price": ValueSpec("number", "INR"),
    "retail_price": ValueSpec("number", "INR"),
    "rating": ValueSpec("number"),
    "overall_rating": ValueSpec("number"),
    "brand": _KEYWORD,
    "fk_advantage": _BOOLEAN,
    "added": ValueSpec("number", "unix_time"),
    **{name: _KEYWORD for name in ("colour", "size", "material", "type", "ideal_for", "pattern",
                                   "occasion", "fabric")},
    **{name: _BOOLEAN for name in ("water_resistant", "microwave_safe", "machine_washable")},
}

_RUBY_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|=>|\bnil\b', re.DOTALL)
_PAIR = re.compile(
    r'\{\s*(?:"key"\s*=>\s*"(?P<key>(?:[^"\\]|\\.)*)"\s*,\s*)?'
    r'"value"\s*=>\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*\}',
    re.DOTALL,
)


def read_flipkart(path: str | Path, report: IngestReport) -> Iterator[Product]:
    """Yield each valid product of a Flipkart CSV (``DIR`` holding ``products.csv`` + ``images/``,
    or the CSV itself); a bad row is rejected with its row number and reading goes on."""
    csv_path = Path(path)
    if csv_path.is_dir():
        csv_path = csv_path / CSV_NAME
    if not csv_path.is_file():
        raise SourceError(f"Flipkart CSV not found: {csv_path}")
    images_dir = csv_path.resolve().parent / "images"
    if csv.field_size_limit() < MAX_FIELD_CHARS:  # process-wide, so only ever raised
        csv.field_size_limit(MAX_FIELD_CHARS)
    with open(csv_path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            columns = reader.fieldnames or []
        except csv.Error as exc:
            raise SourceError(f"{csv_path} is not a readable CSV: {exc}") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise SourceError(f"{csv_path} lacks the Flipkart column(s) {', '.join(missing)}")
        row_no = 0
        while True:
            row_no += 1
            location = f"{csv_path.name} row {row_no}"
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over the csv module's size limit
                report.read += 1
                report.reject(location, "bad_csv", str(exc))
                continue
            report.read += 1
            product = build(location, report, _record, row, images_dir, report, specs=VALUE_SPECS)
            if product is not None:
                yield product


def _record(row: dict[str | None, Any], images_dir: Path, report: IngestReport) -> dict[str, Any]:
    for value in row.values():
        texts = value if isinstance(value, list) else [value]  # extra fields land in a list
        for text in texts:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InvalidRecord("invalid_utf8", str(exc)[:200]) from exc
    attributes = parse_specifications(row.get("product_specifications") or "")
    brand = (row.get("brand") or "").strip()
    if brand and "Brand" not in attributes:
        attributes["Brand"] = brand
    return {
        "values": _values(row, attributes, brand),
        "id": row.get("uniq_id"),
        "title": row.get("product_name"),
        "categories": [_category_path(row.get("product_category_tree") or "", report)],
        "attributes": attributes,
        "description": row.get("description") or "",
        "images": _images(row.get("image") or "", images_dir, report),
        "market": MARKET,
    }


def _values(row: dict[str | None, Any], attributes: dict[str, str], brand: str) -> dict[str, Value | None]:
    """The row's typed facts as text; ``build`` types them by ``VALUE_SPECS`` (a blank is absent)."""
    values: dict[str, Value | None] = {
        "price": row.get("discounted_price"),
        "retail_price": row.get("retail_price"),
        "rating": _rating(row.get("product_rating")),
        "overall_rating": _rating(row.get("overall_rating")),
        "brand": brand or attributes.get("Brand"),
        "fk_advantage": row.get("is_FK_Advantage_product"),
        "added": _timestamp(row.get("crawl_timestamp")),
    }
    for key, text in attributes.items():
        name = SPEC_VALUES.get(key.casefold())
        if name and name not in values:  # "Color" and "Colour" both: the first wins
            values[name] = text
    return values


def _rating(text: Any) -> str | None:
    return None if not isinstance(text, str) or text.strip().casefold() == NO_RATING else text


def _timestamp(text: Any) -> float | str | None:
    """Unix seconds; text that is not such a date is handed on as is, and refused by the spec."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return datetime.strptime(text.strip(), TIMESTAMP_FORMAT).timestamp()
    except ValueError:
        return text


def _category_path(tree: str, report: IngestReport) -> list[str]:
    tree = tree.strip()
    if not tree:
        return []
    try:
        parsed = json.loads(tree)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(
            "bad_category", f"category tree is not a JSON list: {tree[:80]}"
        ) from exc
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
        raise InvalidRecord("bad_category", "category tree must be a list of strings")
    levels = [level.strip() for level in " >> ".join(parsed).split(">>")]
    kept = [level for level in levels if level and not level.endswith(("...", "\u2026"))]
    dropped = sum(1 for level in levels if level.endswith(("...", "\u2026")))
    if dropped:
        report.note(DROPPED_LEVEL_NOTE, dropped)
    return kept


def _images(value: str, images_dir: Path, report: IngestReport) -> list[str]:
    value = value.strip()
    if not value:
        return []
    if value.startswith("["):  # the full crawl stores a JSON list of image URLs
        try:
            urls = json.loads(value)
        except (ValueError, RecursionError):
            urls = []
        urls = urls if isinstance(urls, list) else []
        return [u for u in urls if isinstance(u, str) and u.startswith(("http://", "https://"))][:1]
    if value.startswith(("http://", "https://")):
        return [value]
    if "/" in value or "\\" in value or value in (".", "..") or "\x00" in value:
        report.note(UNSAFE_IMAGE_NOTE)
        return []
    return [str(images_dir / value)]


def parse_specifications(text: str) -> dict[str, str]:
    """Ruby-hash specification string -> attributes, never evaluating it (see module doc)."""
    text = text.strip()
    if not text:
        return {}
    pairs: list[tuple[str | None, Any]] = []
    try:
        data = json.loads(_RUBY_TOKEN.sub(_ruby_to_json, text))
        specs = data.get("product_specification") if isinstance(data, dict) else None
        if isinstance(specs, dict):
            specs = [specs]
        for spec in specs if isinstance(specs, list) else []:
            if isinstance(spec, dict):
                key = spec.get("key")
                pairs.append((key if isinstance(key, str) else None, spec.get("value")))
    except (ValueError, RecursionError):
        for m in _PAIR.finditer(text):
            pairs.append(
                (_unescape(m["key"]) if m["key"] is not None else None, _unescape(m["value"]))
            )
    return _collect(pairs)


def _collect(pairs: list[tuple[str | None, Any]]) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            continue
        name = (key or "").strip() or KEYLESS_ATTRIBUTE
        bucket = values.setdefault(name, [])
        if value.strip() not in bucket:
            bucket.append(value.strip())
    return {
        name: (" ; " if name == KEYLESS_ATTRIBUTE else ", ").join(vals)
        for name, vals in values.items()
    }


def _ruby_to_json(m: re.Match[str]) -> str:
    token = m.group(0)
    return ":" if token == "=>" else "null" if token == "nil" else token


def _unescape(s: str) -> str:
    try:
        out = json.loads(f'"{s}"')
    except ValueError:
        return s
    return out if isinstance(out, str) else s
