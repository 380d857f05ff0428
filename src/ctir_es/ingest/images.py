"""Load product images from local paths, ``file://`` and ``http(s)://`` URLs, defensively.

Why so careful: catalogue images are untrusted bytes from the web. Downloads are capped
(``max_bytes``, streamed), decoding only accepts common raster formats (no EPS, which
Pillow hands to Ghostscript), Pillow's decompression-bomb limit is kept and its warning is
an error too, and every failure is an ``ImageError`` with a stable ``reason`` so the
ingest can keep the product, text-only, and report why:

``missing``, ``unreachable``, ``http_error``, ``not_an_image``, ``corrupt``,
``too_large``, ``decompression_bomb``, ``unsupported_scheme``, ``too_slow`` (the download
missed its total deadline), ``host_failing`` (not tried: the host's last downloads all failed),
``budget_exhausted`` (not tried: the ingest's download byte budget is spent), ``refused`` (the
URL's host, or a redirect's, is a loopback, private, link-local, multicast, reserved or
unspecified address: see ``addresses.py``; ``allow_private=True`` lifts this for intranet
catalogues).

Bounds: each download gets ``deadline`` seconds in all (connect, headers, redirects and body),
however the server drips its bytes (the socket timeout only bounds one read; ``watchdog.py``
cuts the socket at the deadline), and ``max_bytes``; one loader (one ingest) downloads
at most ``max_total_bytes``, and after ``host_failure_limit`` consecutive failed downloads
from one host it stops asking that host.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import numpy as np
import requests
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError
from requests.exceptions import ChunkedEncodingError

from ..errors import ImageError, described
from .addresses import (
    AddressPolicy,
    AddressRefused,
    Resolver,
    allow_all,
    default_policy,
    guarded_session,
    resolve,
)
from .watchdog import Deadline
from .watchdog import deadline as watch_deadline

# Raster formats product photos come in; anything else is "not_an_image".
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_USER_AGENT = "ctir-es image loader (+https://github.com/ctir-es)"
# warnings.catch_warnings swaps process-wide state: serialise our header parsing under it.
_OPEN_LOCK = threading.Lock()

LoadResult = Image.Image | ImageError


class ImageLoader:
    """Fetch and decode images to RGB; optional on-disk cache for URLs. Construction does no I/O."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        timeout: float = 10,
        retries: int = 2,
        max_bytes: int = 20_000_000,
        deadline: float | None = None,
        max_total_bytes: int = 50 * 1024**3,
        host_failure_limit: int = 8,
        *,
        allow_private: bool = False,
        address_policy: AddressPolicy | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        """``allow_private``: also fetch from loopback, private and link-local addresses (an
        intranet catalogue); off, those are refused. ``address_policy`` / ``resolver`` replace
        the rule and the DNS lookup (tests)."""
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.timeout = timeout
        self.retries = retries
        self.max_bytes = max_bytes
        self.deadline = deadline if deadline is not None else 3 * timeout  # seconds per image, retries included
        self.max_total_bytes = max_total_bytes
        self.host_failure_limit = host_failure_limit
        self._local = threading.local()  # one requests.Session per worker thread
        self._budget_lock = threading.Lock()
        self._downloaded = 0
        self._host_failures: dict[str, int] = {}
        self.address_policy: AddressPolicy = address_policy or (allow_all if allow_private else default_policy)
        self.resolver = resolver

    # -- public -----------------------------------------------------------------------
    def load(self, ref: str) -> Image.Image:
        """The fully decoded RGB image at ``ref``; raises ``ImageError(reason, detail)``."""
        return decode(self.fetch(ref), max_bytes=self.max_bytes)

    def fetch(self, ref: str) -> bytes:
        """The raw bytes at ``ref`` (at most ``max_bytes``), from the cache when possible."""
        if not isinstance(ref, str) or not ref.strip():
            raise ImageError("missing", "empty image reference")
        ref = ref.strip()
        parts = urlsplit(ref)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch_url(ref)
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ImageError("unsupported_scheme", f"remote file URL {ref[:200]}")
            return self._read_file(Path(url2pathname(unquote(parts.path))))
        if scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
            return self._read_file(Path(ref).expanduser())
        raise ImageError(
            "unsupported_scheme", f"{scheme}: is not supported (use a path or http(s) URL)"
        )

    def load_many(self, refs: Iterable[str], workers: int = 4) -> list[LoadResult]:
        """Load ``refs`` in a thread pool; results (image or ``ImageError``) align with input."""
        return list(self.iter_load(refs, workers=workers, prefetch=None))

    def iter_load(
        self, refs: Iterable[str], workers: int = 4, prefetch: int | None = 32
    ) -> Iterator[LoadResult]:
        """Like ``load_many`` but lazy, in input order, with at most ``prefetch`` in flight,
        so a pipeline can decode the next batch while it encodes this one."""
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ctir-img")
        pending: deque[Future[LoadResult]] = deque()
        try:
            for ref in refs:
                pending.append(pool.submit(self._load_result, ref))
                if prefetch is not None and len(pending) >= max(prefetch, 1):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # also when the consumer stops early: drop what has not started
            pool.shutdown(wait=True, cancel_futures=True)

    # -- sources ------------------------------------------------------------------------
    def _load_result(self, ref: str) -> LoadResult:
        try:
            return self.load(ref)
        except ImageError as exc:
            return exc

    def _read_file(self, path: Path) -> bytes:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ImageError("missing", f"no such file: {path}") from None
        except (OSError, ValueError) as exc:  # permissions, NUL in the name, name too long
            raise ImageError("missing", f"cannot access {path}: {exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("missing", f"not a regular file: {path}")
        if st.st_size > self.max_bytes:
            raise ImageError("too_large", f"{st.st_size:,} bytes > {self.max_bytes:,}: {path}")
        try:
            with open(path, "rb") as fh:
                return fh.read(self.max_bytes + 1)
        except OSError as exc:
            raise ImageError("missing", f"cannot read {path}: {exc}") from None

    def cache_path(self, url: str) -> Path | None:
        """Where a downloaded ``url`` is (or would be) cached; None without a cache. The
        service serves images of remote products from here."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_dir / digest[:2] / digest

    def _fetch_url(self, url: str) -> bytes:
        cached = self.cache_path(url)
        if cached is not None and cached.is_file():
            try:
                return cached.read_bytes()
            except OSError:
                pass  # unreadable cache entry: fetch again
        data = self._download(url)
        if cached is not None:
            _write_atomic(cached, data)
        return data

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            # every request and redirect hop is resolved once, checked, and pinned to that address
            session = guarded_session(self.address_policy, self.resolver, headers={"User-Agent": _USER_AGENT})
            self._local.session = session
        return session

    def _download(self, url: str) -> bytes:
        """GET under the per-host, per-ingest and per-image bounds (see the module docstring)."""
        host = (urlsplit(url).hostname or "").lower()
        with self._budget_lock:
            if self._downloaded >= self.max_total_bytes:
                raise ImageError("budget_exhausted", f"this ingest already downloaded {self._downloaded:,} bytes "
                                                     f"(limit {self.max_total_bytes:,}): {url[:200]}")
            if self._host_failures.get(host, 0) >= self.host_failure_limit:
                raise ImageError("host_failing", f"the last {self.host_failure_limit} downloads from {host} "
                                                 f"failed; not asking it again: {url[:200]}")
        try:
            data = self._download_with_retries(url, time.monotonic() + self.deadline)
        except ImageError as exc:
            if exc.reason in ("unreachable", "too_slow"):
                with self._budget_lock:
                    self._host_failures[host] = self._host_failures.get(host, 0) + 1
            raise
        with self._budget_lock:
            self._host_failures.pop(host, None)
            self._downloaded += len(data)
        return data

    def _download_with_retries(self, url: str, deadline: float) -> bytes:
        """GET with retries (short backoff) on connection errors and 429/5xx only, all before
        ``deadline`` (a ``time.monotonic()`` value): the whole exchange, headers and redirects
        included (``watchdog.deadline`` cuts the socket when it passes)."""
        with watch_deadline(deadline) as watch:
            return self._download_attempts(url, deadline, watch)

    def _download_attempts(self, url: str, deadline: float, watch: Deadline) -> bytes:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            left = deadline - time.monotonic()
            if left <= 0:  # earlier attempts found no server answering in time
                raise ImageError("unreachable", f"no answer within {self.deadline:g} s: {url[:200]}")
            timeout = (min(self.timeout, 5.0, left), min(self.timeout, left))
            try:
                with self._session().get(url, stream=True, timeout=timeout) as resp:
                    if watch.expired:  # the headers were cut short at the deadline
                        raise ImageError("too_slow", f"no complete answer within {self.deadline:g} s: "
                                                     f"{url[:200]}")
                    if resp.status_code in _RETRY_STATUS and not last:
                        _backoff(attempt)
                        continue
                    if resp.status_code >= 400:
                        raise ImageError("http_error", f"HTTP {resp.status_code} for {url[:200]}")
                    return self._read_capped(resp, url, deadline)
            except AddressRefused as exc:  # never retried, never counted against the host
                raise ImageError("refused", f"{exc.reason} for {url[:200]}") from None
            except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
                if time.monotonic() >= deadline:  # cut by the watchdog, or the last read ran out
                    raise ImageError("too_slow", f"no complete answer within {self.deadline:g} s: "
                                                 f"{url[:200]}") from None
                if last:
                    raise ImageError("unreachable", f"{url[:200]}: {str(exc)[:200]}") from None
                _backoff(attempt)
            except requests.RequestException as exc:  # bad URL, redirect loop, ...
                raise ImageError("unreachable", f"{url[:200]}: {str(exc)[:200]}") from None
        raise ImageError(
            "unreachable", url[:200]
        )  # not reached: the last attempt returns or raises

    def _read_capped(self, resp: requests.Response, url: str, deadline: float) -> bytes:
        """The body, at most ``max_bytes``, complete before ``deadline``. Reads return what one
        ``recv`` brought (``read1``), and the socket timeout shrinks to the time left, so a
        server dripping a byte every few seconds cannot stretch the download."""
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise ImageError(
                "too_large", f"{int(length):,} bytes > {self.max_bytes:,}: {url[:200]}"
            )
        raw = resp.raw
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        buf = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ImageError("too_slow", f"{len(buf):,} bytes after {self.deadline:g} s: {url[:200]}")
            if sock is not None:
                sock.settimeout(max(0.01, min(self.timeout, left)))
            try:
                chunk = raw.read1(1 << 16, decode_content=True)
            except (urllib3.exceptions.ReadTimeoutError, TimeoutError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise ImageError("too_slow", f"{len(buf):,} bytes after {self.deadline:g} s: "
                                                 f"{url[:200]}") from None
                raise requests.ConnectionError(str(exc)) from None
            except urllib3.exceptions.HTTPError as exc:  # cut mid-body, bad chunking, bad gzip
                raise ChunkedEncodingError(str(exc)) from None
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > self.max_bytes:
                raise ImageError("too_large", f"more than {self.max_bytes:,} bytes: {url[:200]}")


def decode(data: bytes, *, max_bytes: int | None = None) -> Image.Image:
    """Bytes -> fully decoded RGB image (transparency flattened on white, EXIF rotation applied)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError("too_large", f"{len(data):,} bytes > {max_bytes:,}")
    if not data.strip():
        raise ImageError("not_an_image", "empty file")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decompression_bomb", str(exc)[:200]) from None
    except UnidentifiedImageError:
        raise ImageError(
            "not_an_image", f"not a {'/'.join(ALLOWED_FORMATS)} image{_sniff(data)}"
        ) from None
    except MemoryError:
        raise ImageError("too_large", "image header does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure on hostile bytes
        raise ImageError("corrupt", described(exc)) from None
    limit = Image.MAX_IMAGE_PIXELS
    width, height = im.size
    if limit and width * height > limit:
        raise ImageError("decompression_bomb", f"{width}x{height} pixels > {limit:,}")
    try:
        return _to_rgb(im)
    except MemoryError:
        raise ImageError("too_large", f"{width}x{height} does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - truncated data, bad chunks, unsupported modes
        raise ImageError("corrupt", described(exc)) from None


def _to_rgb(im: Image.Image) -> Image.Image:
    im.load()
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grey: scale into 8 bits first
        grey = np.asarray(im, dtype=np.float64)
        peak = float(grey.max()) if grey.size else 0.0
        if peak > 255:
            grey = grey * (255.0 / peak)
        im = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    return im.convert("RGB")


def _sniff(data: bytes) -> str:
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:2048].lower()):
        return " (SVG is not supported)"
    if head.startswith((b"<!doctype html", b"<html")):
        return " (an HTML page)"
    return ""


def _backoff(attempt: int) -> None:
    time.sleep(min(0.2 * 2**attempt, 2.0))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write the cache entry via a temp file + rename; a failed cache write is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass
