"""Untrusted text stays data: JSON with a nesting limit and valid Unicode, CSV cells that are
never formulas.

Why a scan before ``json.loads`` rather than an ``object_hook``: the hook runs after a
container is parsed, bottom-up, so it cannot stop the decoder's recursion; 1,000 nested
``[`` raise ``RecursionError`` inside ``json.loads`` itself. ``nesting_depth`` is one
linear pass over the text with no recursion, so the decoder only ever sees bounded input.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidRecord

MAX_JSON_DEPTH = 64  # a product record nests 3-4 levels; 64 is generous and far from recursion limits

# OWASP CSV injection: a cell starting with one of these is a formula in a spreadsheet
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def nesting_depth(text: str, stop_above: int | None = None) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text`` (strings skipped), without recursion;
    returns early once past ``stop_above``."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_untrusted(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted input; every failure is an ``InvalidRecord`` whose reason is
    ``invalid_utf8``, ``too_deep``, ``invalid_json`` or ``bad_unicode`` (a lone surrogate, raw
    or as a ``\\ud800`` escape)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord("invalid_utf8", f"not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if has_lone_surrogate(text):
        raise InvalidRecord("bad_unicode", "a lone surrogate (not valid Unicode)")
    if nesting_depth(text, stop_above=max_depth) > max_depth:
        raise InvalidRecord("too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(text)
    except RecursionError:  # not reached under the depth limit; kept as a last line
        raise InvalidRecord("too_deep", f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError
        raise InvalidRecord("invalid_json", str(exc)[:200]) from None
    if _holds_surrogate(value):
        raise InvalidRecord("bad_unicode", "a \\uD800-\\uDFFF escape that is not a pair (not valid Unicode)")
    return value


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _holds_surrogate(value: Any) -> bool:
    """Any string (key or value) in the decoded JSON holding a lone surrogate; iterative."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string starting with ``= + - @``, tab or
    CR gets a leading ``'`` (OWASP's rule). Numbers are written as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: csv_cell(v) for k, v in row.items()}
