"""Fusion weights: one parser and one validator, shared by ``ctir-es query --weight`` and the
HTTP ``weights=`` parameter (and applied by ``Search`` for the Python API), so the three
never disagree.

- A weight is a finite number in ``[0, MAX_WEIGHT]``; NaN, infinity and negatives are refused
  (they would make every fused score NaN, and ``--json`` invalid JSON).
- A source name must be one this query uses; an unknown name is an error that lists them.
- Naming some sources keeps the mode's defaults for the others: ``--weight text=0.5`` on a
  category query means bm25 1.0, text 0.5, image 0.3 - the weights in force are reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ..errors import QueryError
from ..vocabulary import SOURCE_NAMES  # the sources a weight may name (re-exported)

MAX_WEIGHT = 1_000.0


def parse_weights(items: str | Iterable[str] | None) -> dict[str, float] | None:
    """``"bm25=1,text=0.3"`` or ``["bm25=1", "text=0.3"]`` -> ``{"bm25": 1.0, "text": 0.3}``;
    None when nothing is given. Raises ``QueryError`` naming the bad item."""
    if items is None:
        return None
    parts = items.split(",") if isinstance(items, str) else [p for item in items for p in item.split(",")]
    parts = [p for p in parts if p.strip()]
    if not parts:
        return None
    out: dict[str, float] = {}
    for item in parts:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise QueryError(f"weight {item.strip()[:50]!r} is not SOURCE=NUMBER (e.g. bm25=1,text=0.3)")
        try:
            weight = float(value)
        except ValueError:
            raise QueryError(f"weight of {name[:50]!r} is not a number: {value.strip()[:50]!r}") from None
        out[name] = weight
    return check_weights(out)


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Known source names, finite weights in ``[0, MAX_WEIGHT]``; else ``QueryError``."""
    out: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in SOURCE_NAMES:
            raise QueryError(f"unknown fusion source {str(name)[:50]!r}; supported: {', '.join(SOURCE_NAMES)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise QueryError(f"weight of {name} is not a number")
        if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
            raise QueryError(f"weight of {name} must be a number between 0 and {MAX_WEIGHT:g}, got {weight!r}")
        out[name] = float(weight)
    return out


def weights_in_force(
    sources: Sequence[str], defaults: Mapping[str, float], given: Mapping[str, float] | None
) -> dict[str, float]:
    """The weight of every source this query uses: the given ones over the mode's defaults.

    A given source this query does not use (``image`` on a text-only index) is an error that
    names the sources in use, rather than a weight silently ignored.
    """
    given = check_weights(given or {})
    unused = [name for name in given if name not in sources]
    if unused:
        raise QueryError(
            f"weight given for {', '.join(unused)}, but this query uses only {', '.join(sources) or 'no source'}"
        )
    return {name: given.get(name, defaults.get(name, 1.0)) for name in sources}
