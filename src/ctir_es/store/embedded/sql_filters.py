"""The filter grammar (``ctir_es.filters``) as SQL conditions over ``products AS p``.

Why here and not in each engine: FTS5 joins the condition into its query, while exact kNN,
the approximate index and tantivy's value filters take the rowids it lets through.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ...filters import Filter
from ..batch_write import NODE_SEP, fold_keyword

T = TypeVar("T")
FILTER_CACHE = 32  # filters remembered per cache (a vector field's masks, an index's, value filters)


def _value_param(value: Any) -> tuple[str, Any]:
    """The ``product_values`` column a typed filter value is compared with, and the value."""
    if isinstance(value, bool):
        return "num", 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return "num", float(value)
    return "kw", fold_keyword(str(value))


def value_filter_sql(f: Filter, alias: str = "p", *, table: bool = True) -> tuple[str, list[Any]]:
    """One filter on a typed value (``f.on_value``, its values typed by ``check_filters``) as a
    condition over ``products AS alias``. Negations (``not_in``, ``exists false``) keep the
    products without the value. ``table=False``: a format-2 store read as it is (no values)."""
    present = f.op != "not_in" and not (f.op == "exists" and f.value is False)
    if not table:
        return ("0" if present else "1"), []
    where = ["name = ?"]
    params: list[Any] = [f.field]
    if f.op in ("in", "not_in"):
        typed = [_value_param(v) for v in f.value]
        for column in ("kw", "num"):
            values = list(dict.fromkeys(v for c, v in typed if c == column))
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if len(where) == 3:  # a mixed list (not typed by check_filters): either column
            where[1:] = [f"({where[1]} OR {where[2]})"]
        elif len(where) == 1:
            where.append("0")
    elif f.op == "eq":
        column, value = _value_param(f.value)
        where.append(f"{column} = ?")
        params.append(value)
    elif f.op == "range":
        low, high = f.value
        if low is not None:
            where.append("num >= ?")
            params.append(float(low))
        if high is not None:
            where.append("num <= ?")
            params.append(float(high))
    negate = "" if present else "NOT "
    return f"{alias}.rowid {negate}IN (SELECT product FROM product_values WHERE {' AND '.join(where)})", params


def filter_sql(filters: Sequence[Filter], alias: str = "p", *, values: bool = True) -> tuple[str, list[Any]]:
    """Translate the filter grammar into a SQL condition over ``products AS alias``
    (``values=False``: the store has no values table)."""
    clauses: list[str] = []
    params: list[Any] = []
    for f in filters:
        if f.on_value:
            clause, more = value_filter_sql(f, alias, table=values)
            clauses.append(clause)
            params.extend(more)
        elif f.field == "category":
            clauses.append(f"{alias}.rowid IN (SELECT j.value FROM category_postings c, json_each(c.products) j "
                           "WHERE c.node = ?)")
            params.append(NODE_SEP.join(f.path))
        elif f.field == "market" and f.op == "eq":
            clauses.append(f"{alias}.market = ?")
            params.append(f.value)
        elif f.field in ("market", "id"):
            marks = ",".join("?" * len(f.value))
            negate = "NOT " if f.op == "not_in" else ""
            clauses.append(f"{alias}.{f.field} {negate}IN ({marks})" if marks else ("1" if negate else "0"))
            params.extend(f.value)
        elif f.field == "has_image":
            clauses.append(f"{alias}.has_image = ?")
            params.append(int(f.value))
    return (" AND ".join(clauses) or "1"), params


def passing_rowids(conn: sqlite3.Connection, filters: Sequence[Filter], *, values: bool = True) -> np.ndarray:
    """The rowids (ascending) of the products passing ``filters``."""
    where, params = filter_sql(filters, values=values)
    rows = conn.execute(f"SELECT p.rowid FROM products p WHERE {where} ORDER BY p.rowid", params).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def remembered(cache: dict[tuple[Any, ...], T], filters: Sequence[Filter], values: bool, make: Callable[[], T]) -> T:
    """``make()`` for ``filters``, kept in ``cache`` under their SQL until the data changes, so
    a repeated filter (a category facet, a price range while paging) costs one SQL query."""
    where, params = filter_sql(filters, values=values)
    key = (where, *params)
    found = cache.get(key)
    if found is None:
        found = make()
        if len(cache) >= FILTER_CACHE:
            cache.pop(next(iter(cache)))
        cache[key] = found
    return found
