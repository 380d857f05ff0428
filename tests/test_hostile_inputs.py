"""Hostile catalogues: every bad input has a documented outcome, and the ingest always finishes.

Each case goes through the real ingest (reader -> image loader -> pipeline -> embedded store)
next to good records, and checks (1) the named rejection or missing-image reason, (2) that
the good records were indexed. The outcomes are tabled in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import http.server
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ctir_es.config import Settings
from ctir_es.ingest.pipeline import IngestOptions
from ctir_es.ingest.report import IngestReport
from ctir_es.ingest.run import ingest_catalogue
from ctir_es.store.embedded import EmbeddedStore

GOOD = [{"id": f"good-{i}", "title": f"good product {i}", "categories": [["Home", "Kitchen"]]} for i in range(3)]


def ingest(tmp_path: Path, kind: str, source: Path, timeout: float = 10.0) -> tuple[IngestReport, EmbeddedStore]:
    settings = Settings(store=tmp_path / "store.db", cache_dir=tmp_path / "cache", clip_weights="none",
                        image_timeout=timeout, allow_private_images=True)  # image servers are on 127.0.0.1
    report = ingest_catalogue(kind, source, settings, text_encoder=None, image_encoder=None,
                              options=IngestOptions(batch_size=4))
    return report, EmbeddedStore(settings.store)


def write_jsonl(path: Path, records: list[object], raw_lines: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    with path.open("wb") as f:
        for r in records:
            f.write(json.dumps(r).encode() + b"\n")
        for line in raw_lines:
            f.write(line + b"\n")
        for r in GOOD:
            f.write(json.dumps(r).encode() + b"\n")
    return path


def assert_good_indexed(store: EmbeddedStore) -> None:
    assert set(store.get([g["id"] for g in GOOD])) == {g["id"] for g in GOOD}


# -- records ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("case", "line", "reason"),
    [
        ("invalid UTF-8", b'{"id": "u1", "title": "caf\xe9 \xff\xfe"}', "invalid_utf8"),
        ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, "too_deep"),
        ("not JSON at all", b"<html>oops</html>", "invalid_json"),
        ("missing id", b'{"title": "no id"}', "missing_id"),
        ("missing title", b'{"id": "t1"}', "missing_title"),
        ("10,000-level category path", json.dumps(
            {"id": "deep", "title": "deep", "categories": [[f"L{i}" for i in range(10_000)]]}).encode(),
         "bad_category"),
    ],
)
def test_bad_jsonl_record(tmp_path: Path, case: str, line: bytes, reason: str) -> None:
    report, store = ingest(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", [], [line]))
    assert dict(report.rejected) == {reason: 1}, case
    assert report.rejections[0].location.endswith(":1")
    assert_good_indexed(store)
    assert store.count() == len(GOOD)


def test_fifty_megabyte_line(tmp_path: Path) -> None:
    huge = b'{"id": "huge", "title": "' + b"x" * 50_000_000 + b'"}'
    report, store = ingest(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", [], [huge]))
    assert dict(report.rejected) == {"line_too_long": 1}
    assert_good_indexed(store)


def test_python_literal_holding_code_is_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    source = tmp_path / "metadata_us_Home.json"
    source.write_text("\n".join([
        f"__import__('os').system('touch {marker}')",
        f"{{'asin': 'X1', 'title': (lambda: open('{marker}', 'w'))()}}",
        "{'asin': 'ok1', 'title': 'a fine kettle', 'categories': ['Home', 'Kettles']}",
    ]), encoding="utf-8")
    report, store = ingest(tmp_path, "xmarket", source)
    assert dict(report.rejected) == {"unsafe_literal": 2}
    assert not marker.exists()
    assert store.count() == 1


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    lines = b"".join(json.dumps({"id": f"z{i}", "title": f"zipped {i} " + "pad " * 50}).encode() + b"\n"
                     for i in range(2_000))
    data = gzip.compress(lines)
    source = tmp_path / "cut.jsonl.gz"
    source.write_bytes(data[: len(data) // 2])
    report, store = ingest(tmp_path, "jsonl", source)
    assert dict(report.rejected) == {"truncated_gzip": 1}
    assert 0 < store.count() < 2_000 and store.count() == report.indexed


def test_duplicate_ids_last_wins_and_are_counted(tmp_path: Path) -> None:
    records = [{"id": "dup", "title": "first title"}, {"id": "other", "title": "x"},
               {"id": "dup", "title": "second title"}]
    report, store = ingest(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", records))
    assert report.duplicates == 1
    assert store.get(["dup"])["dup"].product.title == "second title"
    assert store.count() == 2 + len(GOOD)


def test_empty_category_keeps_the_product_uncategorised(tmp_path: Path) -> None:
    records = [{"id": "e1", "title": "no category", "categories": []},
               {"id": "e2", "title": "blank levels", "categories": [["", "  "]]}]
    report, store = ingest(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", records))
    assert report.rejected_total == 0
    assert store.get(["e1", "e2"])["e2"].product.categories == ()


# -- images -----------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG whose header claims width x height (the pixels are never there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def image_files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """case -> (file name, expected missing-image reason)"""
    good = Image.new("RGB", (64, 48), (200, 30, 30))
    good.save(tmp_path / "ok.jpg")
    full = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "text.jpg").write_text("this is not a picture")
    (tmp_path / "bomb.png").write_bytes(png_header_only(20_000, 20_000))
    (tmp_path / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    return {
        "non-image file named .jpg": ("text.jpg", "not_an_image"),
        "truncated JPEG": ("truncated.jpg", "corrupt"),
        "20k x 20k PNG (decompression bomb)": ("bomb.png", "decompression_bomb"),
        "SVG": ("vector.svg", "not_an_image"),
        "file that does not exist": ("absent.jpg", "missing"),
    }


def test_bad_local_images_keep_the_product(tmp_path: Path) -> None:
    cases = image_files(tmp_path)
    records = [{"id": case, "title": case, "images": [name]} for case, (name, _) in cases.items()]
    records.append({"id": "fine", "title": "fine", "images": ["ok.jpg"]})
    report, store = ingest(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", records))
    assert report.rejected_total == 0 and store.count() == len(records) + len(GOOD)
    reasons = {ex.location: ex.reason for ex in report.image_examples}
    for case, (_, reason) in cases.items():
        assert reasons[case] == reason, case
    assert "fine" not in reasons
    assert store.get(["fine"])["fine"].image is not None
    assert store.get(["truncated JPEG"])["truncated JPEG"].image is None  # no image, still indexed


class _Hostile(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hang":
            time.sleep(30)  # accept the connection, never answer in time
            return
        if self.path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", f"/loop{len(self.path)}")
            self.end_headers()
            return
        self.send_response(404 if self.path == "/404" else 500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_hostile_image_urls_keep_the_product(tmp_path: Path, hostile_server: str) -> None:
    # a server that never answers runs out the whole-exchange deadline (issue 24: too_slow)
    cases = {"hangs": ("/hang", "too_slow"), "redirects forever": ("/loop", "unreachable"),
             "HTTP 404": ("/404", "http_error"), "HTTP 500": ("/500", "http_error")}
    records = [{"id": case, "title": case, "images": [hostile_server + path]} for case, (path, _) in cases.items()]
    start = time.monotonic()
    report, store = ingest(tmp_path, "jsonl", write_jsonl(tmp_path / "c.jsonl", records), timeout=1.0)
    assert time.monotonic() - start < 25  # a hanging server costs the timeout, not forever
    reasons = {ex.location: ex.reason for ex in report.image_examples if ex.reason != "no_image"}
    assert reasons == {case: reason for case, (_, reason) in cases.items()}
    assert report.images_missing["no_image"] == len(GOOD)  # products without any image reference
    assert store.count() == len(records) + len(GOOD)
