"""Facet counts over a list of candidate products (their stored values and categories).

Pure functions over what ``store.get`` returned, so every store gives the same counts for the
same candidates. One facet per name; its kind decides the shape (each has ``kind``,
``candidates`` (products counted), ``missing`` (candidates without the value)):

- keyword: ``values``, the top N by count (grouped case-insensitively with ``str.lower``, as
  the stores filter; shown in the spelling most candidates use, ties the smallest), each with
  the ``filter`` text that selects it, ``distinct`` values and ``other`` (candidates holding a
  value outside the top N);
- number: ``count``, ``min``, ``max``, ``mean`` and ``bands`` (``nice_bands``), except for
  ``unix_time`` (dates: no bands);
- boolean: ``values`` for true and false;
- ``category``: per level 1..``CATEGORY_DEPTH``, the top N nodes; a product counts once per
  node, however many of its paths pass through it.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..products import CategoryPath, format_category_path
from ..values import Value, ValueSpec

CATEGORY_FACET = "category"
CATEGORY_DEPTH = 3
MAX_BANDS = 5  # bands before the open-ended top band
BAND_TOP_QUANTILE = 0.95  # the bands span min .. this quantile; the rest is one open band
_NICE = (1.0, 2.0, 2.5, 5.0)


def facet(name: str, spec: ValueSpec | None, values: Sequence[Mapping[str, Value]],
          categories: Sequence[Sequence[CategoryPath]], size: int) -> dict[str, Any]:
    """The facet ``name`` over the candidates (their values and category paths, one per product)."""
    if name == CATEGORY_FACET:
        return category_facet(categories, size)
    present = [v[name] for v in values if name in v]
    out: dict[str, Any]
    if spec is None or spec.kind == "keyword":
        out = keyword_facet(name, [str(v) for v in present], size)
    elif spec.kind == "number":
        out = number_facet([float(v) for v in present if not isinstance(v, bool)], spec)
    else:
        out = boolean_facet(name, [v for v in present if isinstance(v, bool)])
    return {**out, "candidates": len(values), "missing": len(values) - len(present)}


def filter_text(name: str, value: str) -> str:
    """The ``--filter`` / ``?filter=`` text selecting ``value`` (bars and backslashes escaped)."""
    return f"{name}:{value.replace(chr(92), chr(92) * 2).replace('|', chr(92) + '|')}"


def keyword_facet(name: str, present: Sequence[str], size: int) -> dict[str, Any]:
    groups: Counter[str] = Counter(v.lower() for v in present)
    spellings: dict[str, Counter[str]] = {}
    for v in present:
        spellings.setdefault(v.lower(), Counter())[v] += 1
    top = sorted(groups, key=lambda g: (-groups[g], g))[:size]
    shown = []
    for group in top:
        spelled = spellings[group]
        label = min(spelled, key=lambda s: (-spelled[s], s))
        shown.append({"value": label, "count": groups[group], "filter": filter_text(name, label)})
    return {"kind": "keyword", "values": shown, "distinct": len(groups),
            "other": len(present) - sum(groups[g] for g in top)}


def boolean_facet(name: str, present: Sequence[bool]) -> dict[str, Any]:
    yes = sum(present)
    return {"kind": "boolean", "values": [
        {"value": flag, "count": n, "filter": f"{name}:{'true' if flag else 'false'}"}
        for flag, n in ((True, yes), (False, len(present) - yes))]}


def number_facet(present: Sequence[float], spec: ValueSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "number", "unit": spec.unit, "count": len(present)}
    if not present:
        return {**out, "min": None, "max": None, "mean": None, "bands": []}
    out.update(min=min(present), max=max(present), mean=math.fsum(present) / len(present))
    out["bands"] = [] if spec.unit == "unix_time" else nice_bands(present)
    return out


def nice_bands(numbers: Sequence[float], max_bands: int = MAX_BANDS) -> list[dict[str, Any]]:
    """Bands ``[from, to)`` of one "nice" width (1, 2, 2.5 or 5 times a power of ten): the
    smallest width for which at most ``max_bands`` bands, starting at a multiple of it at or
    below the minimum, reach the 95th percentile; everything from the last edge up is one
    open band (``to`` null), so one outlier never stretches the bands. Prices 49..1,899 with
    the 95th percentile at 1,450: 0-500, 500-1000, 1000-1500, 1500+."""
    ordered = sorted(numbers)
    lo = ordered[0]
    top = ordered[min(len(ordered) - 1, max(0, math.ceil(BAND_TOP_QUANTILE * len(ordered)) - 1))]
    if top <= lo:
        return [{"from": lo, "to": None, "count": len(ordered)}]
    step, start, n = _nice_step(lo, top, max_bands)
    edges = [_round(start + i * step) for i in range(n + 1)]
    bands: list[dict[str, Any]] = []
    for a, b in itertools.pairwise(edges):
        bands.append({"from": a, "to": b, "count": _count(ordered, a, b)})
    above = _count(ordered, edges[-1], math.inf)
    if above:
        bands.append({"from": edges[-1], "to": None, "count": above})
    return bands


def _nice_step(lo: float, top: float, max_bands: int) -> tuple[float, float, int]:
    exponent = math.floor(math.log10((top - lo) / max_bands))
    while True:
        for m in _NICE:
            step = m * 10.0**exponent
            start = math.floor(lo / step) * step
            n = max(1, math.ceil((top - start) / step))
            if n <= max_bands:
                return step, start, n
        exponent += 1


def _round(x: float) -> float:
    return float(round(x, 9))


def _count(ordered: Sequence[float], a: float, b: float) -> int:
    from bisect import bisect_left

    return bisect_left(ordered, b) - bisect_left(ordered, a)


def category_facet(categories: Sequence[Sequence[CategoryPath]], size: int,
                   depth: int = CATEGORY_DEPTH) -> dict[str, Any]:
    counts: Counter[CategoryPath] = Counter()
    for paths in categories:  # a set per product: it counts once per node
        counts.update({tuple(path[:n]) for path in paths for n in range(1, min(depth, len(path)) + 1)})
    levels: dict[str, list[dict[str, Any]]] = {}
    for level in range(1, depth + 1):
        nodes = sorted((p for p in counts if len(p) == level), key=lambda p: (-counts[p], p))[:size]
        if nodes:
            levels[str(level)] = [{"path": list(p), "label": format_category_path(p), "count": counts[p],
                                   "filter": f"category:{format_category_path(p)}"} for p in nodes]
    return {"kind": "category", "depth": depth, "levels": levels, "candidates": len(categories),
            "missing": sum(1 for paths in categories if not paths)}


def summary_lines(facets: Mapping[str, Mapping[str, Any]], width: int = 5) -> list[str]:
    """One short line per facet for people (the CLI's table footer): ``brand: Sony 12, Bose 7``."""
    lines = []
    for name, f in facets.items():
        kind = f.get("kind")
        if kind == "number":
            if f.get("count"):
                unit = f" {f['unit']}" if f.get("unit") else ""
                bands = ", ".join(f"{_num(b['from'])}{'-' + _num(b['to']) if b['to'] is not None else '+'} "
                                  f"{b['count']}" for b in f.get("bands", []))
                text = f"{_num(f['min'])}..{_num(f['max'])}{unit}, mean {_num(f['mean'])}" + (f"; {bands}" if bands else "")
            else:
                text = "none"
        elif kind == "category":
            levels = f.get("levels", {})
            deepest = levels.get(max(levels, key=int)) if levels else []
            text = ", ".join(f"{n['path'][-1]} {n['count']}" for n in (deepest or [])[:width]) or "none"
        else:
            text = ", ".join(f"{v['value']} {v['count']}" for v in f.get("values", [])[:width]) or "none"
        extra = " (without its own filter)" if f.get("disjunctive") else ""
        lines.append(f"{name}{extra}: {text}")
    return lines


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:g}" if float(x).is_integer() else f"{x:.2f}"
