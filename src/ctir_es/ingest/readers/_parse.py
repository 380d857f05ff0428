"""Safe record parsing shared by the readers: JSON first, then (XMarket only) Python literals.

Never ``eval``: ``ast.literal_eval`` only builds constants and containers, and refuses
calls, names and attribute access with ``ValueError`` - which we turn into a rejection.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import InvalidRecord
from ...products import Product
from ..report import IngestReport


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
) -> Product | None:
    """Run ``make(*args)`` (parse + map) and validate; a failure is one rejection, not a crash."""
    try:
        return Product.from_mapping(make(*args))
    except InvalidRecord as exc:
        report.reject(location, exc.reason, exc.detail)
    except RecursionError:
        report.reject(location, "too_deep", "nesting exceeds the recursion limit")
    except MemoryError:
        report.reject(location, "too_large", "record does not fit in memory")
    return None
