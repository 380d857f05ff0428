"""Flipkart CSV reader against the real flipkart-1050 sample and hostile hand-made rows."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import pytest
from conftest import FLIPKART_BESIDE, FLIPKART_DIR, FLIPKART_MISSING

from ctir_es.errors import SourceError
from ctir_es.ingest.readers import read_flipkart
from ctir_es.ingest.readers.flipkart import (
    DROPPED_LEVEL_NOTE,
    MAX_FIELD_CHARS,
    UNSAFE_IMAGE_NOTE,
    parse_specifications,
)
from ctir_es.ingest.report import IngestReport

# found beside the repository (conftest.FLIPKART_BESIDE) or at $CTIR_ES_FLIPKART_DIR
DATASET = FLIPKART_DIR or FLIPKART_BESIDE
needs_dataset = pytest.mark.skipif(FLIPKART_DIR is None, reason=FLIPKART_MISSING)

COLUMNS = [
    "uniq_id",
    "product_name",
    "product_category_tree",
    "description",
    "brand",
    "product_specifications",
    "image",
]


@pytest.fixture(scope="module")
def real() -> tuple[list, IngestReport]:
    report = IngestReport()
    return list(read_flipkart(DATASET, report)), report


@needs_dataset
def test_real_counts(real: tuple[list, IngestReport]) -> None:
    products, report = real
    assert report.read == 1050 and len(products) == 1050 and report.rejected_total == 0
    assert report.notes[DROPPED_LEVEL_NOTE] == 155
    assert Counter(p.categories[0][0] for p in products) == {
        top: 150
        for top in (
            "Home Furnishing",
            "Baby Care",
            "Watches",
            "Home Decor & Festive Needs",
            "Kitchen & Dining",
            "Beauty and Personal Care",
            "Computers",
        )
    }
    assert not any(level.endswith("...") for p in products for level in p.categories[0])
    assert {p.market for p in products} == {"in"}
    assert all(len(p.images) == 1 and os.path.isabs(p.images[0]) for p in products)
    missing = sorted(
        Path(p.images[0]).name[:8] for p in products if not Path(p.images[0]).is_file()
    )
    assert missing == ["22ac36ba", "994f1d8a", "c4ac93e1"]
    assert sum(p.categories[0][:2] == ("Kitchen & Dining", "Cookware") for p in products) == 27


@needs_dataset
def test_real_record_mapping(real: tuple[list, IngestReport]) -> None:
    p = {p.id: p for p in real[0]}["55b85ea15a1536d46b7190ad6fff8ce7"]
    assert p.title == "Elegance Polyester Multicolor Abstract Eyelet Door Curtain"
    assert p.categories == (("Home Furnishing", "Curtains & Accessories", "Curtains"),)
    assert p.attributes["Brand"] == "Elegance" and p.attributes["Length"] == "213 cm"
    assert p.images == (str(DATASET.resolve() / "images" / "55b85ea15a1536d46b7190ad6fff8ce7.jpg"),)


def _csv(tmp_path: Path, rows: list[dict[str, str]], raw_tail: bytes = b"") -> Path:
    path = tmp_path / "products.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(path, "ab") as fh:
        fh.write(raw_tail)
    return path


def _row(i: int, **kw: str) -> dict[str, str]:
    base = {
        "uniq_id": f"id{i}",
        "product_name": f"Name {i}",
        "product_category_tree": '["Top >> Mid >> Name ' + str(i) + ' cut off..."]',
        "description": 'line one\nline "two"',
        "brand": "Acme",
        "product_specifications": "",
        "image": f"id{i}.jpg",
    }
    return {**base, **kw}


def test_hostile_rows_are_rejected_by_row_number(tmp_path: Path) -> None:
    rows = [
        _row(1),
        _row(2, uniq_id=""),
        _row(3, product_name=""),
        _row(4, product_category_tree="{not json"),
        _row(5, image="../../etc/passwd"),
        _row(6, product_category_tree='["' + "A >> " * 40 + 'Z"]'),
        _row(7, product_name="x" * (MAX_FIELD_CHARS + 1), description="one line"),
        _row(8, image='["http://img.example/1.jpg", "http://img.example/2.jpg"]'),
    ]
    path = _csv(tmp_path, rows, raw_tail=b'id9,"bad \xff bytes",,,,,\nid10,Last,,,,,\n')
    report = IngestReport()
    products = {p.id: p for p in read_flipkart(path, report)}
    assert set(products) == {"id1", "id5", "id8", "id10"}
    assert report.read == 10
    assert {(r.location, r.reason) for r in report.rejections} == {
        ("products.csv row 2", "missing_id"),
        ("products.csv row 3", "missing_title"),
        ("products.csv row 4", "bad_category"),
        ("products.csv row 6", "bad_category"),
        ("products.csv row 7", "bad_csv"),
        ("products.csv row 9", "invalid_utf8"),
    }
    p1 = products["id1"]
    assert p1.categories == (("Top", "Mid"),) and p1.attributes == {"Brand": "Acme"}
    assert p1.description == 'line one line "two"'
    assert p1.images == (str(tmp_path.resolve() / "images" / "id1.jpg"),)
    assert products["id5"].images == () and report.notes[UNSAFE_IMAGE_NOTE] == 1
    assert products["id8"].images == ("http://img.example/1.jpg",)
    assert products["id10"].categories == ()


def test_not_a_flipkart_csv(tmp_path: Path) -> None:
    (tmp_path / "products.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="uniq_id"):
        list(read_flipkart(tmp_path, IngestReport()))
    with pytest.raises(SourceError, match="not found"):
        list(read_flipkart(tmp_path / "elsewhere", IngestReport()))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            (
                '{"product_specification"=>[{"key"=>"Brand", "value"=>"Elegance"}, {"value"=>"1 Year Warranty"},'
                ' {"value"=>"Box"}, {"key"=>"Color", "value"=>"Red"}, {"key"=>"Color", "value"=>"Blue"}]}'
            ),
            {"Brand": "Elegance", "Details": "1 Year Warranty ; Box", "Color": "Red, Blue"},
        ),
        (
            '{"product_specification"=>{"key"=>"Style Code", "value"=>"7007YL08"}}',
            {"Style Code": "7007YL08"},
        ),
        ('{"product_specification"=>nil}', {}),
        ("", {}),
        (
            '{"product_specification"=>[{"key"=>"Arrow", "value"=>"a=>b nil \\"q\\""}]}',
            {"Arrow": 'a=>b nil "q"'},
        ),
        # broken structure: the pair scan still recovers the pairs
        (
            '{"product_specification"=>[{"key"=>"Brand", "value"=>"X"}, {"value"=>"Loose"} ,,,',
            {"Brand": "X", "Details": "Loose"},
        ),
        ("__import__('os').system('echo no')", {}),
    ],
)
def test_parse_specifications(text: str, expected: dict[str, str]) -> None:
    assert parse_specifications(text) == expected


def test_fields_over_the_csv_default_limit_are_read(tmp_path: Path) -> None:
    path = _csv(tmp_path, [_row(1, description="word " * 60_000)])  # 300 KB > 128 KiB default
    report = IngestReport()
    (product,) = read_flipkart(path, report)
    assert report.rejected_total == 0 and product.description.startswith("word word")


def test_the_dataset_is_found_beside_the_repository_never_by_an_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest finds ../shared/datasets/flipkart-1050 relative to the repository root (as CI
    lays it out), through a symlinked clone either way; $CTIR_ES_FLIPKART_DIR wins when set."""
    import conftest

    monkeypatch.delenv("CTIR_ES_FLIPKART_DIR", raising=False)
    data = tmp_path / "ci" / "shared" / "datasets" / "flipkart-1050"
    data.mkdir(parents=True)
    (data / "products.csv").write_text("uniq_id\n", encoding="utf-8")
    clone = tmp_path / "ci" / "ctir-es"  # beside shared/
    (clone / "tests").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "ctir-es").symlink_to(clone)  # reached through a link elsewhere: resolved
    away = tmp_path / "away" / "ctir-es"  # lying elsewhere, reached through a link beside shared/
    (away / "tests").mkdir(parents=True)
    (tmp_path / "ci" / "linked").symlink_to(away)
    for root in (clone, tmp_path / "elsewhere" / "ctir-es", tmp_path / "ci" / "linked"):
        monkeypatch.setattr(conftest, "__file__", str(root / "tests" / "conftest.py"))
        assert conftest._find_flipkart() == data.resolve(), root
    monkeypatch.setattr(conftest, "__file__", str(tmp_path / "alone" / "tests" / "conftest.py"))
    assert conftest._find_flipkart() is None
    monkeypatch.setenv("CTIR_ES_FLIPKART_DIR", str(tmp_path / "named"))
    assert conftest._find_flipkart() == tmp_path / "named"  # named: used as given (a wrong one fails)
