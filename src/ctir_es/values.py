"""Typed attribute values: the facts a shop filters, facets and sorts on (brand, price, rating...).

``Product.attributes`` is text for BM25 and the encoders; ``Product.values`` holds the same
kind of facts typed, each a ``Value``: a keyword (``str``), a number (``float``) or a
boolean. A ``ValueSpec`` says which kind a named value is, and for a number its unit (an
ISO 4217 currency code such as ``"INR"``, or a word such as ``"unix_time"``).

Rules (docs/shop-search.md, "Typed values", says the same for users):

- Names: NFKC, case-folded, every run of characters that are not letters, digits or marks
  becomes one ``_``, trimmed: ``"Discounted Price"`` -> ``discounted_price``,
  ``"Case / Bezel Material"`` -> ``case_bezel_material``. At most ``MAX_NAME_CHARS`` after
  that; an empty name is refused. Idempotent, so a stored name reads back unchanged.
- Numbers in text (``parse_number``): ASCII digits only, an optional sign, one optional
  currency sign or code before or after (``₹ Rs. INR $ USD € £ ¥ ...``), no exponents,
  NaN or infinity, at most ``MAX_NUMBER_TEXT`` characters. Separators: with both ``,`` and
  ``.``, the last one is the decimal point (``1,299.50`` and ``1.299,50`` are 1299.5); a
  lone ``.`` is always decimal (``1.299`` is 1.299); a lone ``,`` followed by exactly three
  digits groups thousands (``1,299`` is 1299), else it is a decimal comma (``4,5`` is 4.5).
  Groups must be Western (``1,299,000``) or Indian (``1,29,900``); spaces, no-break spaces
  and ``'`` may group too. Anything else is refused (None), never guessed.
- A number whose unit is a currency is an amount and cannot be negative.
- Keywords: control characters and runs of whitespace become one space; kept as written
  otherwise (``"PRINT SHAPES"`` stays so); 1 to ``MAX_KEYWORD_CHARS`` characters.
- At most ``MAX_VALUES`` values per product; the ones past it are refused.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BadValue, ConfigError

Value = str | float | bool
KINDS = ("keyword", "number", "boolean")

MAX_VALUES = 64
MAX_NAME_CHARS = 200
MAX_KEYWORD_CHARS = 200
# A shop number is short ("Rs. 1,29,999.00"); longer text is a sentence, not a number, and
# the cap also bounds the digits, so no text reaches float('inf').
MAX_NUMBER_TEXT = 64
# infer_specs: a name is a number when at least this share of its values parse as numbers.
NUMBER_SHARE_PERCENT = 95

# Currency signs and codes (case-folded) -> ISO 4217. "$" and "¥" are read per market below.
CURRENCY_SIGNS: dict[str, str] = {
    "₹": "INR", "rs": "INR", "rs.": "INR", "inr": "INR",
    "$": "USD", "us$": "USD", "usd": "USD",
    "€": "EUR", "eur": "EUR",
    "£": "GBP", "gbp": "GBP",
    "¥": "JPY", "￥": "JPY", "jpy": "JPY",
    "c$": "CAD", "ca$": "CAD", "cad": "CAD",
    "a$": "AUD", "au$": "AUD", "aud": "AUD",
    "mx$": "MXN", "mxn": "MXN",
    "s$": "SGD", "sgd": "SGD",
    "cny": "CNY", "rmb": "CNY",
    "r$": "BRL", "brl": "BRL",
    "aed": "AED", "sar": "SAR",
}
# Market (as the readers store it) -> its currency: a bare price is in it, and "$" / "¥"
# mean its dollar / yuan there.
MARKET_CURRENCY: dict[str, str] = {
    "us": "USD", "ca": "CAD", "au": "AUD", "mx": "MXN", "sg": "SGD", "uk": "GBP", "gb": "GBP",
    "de": "EUR", "fr": "EUR", "es": "EUR", "it": "EUR", "nl": "EUR", "in": "INR", "jp": "JPY",
    "cn": "CNY", "ae": "AED", "sa": "SAR", "br": "BRL",
}
CURRENCIES = frozenset(CURRENCY_SIGNS.values()) | frozenset(MARKET_CURRENCY.values())
_DOLLARS = frozenset({"USD", "CAD", "AUD", "MXN", "SGD"})
# Longest first, so "rs." wins over "rs" and "us$" over "$".
_SIGNS_LONGEST_FIRST = sorted(CURRENCY_SIGNS, key=len, reverse=True)

_TRUE = frozenset({"yes", "true", "1"})
_FALSE = frozenset({"no", "false", "0"})
_WORDS = frozenset({"yes", "true", "no", "false"})

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROLS = dict.fromkeys((c for c in [*range(0x20), *range(0x7F, 0xA0)] if not chr(c).isspace()), " ")
_BODY = re.compile(r"[0-9]+(?:[.,' \u00a0\u202f][0-9]+)*")  # explicit [0-9]: no other scripts' digits
_SEPARATOR = re.compile(r"([.,' \u00a0\u202f])")
_MINUS = ("-", "\u2212")


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """The type of one named value: ``kind`` in ``KINDS``; ``unit`` only for numbers."""

    kind: str
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown value kind {self.kind!r}; supported: {', '.join(KINDS)}")
        if self.unit is not None and (self.kind != "number" or not isinstance(self.unit, str) or not self.unit):
            raise ConfigError(f"only a number has a unit (got kind {self.kind!r}, unit {self.unit!r})")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "unit": self.unit}

    @classmethod
    def from_json(cls, data: Any) -> ValueSpec:
        """From ``to_json``'s form, or a bare kind name (``"keyword"``) as a config may write it."""
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
            raise ConfigError(f"a value spec is an object with a 'kind' ({', '.join(KINDS)}), got {data!r}"[:300])
        unknown = set(data) - {"kind", "unit"}
        if unknown:
            raise ConfigError(f"unknown value spec key(s) {', '.join(sorted(map(str, unknown)))}; known: kind, unit")
        return cls(data["kind"], data.get("unit"))


