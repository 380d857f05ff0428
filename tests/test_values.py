"""Typed attribute values (values.py): number / boolean parsing, names, specs, inference, limits,
and Product.values validation."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctir_es.errors import BadValue, ConfigError, InvalidRecord
from ctir_es.products import Product
from ctir_es.values import (
    KINDS,
    MAX_KEYWORD_CHARS,
    MAX_NAME_CHARS,
    MAX_VALUES,
    ValueSpec,
    clean_values,
    infer_spec,
    infer_specs,
    keyword,
    normalise,
    parse_boolean,
    parse_number,
    value_name,
)

INR = ValueSpec("number", "INR")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("₹1,299", (1299.0, "INR")),
        ("Rs. 1,299.00", (1299.0, "INR")),
        ("Rs.899", (899.0, "INR")),
        ("rs 5", (5.0, "INR")),
        ("INR 500", (500.0, "INR")),
        ("₹1,29,999", (129999.0, "INR")),  # Indian lakh grouping
        ("$12.99", (12.99, "USD")),
        ("12.99 USD", (12.99, "USD")),
        ("€5", (5.0, "EUR")),
        ("£5", (5.0, "GBP")),
        ("¥500", (500.0, "JPY")),
        ("4.2", (4.2, None)),
        ("  899.0 ", (899.0, None)),
        ("1.299,50 €", (1299.5, "EUR")),  # European: the last separator is the decimal one
        ("12,99 €", (12.99, "EUR")),  # a lone comma before 1-2 digits is a decimal comma
        ("1 299,50", (1299.5, None)),
        ("1'299.50", (1299.5, None)),
        ("1\u00a0299", (1299.0, None)),
        ("1,299", (1299.0, None)),  # a lone comma before exactly three digits groups thousands
        ("1.299", (1.299, None)),  # a lone dot is always decimal
        ("0,299", (0.299, None)),
        ("1,299,000.5", (1299000.5, None)),
        ("1.299.000", (1299000.0, None)),
        ("-5", (-5.0, None)),
        ("\u22125", (-5.0, None)),  # the minus sign
        ("+3", (3.0, None)),
        ("-₹5", (-5.0, "INR")),
        ("$-5", (-5.0, "USD")),
        ("-0", (0.0, None)),
        ("9" * 60, (float("9" * 60), None)),
    ],
)
def test_parse_number(text: str, expected: tuple[float, str | None]) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "No rating available", "", "   ", "abc", "Model 2000X", "213 cm", "5 out of 5", "$5 - $9",
        "1e309", "1e3", "inf", "-inf", "Infinity", "nan", "NaN", ".5", "5.", "1,,2", "1,2,3", "1234,567",
        "1 2", "$5 €", "₹", "--5", "١٢٣", "１２３", "۱۲", "5²", "\ud800", "12\udfff", "9" * 65,
        "1" * 10_000, "12\x00", "1,299.00.5",
    ],
)
def test_parse_number_refuses(text: str) -> None:
    assert parse_number(text) is None


def test_parse_number_market_reads_dollar_and_yuan_signs() -> None:
    assert parse_number("$9.99", "ca") == (9.99, "CAD")
    assert parse_number("$9.99", "us") == (9.99, "USD")
    assert parse_number("$9.99", "de") == (9.99, "USD")  # no dollar there: the US one
    assert parse_number("¥5", "cn") == (5.0, "CNY") and parse_number("¥5", "jp") == (5.0, "JPY")
    assert parse_number("US$9", "ca") == (9.0, "USD")  # explicit codes are never re-read


def test_parse_number_is_not_text_input() -> None:
    assert parse_number(5) is None  # type: ignore[arg-type]
    assert parse_number(None) is None  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_parse_number_never_raises_and_is_finite(text: str) -> None:
    out = parse_number(text)
    if out is not None:
        value, unit = out
        assert isinstance(value, float) and math.isfinite(value)
        assert unit is None or unit.isupper()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes", True), ("YES", True), (" True ", True), ("1", True), ("no", False), ("False", False),
     ("0", False), ("maybe", None), ("", None), ("y", None), ("2", None), ("\ud800", None)],
)
def test_parse_boolean(text: str, expected: bool | None) -> None:
    assert parse_boolean(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Discounted Price", "discounted_price"),
        ("  Ideal  For ", "ideal_for"),
        ("Case / Bezel Material", "case_bezel_material"),
        ("colour", "colour"),
        ("retail__price", "retail_price"),
        ("Größe", "grösse"),
        ("ﬁt", "fit"),  # NFKC
        ("रंग", "रंग"),  # marks stay inside a word
        ("Item Weight\u200f:\u200e", "item_weight"),
        ("3D", "3d"),
    ],
)
def test_value_name(text: str, expected: str) -> None:
    assert value_name(text) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("!!!", "bad_name"), ("", "bad_name"), ("___", "bad_name"), ("x" * (MAX_NAME_CHARS + 1), "name_too_long"),
     ("a " * 5000, "name_too_long"), ("a\ud800", "invalid_unicode"), (5, "bad_name"), (None, "bad_name")],
)
def test_value_name_refuses(raw: object, reason: str) -> None:
    with pytest.raises(BadValue) as info:
        value_name(raw)
    assert info.value.reason == reason


@given(st.text(max_size=60))
def test_value_name_is_idempotent(text: str) -> None:
    try:
        name = value_name(text)
    except BadValue:
        return
    assert value_name(name) == name and " " not in name and not name.startswith("_")


def test_value_spec_json_and_validation() -> None:
    for spec in (ValueSpec("keyword"), ValueSpec("boolean"), ValueSpec("number"), INR):
        assert ValueSpec.from_json(spec.to_json()) == spec
    assert ValueSpec.from_json("number") == ValueSpec("number")
    assert KINDS == ("keyword", "number", "boolean")
    with pytest.raises(ConfigError, match="supported: keyword, number, boolean"):
        ValueSpec("date")
    with pytest.raises(ConfigError, match="only a number has a unit"):
        ValueSpec("keyword", "INR")
    with pytest.raises(ConfigError, match="unknown value spec key"):
        ValueSpec.from_json({"kind": "number", "units": "INR"})
    with pytest.raises(ConfigError, match="'kind'"):
        ValueSpec.from_json({"unit": "INR"})
    with pytest.raises(ConfigError):
        ValueSpec.from_json({"kind": "number", "unit": 5})


@pytest.mark.parametrize(
    ("raw", "spec", "expected"),
    [
        ("₹1,299", INR, 1299.0),
        ("899.0", INR, 899.0),  # a bare number takes the spec's unit
        (899, INR, 899.0),
        ("-5", ValueSpec("number"), -5.0),  # only amounts must not be negative
        ("4.5", ValueSpec("number"), 4.5),
        ("Yes", ValueSpec("boolean"), True),
        ("False", ValueSpec("boolean"), False),
        (True, ValueSpec("boolean"), True),
        (0, ValueSpec("boolean"), False),
        ("  Black \x00\n White ", ValueSpec("keyword"), "Black White"),
        ("PRINT SHAPES", ValueSpec("keyword"), "PRINT SHAPES"),  # case is kept
        (5.0, ValueSpec("keyword"), "5"),
        (12.5, ValueSpec("keyword"), "12.5"),
        (False, ValueSpec("keyword"), "false"),
    ],
)
def test_normalise(raw: object, spec: ValueSpec, expected: object) -> None:
    out = normalise(raw, spec)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    ("raw", "spec", "reason"),
    [
        ("abc", INR, "not_a_number"),
        ("No rating available", ValueSpec("number"), "not_a_number"),
        ("$5", INR, "wrong_unit"),
        ("₹5", ValueSpec("number"), "wrong_unit"),
        ("-5", INR, "negative_amount"),
        (-5.0, INR, "negative_amount"),
        (True, INR, "not_a_number"),
        (float("nan"), INR, "not_a_number"),
        (float("inf"), ValueSpec("number"), "not_a_number"),
        (10**400, ValueSpec("number"), "not_a_number"),
        ([1], ValueSpec("number"), "bad_type"),
        ("maybe", ValueSpec("boolean"), "not_a_boolean"),
        (2, ValueSpec("boolean"), "not_a_boolean"),
        (None, ValueSpec("boolean"), "not_a_boolean"),
        ("", ValueSpec("keyword"), "empty"),
        ("\x00\x01", ValueSpec("keyword"), "empty"),
        ("x" * (MAX_KEYWORD_CHARS + 1), ValueSpec("keyword"), "too_long"),
        ("x " * 100_000, ValueSpec("keyword"), "too_long"),
        ("Bl\ud800ck", ValueSpec("keyword"), "invalid_unicode"),
        ({"a": 1}, ValueSpec("keyword"), "bad_type"),
        (float("nan"), ValueSpec("keyword"), "not_a_number"),
    ],
)
def test_normalise_refuses(raw: object, spec: ValueSpec, reason: str) -> None:
    with pytest.raises(BadValue) as info:
        normalise(raw, spec)
    assert info.value.reason == reason


def test_bad_value_is_not_a_rejected_record() -> None:
    # build() rejects the whole product on InvalidRecord; a bad value must never be taken for one
    assert not issubclass(BadValue, InvalidRecord)


def test_keyword_limit_is_after_collapsing_whitespace() -> None:
    assert keyword("a" + " " * 500 + "b") == "a b"


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (["₹899", "1,299", "₹100"], INR),  # bare numbers take the one unit
        (["899.0", 1299.0, "4"], ValueSpec("number")),
        (["$5", "€5"], ValueSpec("keyword")),  # two currencies: not comparable
        (["True", "False", "true"], ValueSpec("boolean")),
        (["Yes", "No", "1"], ValueSpec("boolean")),
        ([True, False], ValueSpec("boolean")),
        (["1", "0", "1"], ValueSpec("number")),  # 0/1 alone stays a number ("Pack of 1")
        (["Black", "Red"], ValueSpec("keyword")),
        ([str(i) for i in range(19)] + ["n/a"], ValueSpec("number")),  # 95 %: the rest are refused later
        ([str(i) for i in range(18)] + ["n/a", "?"], ValueSpec("keyword")),  # 90 %
        (["", "  ", None], ValueSpec("keyword")),
        ([], ValueSpec("keyword")),
        (["5", True], ValueSpec("keyword")),
        ([float("nan"), float("nan")], ValueSpec("keyword")),
    ],
)
def test_infer_spec(samples: list, expected: ValueSpec) -> None:
    assert infer_spec(samples) == expected


def test_infer_specs_is_deterministic() -> None:
    samples = {"price": ["₹899", "₹1,299"] * 10, "brand": ["Acme", "5"], "fk": ["True", "False"],
               "rating": ["4", "5", "No rating"] * 3 + ["4"] * 60}
    # rating: 66 of 69 parse (95.7 %), so a number; the 3 "No rating" will be refused values
    expected = {"brand": ValueSpec("keyword"), "fk": ValueSpec("boolean"), "price": INR,
                "rating": ValueSpec("number")}
    out = infer_specs(samples)
    assert out == expected and list(out) == sorted(expected)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = {k: rng.sample(v, len(v)) for k, v in rng.sample(list(samples.items()), len(samples))}
        assert infer_specs(shuffled) == out and list(infer_specs(shuffled)) == list(out)


def test_clean_values_limits_and_names() -> None:
    raw = {f"v{i}": float(i) for i in range(MAX_VALUES + 6)}
    kept, refused = clean_values(raw)
    assert len(kept) == MAX_VALUES and [bad.reason for _, bad in refused] == ["too_many_values"] * 6
    kept, refused = clean_values({"Brand": "Acme", "brand": "Other", "Colour": None, "Size": " ",
                                  "Tags": ["a"], "In Stock": True, "Price": 5, "!!": "x"})
    assert kept == {"brand": "Acme", "in_stock": True, "price": 5.0}
    assert sorted((name, bad.reason) for name, bad in refused) == [
        ("!!", "bad_name"), ("Tags", "bad_type"), ("brand", "duplicate_name")]
    kept, refused = clean_values({"price": "₹5", "added": "x"}, {"price": INR, "added": ValueSpec("number")})
    assert kept == {"price": 5.0} and [(n, b.reason) for n, b in refused] == [("added", "not_a_number")]


def test_product_values_round_trip() -> None:
    p = Product.from_mapping({"id": "a", "title": "T", "values": {
        "Discounted Price": "₹1,299", "Rating": 4, "In Stock": True, "Colour": " Navy  Blue ", "x": None}})
    assert p.values == {"discounted_price": "₹1,299", "rating": 4.0, "in_stock": True, "colour": "Navy Blue"}
    assert isinstance(p.values["rating"], float)
    assert p.to_json()["values"] == dict(p.values)
    assert Product.from_mapping(p.to_json()) == p
    assert Product.from_mapping({"id": "b", "title": "T"}).values == {}
    assert Product(id="c", title="T").to_json()["values"] == {}


@pytest.mark.parametrize(
    ("values", "reason"),
    [([1, 2], "bad_type"), ("price=5", "bad_type"), ({"price": [5]}, "bad_value"), ({"price": float("inf")}, "bad_value"),
     ({"!!": 5}, "bad_value"), ({"x": "y" * (MAX_KEYWORD_CHARS + 1)}, "bad_value")],
)
def test_product_rejects_bad_values(values: object, reason: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        Product.from_mapping({"id": "a", "title": "T", "values": values})
    assert info.value.reason == reason


@given(st.dictionaries(st.text(max_size=20),
                       st.one_of(st.text(max_size=40), st.floats(), st.booleans(), st.integers(), st.none()),
                       max_size=80))
def test_clean_values_is_idempotent(raw: dict) -> None:
    # what from_mapping keeps reads back unchanged: to_json -> from_mapping round-trips
    kept, refused = clean_values(raw)
    assert clean_values(kept) == (kept, [])
    assert len(kept) <= MAX_VALUES and len(kept) + len(refused) <= len(raw)
    assert all(type(v) in (str, float, bool) for v in kept.values())


def test_hostile_signs_and_whitespace() -> None:
    assert parse_number("rß5") is None  # "ß" folds to "ss": never half a currency code
    assert parse_number("RS. 5") == (5.0, "INR") and parse_number("5 usd") == (5.0, "USD")
    assert keyword("a" + " " * 5000 + "b") == "a b"  # the limit applies after collapsing
    assert infer_spec([10**400, 5]) == ValueSpec("keyword")  # an int past float's range is no number
