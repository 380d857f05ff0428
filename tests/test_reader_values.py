"""Typed values carried by the readers: the real flipkart-1050 CSV, hand-made hostile rows, XMarket
markets and currencies, and JSONL pass-through. A bad value is dropped and counted, never the product."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest
from conftest import FLIPKART_DIR

from ctir_es.errors import ConfigError
from ctir_es.ingest.readers import declared_specs, read_flipkart, read_jsonl, read_xmarket
from ctir_es.ingest.readers.flipkart import VALUE_SPECS, parse_specifications
from ctir_es.ingest.readers.xmarket import value_specs
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product
from ctir_es.values import MAX_VALUES, ValueSpec

needs_dataset = pytest.mark.skipif(FLIPKART_DIR is None, reason="flipkart-1050 not found: set CTIR_ES_FLIPKART_DIR")


@pytest.fixture(scope="module")
def flipkart() -> tuple[dict[str, Product], IngestReport, list[dict[str, str]]]:
    assert FLIPKART_DIR is not None
    report = IngestReport()
    products = {p.id: p for p in read_flipkart(FLIPKART_DIR, report)}
    with open(FLIPKART_DIR / "products.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return products, report, rows


@needs_dataset
def test_flipkart_values_match_the_csv_cells(flipkart: tuple) -> None:
    products, report, rows = flipkart
    assert len(products) == len(rows) == 1050
    assert not [note for note in report.notes if note.startswith("dropped value")]

    def count(name: str) -> int:
        return sum(name in p.values for p in products.values())

    assert count("price") == sum(bool(r["discounted_price"].strip()) for r in rows) == 1049
    assert count("retail_price") == sum(bool(r["retail_price"].strip()) for r in rows)
    assert count("rating") == sum(r["product_rating"] != "No rating available" for r in rows) == 161
    assert count("overall_rating") == sum(r["overall_rating"] != "No rating available" for r in rows)
    assert sum(p.values.get("fk_advantage") is True for p in products.values()) == \
        sum(r["is_FK_Advantage_product"] == "True" for r in rows) == 57
    assert count("brand") == sum(
        bool(r["brand"].strip() or parse_specifications(r["product_specifications"]).get("Brand")) for r in rows)
    for row in rows:
        p = products[row["uniq_id"]]
        if row["discounted_price"].strip():
            assert p.values["price"] == float(row["discounted_price"])
        assert p.values["added"] == datetime.strptime(row["crawl_timestamp"], "%Y-%m-%d %H:%M:%S %z").timestamp()
        if row["brand"].strip():  # the column wins over the specifications ("K&P", not "KandP")
            assert p.values["brand"] == row["brand"].strip()


@needs_dataset
def test_flipkart_values_are_typed_by_their_specs(flipkart: tuple) -> None:
    products = flipkart[0]
    kinds = {"keyword": str, "number": float, "boolean": bool}
    for p in products.values():
        assert set(p.values) <= set(VALUE_SPECS)
        for name, value in p.values.items():
            assert type(value) is kinds[VALUE_SPECS[name].kind], (p.id, name, value)
        assert p.values.get("price", 0) >= 0
        assert Product.from_mapping(p.to_json()) == p


@needs_dataset
def test_flipkart_known_product(flipkart: tuple) -> None:
    products = flipkart[0]
    assert products["55b85ea15a1536d46b7190ad6fff8ce7"].values == {
        "price": 899.0, "retail_price": 1899.0, "brand": "Elegance", "fk_advantage": False,
        "added": 1461986576.0,  # 2016-04-30 03:22:56 +0000
        "type": "Eyelet", "colour": "Multicolor", "material": "Polyester",
    }
    rated = [p for p in products.values() if "rating" in p.values]
    assert {p.values["rating"] for p in rated} <= {float(x) / 10 for x in range(10, 51)}
    towel = products["7b72c92c2f6c40268628ec5f14c6d590"].values
    assert towel["machine_washable"] is True and towel["ideal_for"] == "Men, Women, Boys, Girls"


COLUMNS = ["uniq_id", "crawl_timestamp", "product_name", "retail_price", "discounted_price",
           "is_FK_Advantage_product", "product_rating", "overall_rating", "brand", "product_specifications"]


def _flipkart_csv(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / "products.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for i, row in enumerate(rows, 1):
            writer.writerow({"uniq_id": f"id{i}", "product_name": f"Name {i}", **row})
    return path


def test_flipkart_bad_values_are_dropped_and_counted(tmp_path: Path) -> None:
    specs = '{"product_specification"=>[{"key"=>"Colour", "value"=>"Red"}, {"key"=>"Microwave Safe", "value"=>"Sometimes"}]}'
    path = _flipkart_csv(tmp_path, [
        {"discounted_price": "abc", "retail_price": "1,299", "product_rating": "4.5", "is_FK_Advantage_product": "maybe",
         "crawl_timestamp": "yesterday", "brand": "Acme", "product_specifications": specs},
        {"discounted_price": "-5", "retail_price": "₹999", "product_rating": "No rating available",
         "overall_rating": "no rating AVAILABLE", "crawl_timestamp": "2016-04-30 03:22:56 +0000"},
        {"discounted_price": "$5", "product_rating": "five"},
        {"product_name": "", "discounted_price": "abc"},  # rejected for its title: its value is not counted
    ])
    report = IngestReport()
    products = {p.id: p for p in read_flipkart(path, report)}
    assert set(products) == {"id1", "id2", "id3"} and report.rejected == {"missing_title": 1}
    assert products["id1"].values == {"retail_price": 1299.0, "rating": 4.5, "brand": "Acme", "colour": "Red"}
    assert products["id2"].values == {"retail_price": 999.0, "added": 1461986576.0}
    assert products["id3"].values == {}
    assert {k: v for k, v in report.notes.items() if k.startswith("dropped value")} == {
        "dropped value price (not_a_number)": 1,
        "dropped value price (negative_amount)": 1,
        "dropped value price (wrong_unit)": 1,
        "dropped value fk_advantage (not_a_boolean)": 1,
        "dropped value added (not_a_number)": 1,
        "dropped value microwave_safe (not_a_boolean)": 1,
        "dropped value rating (not_a_number)": 1,
    }
    assert any(m.startswith("products.csv row 1: dropped value 'price'") for m in report.messages)
    assert products["id1"].attributes["Colour"] == "Red"  # the text is kept for search either way


def _xmarket(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_xmarket_price_in_the_markets_currency(tmp_path: Path) -> None:
    records = [
        {"asin": "A1", "title": "Antenna", "price": "$9.99", "averageRating": 4.2, "ratingCount": 310,
         "productDetails": {"Brand\u200f:\u200e": "Acme", "Manufacturer": "Acme Corp"}},
        {"asin": "A2", "title": "Cable", "price": "€5", "averageRating": "n/a"},
        {"asin": "A3", "title": "Plug", "price": "$5 - $9", "ratingCount": True},
        {"asin": "A4", "title": "Lamp", "price": "12.50", "productDetails": {"Brand Name": "Lumo"}},
        {"asin": "A5", "title": "Fan", "price": {"amount": 5}},
    ]
    report = IngestReport()
    products = {p.id: p for p in read_xmarket(_xmarket(tmp_path, "metadata_ca_Electronics.json", records), report)}
    assert set(products) == {"A1", "A2", "A3", "A4", "A5"} and report.rejected_total == 0
    assert products["A1"].values == {"price": 9.99, "rating": 4.2, "rating_count": 310.0, "brand": "Acme",
                                     "manufacturer": "Acme Corp"}
    assert products["A2"].values == {} and products["A3"].values == {} and products["A5"].values == {}
    assert products["A4"].values == {"price": 12.5, "brand": "Lumo"}  # a bare price is in the market's currency
    assert value_specs("ca")["price"] == ValueSpec("number", "CAD")
    assert {k: v for k, v in report.notes.items() if k.startswith("dropped value")} == {
        "dropped value price (wrong_unit)": 1, "dropped value price (not_a_number)": 1,
        "dropped value price (bad_type)": 1, "dropped value rating (not_a_number)": 1,
        "dropped value rating_count (not_a_number)": 1,
    }


def test_xmarket_fixture_and_unknown_market(tmp_path: Path) -> None:
    report = IngestReport()
    products = {p.id: p for p in read_xmarket(Path(__file__).parent / "data" / "xmarket", report)}
    assert products["B000ANT01"].values == {"price": 9.99, "rating": 4.2, "rating_count": 310.0,
                                            "manufacturer": "Acme"}
    assert value_specs("us")["price"] == ValueSpec("number", "USD")
    # a file of no known market: the price is not typed here, it stays text for ingest to type
    path = _xmarket(tmp_path, "catalogue.json", [{"asin": "A1", "title": "T", "price": "$9.99"}])
    (product,) = read_xmarket(path, IngestReport())
    assert product.values == {"price": "$9.99"} and "price" not in value_specs(None)


def test_jsonl_values_pass_through(tmp_path: Path) -> None:
    records = [
        {"id": "a", "title": "A", "values": {"Brand": "Acme", "Price": 12.5, "In Stock": True, "Size": "XL",
                                             "Weight": "₹5", "Tags": ["x"], "brand": "dup"}},
        {"id": "b", "title": "B", "values": {f"v{i}": i for i in range(MAX_VALUES + 2)}},
        {"id": "c", "title": "C", "values": "price=5"},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    report = IngestReport()
    products = {p.id: p for p in read_jsonl(path, report)}
    assert products["a"].values == {"brand": "Acme", "price": 12.5, "in_stock": True, "size": "XL", "weight": "₹5"}
    assert len(products["b"].values) == MAX_VALUES
    assert "c" not in products and report.rejected == {"bad_type": 1}  # values not an object: as attributes
    assert {k: v for k, v in report.notes.items() if k.startswith("dropped value")} == {
        "dropped value (bad_type)": 1, "dropped value (duplicate_name)": 1, "dropped value (too_many_values)": 2}


def test_declared_specs() -> None:
    assert declared_specs("flipkart") == VALUE_SPECS and declared_specs("flipkart")["price"] == ValueSpec("number", "INR")
    assert declared_specs("xmarket", "uk")["price"] == ValueSpec("number", "GBP")
    assert "price" not in declared_specs("xmarket") and declared_specs("xmarket")["brand"] == ValueSpec("keyword")
    assert declared_specs("jsonl") == {}
    with pytest.raises(ConfigError, match="supported: jsonl, xmarket, flipkart"):
        declared_specs("csv")