def value_name(text: Any) -> str:
    """The normalised name of a value (see the module doc); ``BadValue`` when none is left."""
    if not isinstance(text, str):
        raise BadValue("bad_name", f"a value name must be text, got {type(text).__name__}")
    if _SURROGATE.search(text):
        raise BadValue("invalid_unicode", "the value name holds a lone surrogate")
    if len(text) > 4 * MAX_NAME_CHARS:  # bounded work before normalising
        raise BadValue("name_too_long", f"{len(text):,} characters (limit {MAX_NAME_CHARS})")
    name = text
    for _ in range(4):  # case folding can un-normalise (NFKC_Casefold is a closure): to a fixed point
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
        kept = "".join(c if unicodedata.category(c)[0] in "LNM" else " " for c in folded)
        new = "_".join(kept.split())
        if new == name:
            break
        name = new
    if not name:
        raise BadValue("bad_name", f"{text[:50]!r} has no letters or digits")
    if len(name) > MAX_NAME_CHARS:
        raise BadValue("name_too_long", f"{len(name):,} characters (limit {MAX_NAME_CHARS})")
    return name


def parse_number(text: str, market: str | None = None) -> tuple[float, str | None] | None:
    """Shop number text -> ``(value, unit)``: ``"₹1,299"`` -> ``(1299.0, "INR")``, ``"4.2"`` ->
    ``(4.2, None)``; None for anything that is not wholly one number (rules in the module doc).

    ``market`` reads the ambiguous signs: ``"$"`` is the market's dollar (``ca`` -> CAD, else
    USD) and ``"¥"`` its yuan in ``cn`` (else JPY).
    """
    if not isinstance(text, str) or len(text) > MAX_NUMBER_TEXT or _SURROGATE.search(text):
        return None
    s = text.strip()
    negative = s.startswith(_MINUS)
    if negative or s.startswith("+"):
        s = s[1:].lstrip()
    s, before = _peel(s, prefix=True)
    if not negative and s.startswith(_MINUS):  # "$-5"
        negative, s = True, s[1:].lstrip()
    s, after = _peel(s, prefix=False)
    if before and after and before != after:
        return None
    sign = before or after
    value = _body(s)
    if value is None:
        return None
    unit = _currency(sign, market) if sign else None
    return (-value if negative and value else value), unit


