"""Sorting a shop's results by a number value, within the relevant head of the fused list.

Names: ``relevance`` (the default), ``price_asc``, ``price_desc``, ``rating`` (highest first),
``newest`` (the ``added`` value, a unix time, latest first), and ``NAME_asc`` / ``NAME_desc``
for any number value of the index.

Only the *window* is sorted: the fused candidates (after collapse) ranked at most
``SORT_WINDOW`` and scoring at least ``SORT_FLOOR`` times the top score. The rest follows in
relevance order, so "price ascending" never lifts a cheap product the query barely matched.
Why 0.3 and 100: on flipkart-1050 (115 category queries of levels 1-3, MiniLM, RRF), the share
of fused candidates inside the queried subtree falls from 0.83 (score >= 0.9 x top) to 0.06
(0.3-0.4) and 0.04 or less below 0.3; 95 % of the in-subtree products the fused lists hold
score >= 0.3 x top; those are on average 99 per query. docs/shop-search.md, "Sort".
Products without the value come last within the window, in relevance order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import QueryError
from ..schema import IndexSchema
from ..values import Value

RELEVANCE = "relevance"
SORT_WINDOW = 100
SORT_FLOOR = 0.3
# shop words -> (value name, ascending)
ALIASES: Mapping[str, tuple[str, bool]] = {
    "price_asc": ("price", True),
    "price_desc": ("price", False),
    "rating": ("rating", False),
    "newest": ("added", False),
}


@dataclass(frozen=True, slots=True)
class SortSpec:
    text: str  # as asked (price_asc, newest...)
    name: str  # the number value sorted on ("" until checked against the schema)
    ascending: bool

    def to_json(self) -> dict[str, object]:
        return {"sort": self.text, "value": self.name, "order": "asc" if self.ascending else "desc"}


def sort_names(schema: IndexSchema) -> list[str]:
    """The sorts this index offers (an error lists them)."""
    numbers = sorted(n for n, s in schema.values.items() if s.kind == "number")
    aliases = [a for a, (name, _) in ALIASES.items() if name in numbers]
    return list(dict.fromkeys([RELEVANCE, *aliases, *(f"{n}_{o}" for n in numbers for o in ("asc", "desc"))]))


def parse_sort(text: str, schema: IndexSchema) -> SortSpec | None:
    """``text`` as a sort of this index, None for relevance; an unknown one lists the index's."""
    word = text.strip().lower()
    if word in ("", RELEVANCE):
        return None
    if word in ALIASES:
        name, ascending = ALIASES[word]
    else:
        name, _, order = word.rpartition("_")
        ascending = order == "asc"
        if order not in ("asc", "desc") or not name:
            name = ""
    spec = schema.values.get(name)
    if spec is None or spec.kind != "number":
        raise QueryError(f"unknown sort {text[:60]!r}; this index sorts by: {', '.join(sort_names(schema))}")
    return SortSpec(word, name, ascending)


def window_size(scores: Sequence[float]) -> int:
    """How many of ``scores`` (fused, best first) the sort may reorder."""
    if not scores:
        return 0
    floor = SORT_FLOOR * scores[0]
    n = 0
    for score in scores[:SORT_WINDOW]:
        if score < floor:
            break
        n += 1
    return n


def sorted_ids(ranked: Sequence[tuple[str, float]], values: Mapping[str, Mapping[str, Value]],
               spec: SortSpec) -> tuple[list[str], int]:
    """``ranked`` ((id, fused score), best first) -> (ids in display order, window size)."""
    n = window_size([s for _, s in ranked])
    head = [pid for pid, _ in ranked[:n]]
    have = [pid for pid in head if _number(values.get(pid, {}).get(spec.name)) is not None]
    held = set(have)
    missing = [pid for pid in head if pid not in held]
    sign = 1.0 if spec.ascending else -1.0
    # a stable sort: equal values keep their relevance order
    have.sort(key=lambda pid: sign * (_number(values[pid].get(spec.name)) or 0.0))
    return [*have, *missing, *(pid for pid, _ in ranked[n:])], n


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
