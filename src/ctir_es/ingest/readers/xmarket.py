"""XMarket (Amazon cross-market) product metadata: ``metadata_{market}_{Category}.json[.gz]``.

The published lines are Python literals (single quotes) and their own docs read them with
``eval``; we parse JSON first, then ``ast.literal_eval``, and reject anything else as
``unsafe_literal`` without running it.

Field mapping (any field may be missing or empty):

- ``asin`` -> ``id``; ``title``; ``categories`` (one path, root first) -> one category path;
- ``productDetails`` (name -> value) -> attributes, names cleaned of Amazon's invisible
  direction marks and trailing colons; non-scalar values are dropped;
- ``features`` (bullet points) -> ONE attribute ``"Features"``, bullets joined with
  ``" | "`` (one searchable field, instead of ``Feature 1..n`` keys that no filter or
  shop ever names);
- ``description`` (string or list of paragraphs) -> ``description``;
- ``imgUrl`` (a string holding JSON ``{url: [height, width]}``, or already a mapping) ->
  the single largest image by area. A malformed value keeps the product without an image
  and is counted in ``report.notes["malformed imgUrl"]``;
- market: the ``market`` argument, else the one in the file name;
- typed ``values`` (``value_specs``): ``price`` (a number in the market's currency:
  ``"$9.99"`` in ``ca`` is CAD, ``"₹499"`` in ``in`` is INR; a price in another currency,
  a range ``"$5 - $9"`` or a negative one is dropped and counted in ``report.notes``; in a
  file of no known market the price stays text, typed at ingest), ``averageRating`` ->
  ``rating`` and ``ratingCount`` -> ``rating_count`` (numbers), and from ``productDetails``
  ``Brand`` (or ``Brand Name``) -> ``brand`` and ``Manufacturer`` -> ``manufacturer``
  (keywords; a manufacturer is not taken for the brand).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ...errors import SourceError
from ...products import Product
from ...values import MARKET_CURRENCY, ValueSpec
from ..report import IngestReport
from ._lines import iter_lines
from ._parse import build, parse_json_or_literal

_FILENAME = re.compile(r"^metadata_(?P<market>[A-Za-z]{2})_(?P<category>.+?)\.json(?:\.gz)?$")
_INVISIBLE = dict.fromkeys(map(ord, "\u200e\u200f\u200b\ufeff"), None)
MALFORMED_IMG_NOTE = "malformed imgUrl"
BRAND_KEYS = ("Brand", "Brand Name")


def value_specs(market: str | None) -> dict[str, ValueSpec]:
    """The declared types of the values this reader writes for a file of ``market``."""
    specs = {
        "rating": ValueSpec("number"),
        "rating_count": ValueSpec("number"),
        "brand": ValueSpec("keyword"),
        "manufacturer": ValueSpec("keyword"),
    }
    currency = MARKET_CURRENCY.get(market or "")
    if currency:
        specs["price"] = ValueSpec("number", currency)
    return specs


def market_of(path: Path) -> str | None:
    """``metadata_us_Electronics.json.gz`` -> ``"us"``; None for other names."""
    m = _FILENAME.match(path.name)
    return m["market"].lower() if m else None


def xmarket_files(paths_or_dir: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files to read: a file as given, or every ``metadata_*.json[.gz]`` under a folder."""
    items = [paths_or_dir] if isinstance(paths_or_dir, (str, Path)) else list(paths_or_dir)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("metadata_*.json*") if p.is_file() and _FILENAME.match(p.name)
            )
            if not found:
                raise SourceError(f"no metadata_*.json or metadata_*.json.gz files under {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"XMarket source not found: {path}")
    return files


def read_xmarket(
    paths_or_dir: str | Path | Iterable[str | Path],
    report: IngestReport,
    market: str | None = None,
) -> Iterator[Product]:
    """Yield each valid product of one or more XMarket metadata files, rejecting bad lines."""
    for path in xmarket_files(paths_or_dir):
        file_market = (market or market_of(path) or "").lower() or None
        specs = value_specs(file_market)
        for lineno, text in iter_lines(path, report):
            product = build(f"{path.name}:{lineno}", report, _record, text, file_market, report, specs=specs)
            if product is not None:
                yield product


def _record(text: str, market: str | None, report: IngestReport) -> Any:
    data = parse_json_or_literal(text)
    if not isinstance(data, Mapping):
        return data  # Product.from_mapping rejects it as not_an_object
    image, malformed = best_image(data.get("imgUrl"))
    if malformed:
        report.note(MALFORMED_IMG_NOTE)
    attributes = _attributes(data.get("productDetails"), data.get("features"))
    return {
        "id": data.get("asin"),
        "title": data.get("title"),
        "categories": data.get("categories") or [],
        "attributes": attributes,
        "values": {
            "price": data.get("price"),
            "rating": data.get("averageRating"),
            "rating_count": data.get("ratingCount"),
            "brand": next((attributes[k] for k in BRAND_KEYS if k in attributes), None),
            "manufacturer": attributes.get("Manufacturer"),
        },
        "description": _description(data.get("description")),
        "images": [image] if image else [],
        "market": market,
    }


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _attributes(details: Any, features: Any) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if isinstance(details, Mapping):
        for key, value in details.items():
            name = str(key).translate(_INVISIBLE).strip().rstrip(":").strip()
            if isinstance(value, (list, tuple)):
                parts = [s for s in map(_scalar, value) if s]
                text: str | None = ", ".join(parts)
            else:
                text = _scalar(value)
            if name and text:
                attrs[name] = text.translate(_INVISIBLE)
    if isinstance(features, str):
        features = [features]
    if isinstance(features, (list, tuple)):
        bullets = [f.strip() for f in features if isinstance(f, str) and f.strip()]
        if bullets:
            attrs["Features"] = " | ".join(bullets)
    return attrs


def _description(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        return " ".join(s for s in map(_scalar, raw) if s)
    return _scalar(raw) or ""


def best_image(raw: Any) -> tuple[str | None, bool]:
    """``(url of the largest image, malformed?)`` from an ``imgUrl`` value of any shape."""
    if raw is None or (isinstance(raw, (str, Mapping, list, tuple)) and not raw):
        return None, False
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith(("http://", "https://")):
            return text, False
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            try:
                raw = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None, True
    if isinstance(raw, (list, tuple)):
        urls = [u for u in raw if isinstance(u, str) and u.startswith(("http://", "https://"))]
        return (urls[0], False) if urls else (None, True)
    if not isinstance(raw, Mapping):
        return None, True
    best: str | None = None
    best_area = -1.0
    for url, size in raw.items():
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            continue
        area = _area(size)
        if area > best_area:
            best, best_area = url, area
    return (best, False) if best else (None, True)


def _area(size: Any) -> float:
    """``[height, width]`` -> area; anything else counts as 0 (still usable, least preferred)."""
    if isinstance(size, (list, tuple)) and len(size) == 2:
        try:
            h, w = float(size[0]), float(size[1])
        except (TypeError, ValueError, OverflowError):
            return 0.0
        if h > 0 and w > 0 and h * w < float("inf"):
            return h * w
    return 0.0
