"""XMarket reader: Python-literal lines parsed without eval, field mapping, files and folders."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from ctir_es.errors import SourceError
from ctir_es.ingest.readers import read_xmarket
from ctir_es.ingest.readers.xmarket import MALFORMED_IMG_NOTE, best_image, market_of
from ctir_es.ingest.report import IngestReport

DATA = Path(__file__).parent / "data" / "xmarket"
FIXTURE = DATA / "metadata_us_Electronics.json"
PWNED = Path("/tmp/ctir_es_pwned_fixture")


def _read(source: object, market: str | None = None) -> tuple[dict, IngestReport]:
    report = IngestReport()
    products = {p.id: p for p in read_xmarket(source, report, market=market)}  # type: ignore[arg-type]
    return products, report


def test_fixture_maps_fields_and_rejects_code() -> None:
    PWNED.unlink(missing_ok=True)
    products, report = _read(FIXTURE)
    assert not PWNED.exists(), "a line was executed"
    assert set(products) == {"B000ANT01", "B000ANT02", "B000BADIMG", "B000NOIMG"}
    assert report.read == 6  # the blank line is not a record
    assert {(r.location, r.reason) for r in report.rejections} == {
        ("metadata_us_Electronics.json:3", "unsafe_literal"),
        ("metadata_us_Electronics.json:4", "missing_title"),
    }
    ant = products["B000ANT01"]
    assert ant.market == "us"
    assert ant.categories == (
        (
            "Electronics",
            "Accessories & Supplies",
            "Audio & Video Accessories",
            "Antennas",
            "Radio Antennas",
        ),
    )
    assert ant.images == ("https://m.media-amazon.com/images/I/large.jpg",)
    assert ant.description == "A T-shaped dipole. Pin it to a wall."
    assert ant.attributes == {
        "Item Weight": "2.4 ounces",
        "Manufacturer": "Acme",
        "Rank": "12345",
        "Features": "75 ohm F connector | Works with any FM receiver",
    }
    assert products["B000ANT02"].images == ("https://m.media-amazon.com/images/I/hdtv.jpg",)
    assert products["B000BADIMG"].images == () and report.notes[MALFORMED_IMG_NOTE] == 1
    assert products["B000NOIMG"].images == () and products["B000NOIMG"].categories == ()


@pytest.mark.parametrize(
    "line",
    [
        "__import__('os').system('touch /tmp/ctir_es_pwned_fixture')",
        "(lambda: __import__('os').system('touch /tmp/ctir_es_pwned_fixture'))()",
        "{'asin': open('/etc/passwd').read(), 'title': 'x'}",
        "{'asin': 'A1', 'title': [c for c in ().__class__.__base__.__subclasses__()]}",
        "exec('import os')",
    ],
)
def test_code_is_never_executed(tmp_path: Path, line: str) -> None:
    PWNED.unlink(missing_ok=True)
    path = tmp_path / "metadata_us_Toys.json"
    path.write_text(line + "\n{'asin': 'OK1', 'title': 'After'}\n")
    products, report = _read(path)
    assert list(products) == ["OK1"]
    assert report.rejected == {"unsafe_literal": 1}
    assert not PWNED.exists()


def test_garbage_and_deep_nesting_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "metadata_de_Books.json"
    lines = [
        "{'asin': 'A'",
        "[" * 50_000,
        "(" * 1000 + ")" * 1000,
        "['a', 'b']",
        "{'asin': 'Z', 'title': 'ok'}",
    ]
    path.write_text("\n".join(lines) + "\n")
    products, report = _read(path)
    assert list(products) == ["Z"] and products["Z"].market == "de"
    assert report.read == 5 and report.rejected_total == 4
    assert report.rejected["not_an_object"] == 1


def test_market_argument_overrides_file_name() -> None:
    products, _ = _read(FIXTURE, market="UK")
    assert {p.market for p in products.values()} == {"uk"}


def test_directory_reads_plain_and_gz_sorted_and_ignores_others(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / FIXTURE.name)
    (tmp_path / "fr").mkdir()
    line = json.dumps({"asin": "FR1", "title": "Cafetière", "imgUrl": {}})
    (tmp_path / "fr" / "metadata_fr_Home_and_Kitchen.json.gz").write_bytes(
        gzip.compress(line.encode())
    )
    (tmp_path / "reviews_us_Electronics.json").write_text('{"asin": "R", "title": "review"}\n')
    (tmp_path / "metadata_us_Books.json.gz.part").write_text("partial")
    report = IngestReport()
    products = list(read_xmarket(tmp_path, report))
    # sorted by path: fr/metadata_fr_... comes before metadata_us_...
    assert products[0].id == "FR1" and products[0].market == "fr"
    assert len(products) == 5 and "R" not in {p.id for p in products}


def test_missing_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        list(read_xmarket(tmp_path / "nope.json.gz", IngestReport()))
    with pytest.raises(SourceError, match="no metadata_"):
        list(read_xmarket(tmp_path, IngestReport()))


def test_market_of() -> None:
    assert market_of(Path("metadata_us_Electronics.json.gz")) == "us"
    assert market_of(Path("metadata_IN_Home_and_Kitchen.json")) == "in"
    assert market_of(Path("products.json")) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"https://a/1.jpg": [10, 10], "https://a/2.jpg": [20, 5], "https://a/3.jpg": [11, 11]}',
            ("https://a/3.jpg", False),
        ),
        ({"https://a/1.jpg": [10, 10], "https://a/2.jpg": "?"}, ("https://a/1.jpg", False)),
        ("{'https://a/1.jpg': [1, 2]}", ("https://a/1.jpg", False)),
        ("https://a/plain.jpg", ("https://a/plain.jpg", False)),
        (["https://a/x.jpg"], ("https://a/x.jpg", False)),
        (
            {"https://a/huge.jpg": [10**400, 1], "https://a/ok.jpg": [2, 2]},
            ("https://a/ok.jpg", False),
        ),
        ("", (None, False)),
        (None, (None, False)),
        ({}, (None, False)),
        ("{broken", (None, True)),
        ({"javascript:alert(1)": [9, 9]}, (None, True)),
        (42, (None, True)),
    ],
)
def test_best_image(raw: object, expected: tuple[str | None, bool]) -> None:
    assert best_image(raw) == expected


def test_truncated_gz_file_ends_cleanly_and_the_next_file_is_read(tmp_path: Path) -> None:
    body = "".join(repr({"asin": f"A{i}", "title": f"Item {i} " * 20}) + "\n" for i in range(3000))
    blob = gzip.compress(body.encode())
    (tmp_path / "metadata_au_Books.json.gz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "metadata_ca_Books.json").write_text(repr({"asin": "C1", "title": "Canada"}) + "\n")
    products, report = _read(tmp_path)
    assert "C1" in products and 0 < len(products) - 1 < 3000
    assert report.rejected == {"truncated_gzip": 1}
    assert report.read == len(products) + 1
