"""The Product record: validation reasons, category path handling."""

from __future__ import annotations

import pytest

from ctir_es.errors import FilterError, InvalidRecord
from ctir_es.filters import Filter, parse_filters
from ctir_es.products import (
    MAX_PATH_DEPTH,
    Product,
    format_category_path,
    looks_like_category_path,
    parse_category_path,
    path_prefixes,
)


def test_minimal_record() -> None:
    p = Product.from_mapping({"id": 17, "title": "  Blender \n 500 W ", "unknown": {"ignored": True}})
    assert p == Product(id="17", title="Blender 500 W")


def test_full_record_round_trips() -> None:
    raw = {
        "id": "B01",
        "title": "Hand blender",
        "categories": [["Home & Kitchen", "Kitchen & Dining", "Blenders"], ["Deals"]],
        "attributes": {"Brand": "X", "Colours": ["red", "blue"], "Empty": "", "Power": 500},
        "description": "Blends.",
        "images": ["a.jpg", "", 5, "https://x/y.jpg"],
        "market": "US",
    }
    p = Product.from_mapping(raw)
    assert p.categories == (("Home & Kitchen", "Kitchen & Dining", "Blenders"), ("Deals",))
    assert p.attributes == {"Brand": "X", "Colours": "red, blue", "Power": "500"}
    assert p.images == ("a.jpg", "https://x/y.jpg")
    assert p.market == "us"
    assert Product.from_mapping(p.to_json()) == p


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"title": "x"}, "missing_id"),
        ({"id": "  ", "title": "x"}, "missing_id"),
        ({"id": "1"}, "missing_title"),
        ({"id": "1", "title": "   "}, "missing_title"),
        ({"id": ["1"], "title": "x"}, "bad_type"),
        ({"id": True, "title": "x"}, "bad_type"),
        ({"id": "1", "title": {"en": "x"}}, "bad_type"),
        ({"id": "1", "title": "x", "categories": 5}, "bad_category"),
        ({"id": "1", "title": "x", "categories": [[1, 2]]}, "bad_category"),
        ({"id": "1", "title": "x", "attributes": ["a"]}, "bad_type"),
        ({"id": "1", "title": "x", "categories": [["L"] * (MAX_PATH_DEPTH + 1)]}, "bad_category"),
        (["not", "an", "object"], "not_an_object"),
    ],
)
def test_rejections_carry_a_reason(raw: object, reason: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        Product.from_mapping(raw)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_category_forms() -> None:
    assert Product.from_mapping({"id": 1, "title": "t", "categories": "A > B >> C"}).categories == (("A", "B", "C"),)
    assert Product.from_mapping({"id": 1, "title": "t", "categories": ["A", "B"]}).categories == (("A", "B"),)
    empty = Product.from_mapping({"id": 1, "title": "t", "categories": [[], ["", " "]]})
    assert empty.categories == ()


def test_path_helpers() -> None:
    assert parse_category_path(" Kitchen & Dining >Cookware>> Pans ") == ("Kitchen & Dining", "Cookware", "Pans")
    assert parse_category_path("Cases & Covers/Sleeves") == ("Cases & Covers/Sleeves",)
    assert format_category_path(("A", "B")) == "A > B"
    assert path_prefixes(("A", "B", "C")) == [("A",), ("A", "B"), ("A", "B", "C")]
    assert looks_like_category_path("Kitchen > Blenders")
    assert not looks_like_category_path("red blender")


def test_filters_validate() -> None:
    assert Filter("category", "subtree", "A > B").value == ("A", "B")
    assert Filter("market", "eq", "US").value == "us"
    assert parse_filters([{"field": "id", "op": "in", "value": [1, "b"]}]) == [Filter("id", "in", ("1", "b"))]
    for bad in [("colour", "gt", "red"), ("market", "gt", "a"), ("category", "subtree", ""),
                ("has_image", "eq", "yes"), ("id", "in", "abc"), ("colour", "in", "red")]:
        with pytest.raises(FilterError, match="support|needs"):
            Filter(*bad)
    # any other name is one of the index's typed values: checked against its schema (test_filter_values)
    assert Filter("Colour", "eq", "red").field == "colour"
    with pytest.raises(FilterError):
        parse_filters([{"field": "market", "op": "eq", "value": "us", "extra": 1}])
