"""ImageLoader on real files and a real local HTTP server: every failure has its reason."""

from __future__ import annotations

import hashlib
import io
import socket
import struct
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from ctir_es.errors import ImageError
from ctir_es.ingest.images import ImageLoader, decode


def _jpeg(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width x height`` pixels with (almost) no data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


JPEG = _jpeg()
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


def _reason(loader: ImageLoader, ref: str) -> str:
    with pytest.raises(ImageError) as info:
        loader.load(ref)
    return info.value.reason


# -- local files ---------------------------------------------------------------------------


def test_local_jpeg_and_file_url(tmp_path: Path) -> None:
    path = tmp_path / "a b.jpg"
    path.write_bytes(JPEG)
    loader = ImageLoader()
    for ref in (str(path), path.as_uri()):
        im = loader.load(ref)
        assert im.mode == "RGB" and im.size == (64, 48)
        r, g, _ = im.getpixel((10, 10))  # type: ignore[misc]
        assert r > 150 and g < 80


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "t.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert ImageLoader().load(str(path)).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("truncated.jpg", JPEG[: len(JPEG) // 2], "corrupt"),
        ("text.jpg", b"this is not an image at all\n", "not_an_image"),
        ("empty.jpg", b"", "not_an_image"),
        ("logo.svg", SVG, "not_an_image"),
        ("doc.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),
        ("bomb-warn.png", _png_header_only(10_000, 10_000), "decompression_bomb"),
        ("bomb.png", _png_header_only(30_000, 30_000), "decompression_bomb"),
    ],
)
def test_bad_files_have_reasons(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    filters_before = list(warnings.filters)
    assert _reason(ImageLoader(), str(path)) == reason
    assert warnings.filters == filters_before  # the bomb filter is not left behind


def test_missing_too_large_and_schemes(tmp_path: Path) -> None:
    loader = ImageLoader(max_bytes=1000)
    assert _reason(loader, str(tmp_path / "nope.jpg")) == "missing"
    assert _reason(loader, str(tmp_path)) == "missing"  # a directory
    assert _reason(loader, "") == "missing"
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg((400, 400)) + b"\0" * 2000)
    assert _reason(loader, str(big)) == "too_large"
    assert _reason(loader, "ftp://example.com/a.jpg") == "unsupported_scheme"
    assert _reason(loader, "data:image/png;base64,AAAA") == "unsupported_scheme"
    assert _reason(loader, "file://otherhost/a.jpg") == "unsupported_scheme"


def test_construction_does_no_io(tmp_path: Path) -> None:
    ImageLoader(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# -- HTTP ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[Counter[str]] = Counter()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(
        self, status: int, body: bytes, ctype: str = "image/jpeg", length: bool = True
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        n = self.hits[self.path]
        if self.path in ("/ok.jpg", "/ok2.jpg"):
            self._send(200, JPEG)
        elif self.path == "/404.jpg":
            self._send(404, b"not found", "text/plain")
        elif self.path == "/500.jpg":
            self._send(500, b"boom", "text/plain")
        elif self.path == "/flaky.jpg":
            self._send(503 if n == 1 else 200, b"busy" if n == 1 else JPEG)
        elif self.path == "/big.jpg":
            self._send(200, b"\xff" * 5000)
        elif self.path == "/stream-big.jpg":  # no Content-Length: the cap must stop the read
            self._send(200, b"\xff" * 5000, length=False)
        elif self.path == "/page.jpg":
            self._send(200, b"<!DOCTYPE html><html><body>gone</body></html>", "text/html")
        elif self.path == "/logo.svg":
            self._send(200, SVG, "image/svg+xml")
        else:
            self._send(404, b"", "text/plain")


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_ok_is_cached_by_url_hash(server: str, tmp_path: Path) -> None:
    loader = ImageLoader(cache_dir=tmp_path / "cache", allow_private=True)  # the server is on 127.0.0.1
    url = f"{server}/ok.jpg"
    assert loader.load(url).size == (64, 48)
    digest = hashlib.sha256(url.encode()).hexdigest()
    cached = tmp_path / "cache" / digest[:2] / digest
    assert cached.read_bytes() == JPEG
    assert loader.load(url).size == (64, 48)
    assert _Handler.hits["/ok.jpg"] == 1  # the second load came from the cache
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_http_failures(server: str) -> None:
    loader = ImageLoader(retries=2, max_bytes=1000, allow_private=True)
    assert _reason(loader, f"{server}/404.jpg") == "http_error"
    assert _Handler.hits["/404.jpg"] == 1  # 4xx is not retried
    assert _reason(loader, f"{server}/500.jpg") == "http_error"
    assert _Handler.hits["/500.jpg"] == 3  # 5xx is retried
    assert loader.load(f"{server}/flaky.jpg").size == (64, 48)
    assert _reason(loader, f"{server}/big.jpg") == "too_large"
    assert _reason(loader, f"{server}/stream-big.jpg") == "too_large"
    assert _reason(loader, f"{server}/page.jpg") == "not_an_image"
    assert _reason(loader, f"{server}/logo.svg") == "not_an_image"


def test_unreachable_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    start = time.monotonic()
    assert (
        _reason(ImageLoader(retries=1, timeout=2, allow_private=True), f"http://127.0.0.1:{port}/a.jpg")
        == "unreachable"
    )
    assert time.monotonic() - start < 3


def test_load_many_aligns_results_with_input(server: str, tmp_path: Path) -> None:
    good = tmp_path / "g.jpg"
    good.write_bytes(JPEG)
    refs = [
        str(good),
        str(tmp_path / "missing.jpg"),
        f"{server}/ok.jpg",
        f"{server}/404.jpg",
        f"{server}/ok2.jpg",
    ]
    results = ImageLoader(allow_private=True).load_many(refs, workers=3)
    assert [r.reason if isinstance(r, ImageError) else r.size for r in results] == [
        (64, 48),
        "missing",
        (64, 48),
        "http_error",
        (64, 48),
    ]
    lazy = ImageLoader(allow_private=True).iter_load(iter(refs), workers=2, prefetch=2)
    assert [isinstance(r, Image.Image) for r in lazy] == [True, False, True, False, True]


def test_decode_accepts_common_modes() -> None:
    for mode, fmt in [
        ("L", "PNG"),
        ("P", "GIF"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("RGBA", "WEBP"),
    ]:
        buf = io.BytesIO()
        Image.new(mode, (5, 5)).save(buf, fmt)
        assert decode(buf.getvalue()).mode == "RGB"
