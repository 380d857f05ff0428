"""One backend-neutral filter grammar, translated per store (SQL WHERE / Elasticsearch bool).

A filter is a list of conditions that must all hold (AND). Each condition is a ``Filter``:

- ``Filter("category", "subtree", ("Kitchen & Dining", "Cookware"))`` - the product has a
  category path passing through that node;
- ``Filter("market", "eq", "us")`` / ``Filter("market", "in", ("us", "uk"))``;
- ``Filter("has_image", "eq", True)``;
- ``Filter("id", "in", ("a", "b"))`` / ``Filter("id", "not_in", (...))``;
- a typed value of the index (``IndexSchema.values``, ``ctir_es.values``), by its name:
  ``Filter("brand", "in", ("Sony", "Bose"))`` / ``"not_in"``, ``Filter("price", "range",
  (500, 2000))`` (either end ``None``: open), ``Filter("fk_advantage", "eq", True)``,
  ``Filter("brand", "exists", True)`` / ``False``. ``check_filters(filters, schema)`` types the
  values against the index's specs; its errors name what the index holds.

The text form (CLI ``--filter``, HTTP ``?filter=``), ``parse_filter_text``:

- ``brand:Sony|Bose`` (any of; ``\\|`` is a literal bar), ``-brand:Sony`` (none of);
- ``price:500..2000``, ``price:500..``, ``price:..2000`` (a number value, ends included);
- ``fk_advantage:true`` (a boolean value), ``has:brand`` / ``-has:brand`` (present / absent);
- ``category:Kitchen > Blenders`` (subtree), ``market:us|uk``, ``has_image:true``, ``id:a|b``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BadValue, FilterError
from .products import CategoryPath, has_surrogate, parse_category_path
from .values import ValueSpec, normalise, parse_boolean, value_name

if TYPE_CHECKING:
    from .schema import IndexSchema

# field -> operators it supports; the error text is generated from this, so they never drift.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "category": ("subtree",),
    "market": ("eq", "in"),
    "has_image": ("eq",),
    "id": ("in", "not_in"),
}
# Operators on the index's typed values, and what each kind of value takes.
VALUE_OPS: tuple[str, ...] = ("in", "not_in", "range", "eq", "exists")
# A value filter read from text before the index's schema was at hand (HTTP, CLI): its value is
# the text, and ``check_filters`` reads it with the value's kind.
DEFERRED = "text"
KIND_OPS: Mapping[str, tuple[str, ...]] = {
    "keyword": ("in", "not_in", "eq", "exists"),
    "number": ("range", "in", "not_in", "eq", "exists"),
    "boolean": ("eq", "exists"),
}
MAX_TERMS = 100  # values in one terms filter: bounded work per request


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
            self._value_filter()
            return
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

    @property
    def on_value(self) -> bool:
        """A filter on one of the index's typed values (not a built-in field)."""
        return self.field not in SUPPORTED

    def _value_filter(self) -> None:
        """Shape checks of a value filter; the kinds are checked against the index's schema by
        ``check_filters``."""
        try:
            name = value_name(self.field)
        except BadValue as exc:
            raise FilterError(f"bad filter field {str(self.field)[:60]!r}: {exc}") from None
        object.__setattr__(self, "field", name)
        if self.op == DEFERRED:
            if not isinstance(self.value, str):
                raise FilterError("a filter in text form is text")
            return
        if self.op not in VALUE_OPS:
            raise FilterError(f"a value filter ({name}) supports {', '.join(VALUE_OPS)}, not {self.op!r}")
        if self.op in ("in", "not_in"):
            if isinstance(self.value, (str, bytes)) or not isinstance(self.value, Iterable):
                raise FilterError(f"{name} {self.op} needs a list of values")
            values = tuple(self.value)
            if not values or len(values) > MAX_TERMS:
                raise FilterError(f"{name} {self.op} needs 1 to {MAX_TERMS} values")
            object.__setattr__(self, "value", values)
        elif self.op == "range":
            if isinstance(self.value, (str, bytes)) or not isinstance(self.value, Iterable):
                raise FilterError(f"{name} range needs (low, high); either may be null")
            ends = tuple(self.value)
            if len(ends) != 2 or all(e is None for e in ends):
                raise FilterError(f"{name} range needs (low, high) with at least one end")
            object.__setattr__(self, "value", ends)
        elif self.op == "exists" and not isinstance(self.value, bool):
            raise FilterError(f"{name} exists needs true or false")


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