def _peel(s: str, prefix: bool) -> tuple[str, str | None]:
    for sign in _SIGNS_LONGEST_FIRST:
        part = s[: len(sign)] if prefix else s[len(s) - len(sign):]
        if len(s) > len(sign) and part.casefold() == sign:
            rest = s[len(sign):] if prefix else s[: len(s) - len(sign)]
            return rest.strip(), sign
    return s, None


def _currency(sign: str, market: str | None) -> str:
    local = MARKET_CURRENCY.get((market or "").lower())
    if sign == "$" and local in _DOLLARS:
        return local
    if sign in ("¥", "￥") and local == "CNY":
        return local
    return CURRENCY_SIGNS[sign]


def _body(s: str) -> float | None:
    """The digits and separators of a number (no sign, no currency) -> its value, or None."""
    if not _BODY.fullmatch(s):
        return None
    parts = _SEPARATOR.split(s)
    groups, seps = parts[0::2], parts[1::2]
    decimal = False
    if seps:
        last = seps[-1]
        # the last separator is the decimal point when it is a "." or "," used once, unless it is
        # a lone "," before exactly three digits: "1,299" groups thousands.
        if last in ".," and last not in seps[:-1]:
            decimal = len(seps) > 1 or last == "." or len(groups[-1]) != 3 or groups[0] == "0"
    whole = groups[:-1] if decimal else groups
    grouping = seps[:-1] if decimal else seps
    if grouping and (len(set(grouping)) != 1 or not _grouped(whole)):
        return None
    value = float("".join(whole) + ("." + groups[-1] if decimal else ""))
    return value if math.isfinite(value) else None


def _grouped(groups: Sequence[str]) -> bool:
    """Western thousands (1,299,000) or Indian lakhs (1,29,99,000)."""
    first, rest = groups[0], groups[1:]
    western = len(first) <= 3 and all(len(g) == 3 for g in rest)
    indian = len(first) <= 2 and all(len(g) == 2 for g in rest[:-1]) and len(rest[-1]) == 3
    return western or indian


def parse_boolean(text: str) -> bool | None:
    """``yes / no / true / false / 1 / 0`` (any case, spaces around) -> bool; else None."""
    if not isinstance(text, str):
        return None
    word = text.strip().casefold()
    return True if word in _TRUE else False if word in _FALSE else None


def is_currency(unit: str | None) -> bool:
    return unit in CURRENCIES


def normalise(raw: Any, spec: ValueSpec, market: str | None = None) -> Value:
    """``raw`` (text from a catalogue, or a JSON number / boolean) as a value of ``spec``.

    Raises ``BadValue`` with a stable reason (``not_a_number``, ``wrong_unit``,
    ``negative_amount``, ``not_a_boolean``, ``too_long``, ``empty``, ``bad_type``,
    ``invalid_unicode``) when it does not fit. A bare number takes the spec's unit.
    """
    if spec.kind == "number":
        return _number(raw, spec, market)
    if spec.kind == "boolean":
        return _boolean(raw)
    return keyword(raw)


def _number(raw: Any, spec: ValueSpec, market: str | None) -> float:
    unit: str | None = None
    if isinstance(raw, bool):
        raise BadValue("not_a_number", f"{raw!r} is a boolean")
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:
            raise BadValue("not_a_number", "too large for a float") from None
        if not math.isfinite(value):
            raise BadValue("not_a_number", f"{value!r} is not finite")
    elif isinstance(raw, str):
        parsed = parse_number(raw, market)
        if parsed is None:
            raise BadValue("not_a_number", f"{raw[:60]!r} is not a number")
        value, unit = parsed
    else:
        raise BadValue("bad_type", f"a number cannot be a {type(raw).__name__}")
    if unit is not None and unit != spec.unit:
        raise BadValue("wrong_unit", f"{raw!r} is in {unit}, the value is in {spec.unit or 'no unit'}")
    if value < 0 and is_currency(spec.unit):
        raise BadValue("negative_amount", f"{raw!r} is a negative {spec.unit} amount")
    return value + 0.0  # -0.0 -> 0.0


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)) and raw in (0, 1):
        return bool(raw)
    flag = parse_boolean(raw) if isinstance(raw, str) else None
    if flag is None:
        raise BadValue("not_a_boolean", f"{str(raw)[:60]!r} is not yes/no/true/false/1/0")
    return flag


