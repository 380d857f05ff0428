"""Generic JSONL catalogue: one ``Product.from_mapping``-shaped object per line (``.gz`` ok).

Its ``values`` object passes through as written (numbers as floats, booleans, text), typed
at ingest; a value that cannot be one (a list, a name of no letters, text over the keyword
limit) is dropped from its product and counted in ``report.notes``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ...products import Product
from ..report import IngestReport
from ._lines import iter_lines
from ._parse import build, parse_json


def resolve_image(ref: str, base: Path) -> str:
    """Make a relative image path absolute against ``base``; URLs and absolute paths pass."""
    if "://" in ref or ref.startswith("data:"):
        return ref
    return os.path.normpath(os.path.join(base, os.path.expanduser(ref.strip())))


def _record(text: str, base: Path) -> Any:
    data = parse_json(text)
    if not isinstance(data, Mapping):
        return data  # from_mapping rejects it as not_an_object
    images = data.get("images")
    if isinstance(images, str):
        images = [images]
    if isinstance(images, list):
        data = dict(data)
        data["images"] = [
            resolve_image(i, base) if isinstance(i, str) and i.strip() else i for i in images
        ]
    return data


def read_jsonl(path: str | Path, report: IngestReport) -> Iterator[Product]:
    """Yield each valid product of a generic JSONL file; bad lines are rejected, never fatal.

    Relative image paths are resolved against the file's directory, so the catalogue can
    move with its images. Blank lines are skipped without counting.
    """
    path = Path(path)
    base = path.resolve().parent
    for lineno, text in iter_lines(path, report):
        product = build(f"{path.name}:{lineno}", report, _record, text, base)
        if product is not None:
            yield product
