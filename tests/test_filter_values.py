"""The filter grammar on typed values: the text form, the checks against the index's schema,
and the errors, which name what the index holds."""

from __future__ import annotations

import pytest

from ctir_es.errors import FilterError
from ctir_es.filters import Filter, check_filters, parse_filter_text
from ctir_es.schema import IndexSchema
from ctir_es.values import ValueSpec

SCHEMA = IndexSchema({}, {"brand": ValueSpec("keyword"), "price": ValueSpec("number", "INR"),
                          "fk_advantage": ValueSpec("boolean")})


def parse(text: str) -> Filter:
    return check_filters([parse_filter_text(text, SCHEMA)], SCHEMA)[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("brand:Sony|Bose", Filter("brand", "in", ("Sony", "Bose"))),
    ("-brand:Sony", Filter("brand", "not_in", ("Sony",))),
    (r"brand:A\|B|C", Filter("brand", "in", ("A|B", "C"))),
    ("brand:1..2", Filter("brand", "in", ("1..2",))),  # a keyword never reads as a range
    ("price:500..2000", Filter("price", "range", (500.0, 2000.0))),
    ("price:..₹2,000", Filter("price", "range", (None, 2000.0))),
    ("price:1,299..", Filter("price", "range", (1299.0, None))),
    ("Price:899|1,299", Filter("price", "in", (899.0, 1299.0))),  # names normalise like the index's
    ("fk_advantage:yes", Filter("fk_advantage", "eq", True)),
    ("fk_advantage:false", Filter("fk_advantage", "eq", False)),
    ("has:brand", Filter("brand", "exists", True)),
    ("-has:brand", Filter("brand", "exists", False)),
    ("category:Kitchen > Blenders", Filter("category", "subtree", ("Kitchen", "Blenders"))),
    ("market:US|uk", Filter("market", "in", ("us", "uk"))),
    ("has_image:true", Filter("has_image", "eq", True)),
    ("-id:a|b", Filter("id", "not_in", ("a", "b"))),
])
def test_text_form(text: str, expected: Filter) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("colr:red", "this index's values: brand, fk_advantage, price"),
    ("-has:colour", "unknown filter field 'colour'"),
    ("price:abc..", "price is a number in INR"),
    ("price:$5..", "price is a number in INR"),
    ("price:900..100", "900 is above 100"),
    ("fk_advantage:maybe", "fk_advantage is a boolean"),
    ("-fk_advantage:true", "rather than negating"),
    ("brand", "a filter is NAME:VALUE"),
    ("brand:", "a filter is NAME:VALUE"),
    ("-category:A > B", "cannot be negated"),
    ("!!:x", "bad filter field"),
])
def test_errors_name_what_the_index_holds(text: str, says: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert says in str(caught.value)


def test_kinds_take_their_own_operators() -> None:
    with pytest.raises(FilterError, match="brand is a keyword; its filters"):
        check_filters([Filter("brand", "range", ("a", "b"))], SCHEMA)
    with pytest.raises(FilterError, match="fk_advantage is a boolean; its filters"):
        check_filters([Filter("fk_advantage", "in", (True,))], SCHEMA)
    with pytest.raises(FilterError, match="1 to 100 values"):
        Filter("brand", "in", tuple(str(i) for i in range(101)))
    with pytest.raises(FilterError, match="at least one end"):
        Filter("price", "range", (None, None))
    # built-in filters pass through unchanged; duplicates collapse after typing
    assert check_filters([Filter("market", "eq", "US"), Filter("price", "in", ("1,299", "1299"))], SCHEMA) == [
        Filter("market", "eq", "us"), Filter("price", "in", (1299.0,))]


def test_schema_round_trips_its_values_and_old_schemas_load() -> None:
    assert IndexSchema.from_json(SCHEMA.to_json()) == SCHEMA
    assert IndexSchema.from_json({"vectors": {}}) == IndexSchema()
    assert "values" not in IndexSchema().to_json()  # an index without values stores what it did


def test_text_read_before_the_schema_is_known_is_read_with_it_later() -> None:
    deferred = [parse_filter_text(t) for t in ("brand:1..2", "price:500..900", "-brand:X", "has:brand",
                                              "category:A > B")]
    assert [f.op for f in deferred] == ["text", "text", "text", "exists", "subtree"]
    assert check_filters(deferred, SCHEMA) == [
        Filter("brand", "in", ("1..2",)), Filter("price", "range", (500.0, 900.0)), Filter("brand", "not_in", ("X",)),
        Filter("brand", "exists", True), Filter("category", "subtree", ("A", "B"))]
    with pytest.raises(FilterError, match="this index's values"):
        check_filters([parse_filter_text("colr:red")], SCHEMA)