def keyword(raw: Any) -> str:
    """``raw`` as a keyword: one line, whitespace collapsed, 1..``MAX_KEYWORD_CHARS`` characters."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (int, float)):
        return _number_text(float(raw))
    if not isinstance(raw, str):
        raise BadValue("bad_type", f"a keyword cannot be a {type(raw).__name__}")
    if _SURROGATE.search(raw):
        raise BadValue("invalid_unicode", "the value holds a lone surrogate")
    text = " ".join(raw.translate(_CONTROLS).split())
    if not text:
        raise BadValue("empty", "the value is blank")
    if len(text) > MAX_KEYWORD_CHARS:
        # a cut would invent a facet value nobody wrote; a long text belongs in attributes
        raise BadValue("too_long", f"longer than {MAX_KEYWORD_CHARS} characters")
    return text


def _number_text(value: float) -> str:
    if not math.isfinite(value):
        raise BadValue("not_a_number", f"{value!r} is not finite")
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def plain(raw: Any) -> Value:
    """A value before its spec is known (ingest types it later): JSON booleans stay bool,
    numbers become float, text is cleaned as a keyword; anything else is ``BadValue``."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)):
        return _number(raw, ValueSpec("number"), None)
    if isinstance(raw, str):
        return keyword(raw)
    raise BadValue("bad_type", f"a value is text, a number or a boolean, not a {type(raw).__name__}")


def clean_values(
    raw: Mapping[Any, Any],
    specs: Mapping[str, ValueSpec] | None = None,
    market: str | None = None,
) -> tuple[dict[str, Value], list[tuple[str, BadValue]]]:
    """Validate a product's values: names normalised, each value typed by ``specs`` when it
    names it (else ``plain``), ``None`` and blank text skipped as absent, at most
    ``MAX_VALUES`` kept.

    Returns the kept values and ``(name, error)`` for each refused one (the name as given,
    cut to ``MAX_NAME_CHARS``): the caller counts them; the product keeps the rest.
    """
    kept: dict[str, Value] = {}
    refused: list[tuple[str, BadValue]] = []
    for key, value in raw.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        shown = str(key)[:MAX_NAME_CHARS]
        try:
            name = value_name(key)
            if name in kept:
                raise BadValue("duplicate_name", f"{shown!r} is {name!r} again; the first one is kept")
            if len(kept) >= MAX_VALUES:
                raise BadValue("too_many_values", f"more than {MAX_VALUES} values")
            spec = specs.get(name) if specs else None
            kept[name] = normalise(value, spec, market) if spec else plain(value)
        except BadValue as exc:
            refused.append((shown, exc))
    return kept, refused


def infer_spec(samples: Iterable[Value | str]) -> ValueSpec:
    """The kind of one named value from the catalogue's values (blank text and None ignored):

    - boolean: every value is a bool or boolean text, and at least one is not ``0`` / ``1``
      (a column of ``"1"`` / ``"0"`` alone stays a number: "Pack of 1");
    - number: at least ``NUMBER_SHARE_PERCENT`` % parse as numbers, with at most one unit
      among them (bare numbers take it); the rest will be refused by ``normalise``;
    - keyword: everything else, and a name with no values.
    """
    values = [v for v in samples if v is not None and not (isinstance(v, str) and not v.strip())]
    if not values:
        return ValueSpec("keyword")
    flags = [v if isinstance(v, bool) else parse_boolean(v) if isinstance(v, str) else None for v in values]
    if all(f is not None for f in flags) and any(
        isinstance(v, bool) or v.strip().casefold() in _WORDS for v in values  # type: ignore[union-attr]
    ):
        return ValueSpec("boolean")
    parsed = 0
    units: set[str] = set()
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            parsed += _finite(v)
            continue
        number = parse_number(v)
        if number is not None:
            parsed += 1
            if number[1]:
                units.add(number[1])
    if parsed * 100 >= NUMBER_SHARE_PERCENT * len(values) and len(units) <= 1:
        return ValueSpec("number", next(iter(units), None))
    return ValueSpec("keyword")


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int past float's range
        return False


def infer_specs(samples: Mapping[str, Sequence[Value | str]]) -> dict[str, ValueSpec]:
    """``infer_spec`` for each name, in sorted name order (the result does not depend on the
    order the catalogue was read in)."""
    return {name: infer_spec(samples[name]) for name in sorted(samples)}
