"""Generic JSONL reader, the shared line guards, the reader registry and the bundled sample."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctir_es.errors import ConfigError, SourceError
from ctir_es.ingest.readers import READERS, get_reader, read_flipkart, read_jsonl, read_xmarket
from ctir_es.ingest.readers._lines import MAX_LINE_BYTES, iter_lines
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path


def _good(i: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"p{i}",
        "title": f"Product {i}",
        "categories": [["Kitchen", "Cookware"]],
        **extra,
    }


def _write(path: Path, lines: list[bytes | str]) -> Path:
    raw = b"".join((ln.encode() if isinstance(ln, str) else ln) + b"\n" for ln in lines)
    path.write_bytes(raw)
    return path


def _read(path: Path) -> tuple[list, IngestReport]:
    report = IngestReport()
    return list(read_jsonl(path, report)), report


def test_valid_records_and_image_paths_resolved(tmp_path: Path) -> None:
    sub = tmp_path / "cat"
    sub.mkdir()
    rec = _good(1, images=["img/a.jpg", "https://x.test/b.jpg", "/abs/c.jpg"], market="US")
    products, report = _read(_write(sub / "c.jsonl", [json.dumps(rec)]))
    assert report.read == 1 and report.rejected_total == 0
    (p,) = products
    assert p.images == (str(sub / "img" / "a.jpg"), "https://x.test/b.jpg", "/abs/c.jpg")
    assert p.categories == (("Kitchen", "Cookware"),) and p.market == "us"


def test_bad_lines_are_rejected_with_line_numbers_and_reading_goes_on(tmp_path: Path) -> None:
    lines: list[bytes | str] = [
        json.dumps(_good(1)),
        "{not json",
        "",
        "[1, 2]",
        json.dumps({"title": "no id"}),
        json.dumps({"id": "x"}),
        json.dumps(_good(2, categories=[[1, 2]])),
        json.dumps(_good(3, attributes=["a"])),
        b'{"id": "u", "title": "bad \xff utf8"}',
        "[" * 100_000,
        "   ",
        json.dumps(_good(4)),
    ]
    products, report = _read(_write(tmp_path / "f.jsonl", lines))
    assert [p.id for p in products] == ["p1", "p4"]
    assert report.read == 10  # blank lines are not records
    assert report.read == len(products) + report.rejected_total
    where = {r.location: r.reason for r in report.rejections}
    assert where == {
        "f.jsonl:2": "invalid_json",
        "f.jsonl:4": "not_an_object",
        "f.jsonl:5": "missing_id",
        "f.jsonl:6": "missing_title",
        "f.jsonl:7": "bad_category",
        "f.jsonl:8": "bad_type",
        "f.jsonl:9": "invalid_utf8",
        "f.jsonl:10": "too_deep",
    }


def test_over_long_line_is_skipped_and_counted(tmp_path: Path) -> None:
    huge = json.dumps(_good(9, description="x" * (MAX_LINE_BYTES + 10)))
    path = _write(tmp_path / "big.jsonl", [json.dumps(_good(1)), huge, json.dumps(_good(2))])
    products, report = _read(path)
    assert [p.id for p in products] == ["p1", "p2"]
    assert report.rejected == {"line_too_long": 1}
    assert report.rejections[0].location == "big.jsonl:2"


def test_line_limit_boundary(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.txt", ["a" * 8, "b" * 9, "c" * 8])
    report = IngestReport()
    assert list(iter_lines(path, report, max_line_bytes=8)) == [(1, "a" * 8), (3, "c" * 8)]
    assert report.rejected == {"line_too_long": 1} and report.read == 3
    # the last line without a newline, exactly at the limit, is fine
    path.write_bytes(b"x" * 8)
    assert list(iter_lines(path, IngestReport(), max_line_bytes=8)) == [(1, "x" * 8)]


def test_gzip_is_transparent_and_bom_stripped(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress(("\ufeff" + json.dumps(_good(1)) + "\n").encode()))
    products, report = _read(path)
    assert [p.id for p in products] == ["p1"] and report.rejected_total == 0


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    body = "".join(
        json.dumps(_good(i, description="word " * 50)) + "\n" for i in range(2000)
    ).encode()
    blob = gzip.compress(body)
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    products, report = _read(path)
    assert 0 < len(products) < 2000
    assert [p.id for p in products] == [f"p{i}" for i in range(len(products))]
    assert report.rejected == {"truncated_gzip": 1}
    assert report.read == len(products) + 1
    assert any("truncated" in m for m in report.messages)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 20)
    products, report = _read(path)
    assert products == [] and report.rejected == {"corrupt_gzip": 1}


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        list(read_jsonl(tmp_path / "nope.jsonl", IngestReport()))


def test_registry() -> None:
    assert READERS == {"jsonl": read_jsonl, "xmarket": read_xmarket, "flipkart": read_flipkart}
    assert get_reader("xmarket") is read_xmarket
    with pytest.raises(ConfigError, match="supported: jsonl, xmarket, flipkart"):
        get_reader("csv")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_never_crash(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    products, report = _read(path)
    assert report.read == len(products) + report.rejected_total


def test_bundled_sample_reads_cleanly() -> None:
    path = sample_path()
    products, report = _read(path)
    assert len(products) == 280 and report.rejected_total == 0
    assert all(Path(p.images[0]).is_file() for p in products)
    assert all(p.images[0].startswith(str(path.parent / "images")) for p in products)
    tops = {p.categories[0][0] for p in products}
    assert len(tops) == 7
    cookware = [p for p in products if p.categories[0][:2] == ("Kitchen & Dining", "Cookware")]
    assert len(cookware) == 27
    size = sum(f.stat().st_size for f in path.parent.rglob("*") if f.is_file())
    assert size < 3_000_000
    assert (path.parent / "README.md").read_text().count("CC BY-SA 4.0") >= 1