def _typed(name: str, raw: Any, spec: ValueSpec) -> Any:
    try:
        return normalise(raw, spec)
    except BadValue as exc:
        unit = f" in {spec.unit}" if spec.unit else ""
        raise FilterError(f"{name} is a {spec.kind}{unit}: {exc}") from None


def check_filters(filters: Sequence[Filter], schema: IndexSchema) -> list[Filter]:
    """``filters`` with every value filter checked against the index's typed values and its
    values typed (``"1,299"`` -> 1299.0 for a number). The errors name what the index holds."""
    out = []
    for f in filters:
        if f.op == DEFERRED:
            f = parse_filter_text(f.value, schema)
        if not f.on_value or f.op == "exists":
            if f.on_value and f.field not in schema.values:
                raise FilterError(_unknown(f.field, schema))
            out.append(f)
            continue
        spec = schema.values.get(f.field)
        if spec is None:
            raise FilterError(_unknown(f.field, schema))
        if f.op not in KIND_OPS[spec.kind]:
            raise FilterError(f"{f.field} is a {spec.kind}; its filters: {', '.join(KIND_OPS[spec.kind])}")
        if f.op == "range":
            low, high = (None if e is None else _typed(f.field, e, spec) for e in f.value)
            if low is not None and high is not None and low > high:
                raise FilterError(f"{f.field} range: {low:g} is above {high:g}")
            out.append(Filter(f.field, "range", (low, high)))
        elif f.op == "eq":
            out.append(Filter(f.field, "eq", _typed(f.field, f.value, spec)))
        else:
            out.append(Filter(f.field, f.op, tuple(dict.fromkeys(_typed(f.field, v, spec) for v in f.value))))
    return out


def _unknown(name: str, schema: IndexSchema) -> str:
    held = ", ".join(sorted(schema.values)) or "none (the catalogue carries no typed values)"
    return f"unknown filter field {name!r}; built in: {', '.join(SUPPORTED)}; this index's values: {held}"


def _alternatives(text: str) -> list[str]:
    """``a|b\\|c`` -> ``["a", "b|c"]``: a bar separates, a backslash-escaped bar does not."""
    parts, current, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "|\\":
            current.append(text[i + 1])
            i += 2
            continue
        if text[i] == "|":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(text[i])
        i += 1
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse_filter_text(text: str, schema: IndexSchema | None = None) -> Filter:
    """One filter in the text form (module doc). A value's kind decides how its text reads
    (``a..b`` is a range only for a number): without ``schema`` a value filter is kept as text
    (op ``DEFERRED``) for ``check_filters`` to read with the index's schema."""
    raw = text.strip()
    negated = raw.startswith("-")
    body = raw[1:] if negated else raw
    field, sep, rest = body.partition(":")
    field, rest = field.strip(), rest.strip()
    if not sep or not field or not rest:
        raise FilterError(f"a filter is NAME:VALUE (e.g. brand:Sony|Bose, price:500..2000, has:brand), "
                          f"got {text[:80]!r}")
    if field == "has":
        return Filter(rest, "exists", not negated)
    if field == "category":
        if negated:
            raise FilterError("a category filter cannot be negated")
        return Filter("category", "subtree", rest)
    if field == "has_image":
        flag = parse_boolean(rest)
        if flag is None or negated:
            raise FilterError("has_image:true or has_image:false")
        return Filter("has_image", "eq", flag)
    if field in SUPPORTED:  # market, id
        op = "not_in" if negated else "in"
        if op not in SUPPORTED[field]:
            raise FilterError(f"{field} filters cannot be negated")
        return Filter(field, op, tuple(_alternatives(rest)))
    if schema is None:
        return Filter(_name(field), DEFERRED, raw)
    spec = schema.values.get(_name(field))
    kind = spec.kind if spec is not None else None
    if ".." in rest and kind in (None, "number") and not negated:
        low, _, high = rest.partition("..")
        return Filter(field, "range", (low.strip() or None, high.strip() or None))
    if kind == "boolean" or (kind is None and parse_boolean(rest) is not None and rest.lower() in ("true", "false")):
        if negated:
            raise FilterError(f"{field}: write {field}:true or {field}:false rather than negating")
        return Filter(field, "eq", rest)
    return Filter(field, "not_in" if negated else "in", tuple(_alternatives(rest)))


def _name(field: str) -> str:
    try:
        return value_name(field)
    except BadValue as exc:
        raise FilterError(f"bad filter field {field[:60]!r}: {exc}") from None
