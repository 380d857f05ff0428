"""One backend-neutral filter grammar, translated per store (SQL WHERE / Elasticsearch bool).

A filter is a list of conditions that must all hold (AND). Each condition is a ``Filter``:

- ``Filter("category", "subtree", ("Kitchen & Dining", "Cookware"))`` - the product has a
  category path passing through that node;
- ``Filter("market", "eq", "us")`` / ``Filter("market", "in", ("us", "uk"))``;
- ``Filter("has_image", "eq", True)``;
- ``Filter("id", "in", ("a", "b"))`` / ``Filter("id", "not_in", (...))``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import FilterError
from .products import CategoryPath, has_surrogate, parse_category_path

# field -> operators it supports; the error text is generated from this, so they never drift.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "category": ("subtree",),
    "market": ("eq", "in"),
    "has_image": ("eq",),
    "id": ("in", "not_in"),
}


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        values = self.value if isinstance(self.value, (list, tuple)) else [self.value]
        for value in values:
            if isinstance(value, str) and has_surrogate(value):
                raise FilterError(f"the {self.field} filter value is not valid UTF-8 / Unicode")
        ops = SUPPORTED.get(self.field)
        if ops is None:
            raise FilterError(f"unknown filter field {self.field!r}; supported: {', '.join(SUPPORTED)}")
        if self.op not in ops:
            raise FilterError(
                f"field {self.field!r} does not support {self.op!r}; supported: {', '.join(ops)}"
            )
        if self.field == "category":
            path = self.value
            if isinstance(path, str):
                path = parse_category_path(path)
            if not isinstance(path, (list, tuple)) or not path or not all(isinstance(p, str) for p in path):
                raise FilterError("category subtree needs a non-empty path such as 'Kitchen > Blenders'")
            object.__setattr__(self, "value", tuple(path))
        elif self.op in ("in", "not_in"):
            if isinstance(self.value, str) or not isinstance(self.value, Iterable):
                raise FilterError(f"{self.field} {self.op} needs a list of values")
            values = tuple(str(v) for v in self.value)
            if self.field == "market":  # markets are stored lower-case
                values = tuple(v.lower() for v in values)
            object.__setattr__(self, "value", values)
        elif self.field == "has_image":
            if not isinstance(self.value, bool):
                raise FilterError("has_image needs true or false")
        elif self.field == "market":
            object.__setattr__(self, "value", str(self.value).lower())

    @property
    def path(self) -> CategoryPath:
        return self.value  # type: ignore[no-any-return]


Filters = Sequence[Filter]


def parse_filters(raw: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[Filter]:
    """Build filters from plain data: ``[{"field": ..., "op": ..., "value": ...}, ...]``."""
    if raw is None:
        return []
    items = [raw] if isinstance(raw, Mapping) else list(raw)
    out = []
    for item in items:
        if not isinstance(item, Mapping) or set(item) - {"field", "op", "value"}:
            raise FilterError('a filter is {"field": ..., "op": ..., "value": ...}')
        try:
            out.append(Filter(item["field"], item["op"], item["value"]))
        except KeyError as missing:
            raise FilterError(f"filter lacks {missing}") from None
    return out
