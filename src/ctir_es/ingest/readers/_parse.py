"""Safe record parsing shared by the readers: JSON first, then (XMarket only) Python literals;
and ``build``, which turns a reader's mapping into a ``Product``, typing its values.

Never ``eval``: ``ast.literal_eval`` only builds constants and containers, and refuses
calls, names and attribute access with ``ValueError`` - which we turn into a rejection.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import BadValue, InvalidRecord
from ...products import (
    MAX_ATTRIBUTES,
    MAX_DESCRIPTION_CHARS,
    MAX_IMAGES,
    MAX_PATHS,
    MAX_TITLE_CHARS,
    Product,
)
from ...values import ValueSpec, clean_values
from ..report import ID_RESPELLED, IngestReport


def parse_json(text: str) -> Any:
    """``json.loads`` with hostile-input failures turned into ``InvalidRecord``."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise InvalidRecord("too_deep", "nesting exceeds the parser's recursion limit") from exc
    except MemoryError as exc:
        raise InvalidRecord("too_large", "record does not fit in memory") from exc
    except ValueError as exc:  # JSONDecodeError, over-long integer literals
        raise InvalidRecord("invalid_json", str(exc)[:200]) from exc


def parse_json_or_literal(text: str) -> Any:
    """JSON, else a Python literal (single-quoted XMarket lines); anything else is unsafe."""
    try:
        return parse_json(text)
    except InvalidRecord as exc:
        if exc.reason != "invalid_json":
            raise
    if "\x00" in text:
        raise InvalidRecord("invalid_json", "NUL byte in record")
    try:
        return ast.literal_eval(text.strip())
    except RecursionError as exc:
        raise InvalidRecord("too_deep", "nesting exceeds the parser's recursion limit") from exc
    except MemoryError as exc:
        raise InvalidRecord("too_large", "record does not fit in memory") from exc
    except SyntaxError as exc:  # neither JSON nor Python: plain garbage
        raise InvalidRecord(
            "invalid_json", f"neither JSON nor a Python literal: {exc.msg}"
        ) from exc
    except (ValueError, TypeError) as exc:  # valid Python, but not a literal (calls, names...)
        raise InvalidRecord("unsafe_literal", "not a plain literal; nothing was evaluated") from exc


def build(
    location: str,
    report: IngestReport,
    make: Callable[..., Mapping[str, Any] | Any],
    *args: Any,
    specs: Mapping[str, ValueSpec] | None = None,
) -> Product | None:
    """Run ``make(*args)`` (parse + map) and validate; a failure is one rejection, not a crash.

    The record's ``values`` are typed by ``specs`` (the reader's declared ones; others stay
    as given) before validation: a value that does not fit is dropped from the product and
    counted in ``report.notes`` (``dropped value price (not_a_number)``; names outside
    ``specs`` are not spelled out, so a hostile catalogue cannot grow the notes), the first
    of each kind also as a message with its location.
    """
    try:
        record = make(*args)
        refused: list[tuple[str, BadValue]] = []
        if isinstance(record, Mapping) and isinstance(record.get("values"), Mapping):
            market = record.get("market")
            values, refused = clean_values(record["values"], specs, market if isinstance(market, str) else None)
            record = {**record, "values": values}
        product = Product.from_mapping(record)
    except InvalidRecord as exc:
        report.reject(location, exc.reason, exc.detail)
        return None
    except RecursionError:
        report.reject(location, "too_deep", "nesting exceeds the recursion limit")
        return None
    except MemoryError:
        report.reject(location, "too_large", "record does not fit in memory")
        return None
    if isinstance(record, Mapping):
        _note_cuts(record, product, report)
    for name, bad in refused:  # only for a product that is kept
        note = f"dropped value {name} ({bad.reason})" if specs and name in specs else f"dropped value ({bad.reason})"
        if note not in report.notes:
            report.message(f"{location}: dropped value {name!r} ({bad.detail or bad.reason}); "
                           f"the product is kept, further ones are counted in notes[{note!r}]")
        report.note(note)
    return product


def _note_cuts(record: Mapping[str, Any], product: Product, report: IngestReport) -> None:
    """Count in ``report.notes`` what ``Product.from_mapping`` changed without rejecting: an id
    it trimmed or NFC-normalised (remembered, so a merge it causes is noted by the pipeline),
    and each field it cut to its limit."""
    raw_id = record.get("id")
    if isinstance(raw_id, str) and raw_id != product.id:
        report.note(ID_RESPELLED)
        report.respelled_ids.add(product.id)
    for key, limit, kept in (("title", MAX_TITLE_CHARS, product.title),
                             ("description", MAX_DESCRIPTION_CHARS, product.description)):
        raw = record.get(key)
        # cut iff the cleaned text (runs of whitespace collapsed) is longer than the limit
        if isinstance(raw, str) and len(kept) == limit and len(raw) > limit and len(" ".join(raw.split())) > limit:
            report.note(f"{key} cut to {limit:,} characters")
    for key, limit in (("attributes", MAX_ATTRIBUTES), ("images", MAX_IMAGES)):
        raw = record.get(key)
        if isinstance(raw, (Mapping, list, tuple)) and len(raw) > limit:
            report.note(f"{key} cut to the first {limit:,}")
    cats = record.get("categories")
    if isinstance(cats, (list, tuple)) and len(cats) > MAX_PATHS and not all(isinstance(c, str) for c in cats):
        report.note(f"categories cut to the first {MAX_PATHS:,} paths")
