"""HTTP download of catalogue files with an on-disk cache and resume of partial files.

Why: XMarket metadata files are large and the host is slow; a finished file is reused, an
interrupted one resumes from its ``.part`` with a ``Range`` request, and the final name
appears only by an atomic rename once complete. Without a network the call fails in
seconds (short connect timeout, no retries on connect errors) and says how to use a local
copy instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from requests.exceptions import ChunkedEncodingError

from ..errors import SourceError

XMARKET_BASE = "https://ciir.cs.umass.edu/downloads/XMarket/FULL"
LOCAL_HINT = "pass --source FILE_OR_DIR to read a local copy"
CHUNK = 1 << 16
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def xmarket_url(market: str, category: str) -> str:
    """URL of one XMarket metadata file, e.g. ``("us", "Electronics")``."""
    return f"{XMARKET_BASE}/{market}/{category}/metadata_{market}_{category}.json.gz"


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where ``url`` is cached: ``cache_dir/<sha256 prefix>/<file name from the URL>``.

    The file name is kept (readers take the market from it); the hash keeps two URLs with
    the same name apart.
    """
    name = (
        _SAFE_NAME.sub("_", unquote(urlsplit(url).path.rsplit("/", 1)[-1])).strip("._")
        or "download"
    )
    return Path(cache_dir) / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def download(
    url: str,
    cache_dir: str | Path,
    timeout: float = 30.0,
    retries: int = 3,
    *,
    connect_timeout: float = 5.0,
    progress: Progress | None = None,
    session: requests.Session | None = None,
) -> Path:
    """Fetch ``url`` into the cache (or reuse the complete cached copy) and return its path.

    Retries (with a short backoff, resuming each time) only on 429/5xx and on a transfer
    cut mid-body; a failure to connect at all is raised at once as ``SourceError``.
    """
    target = cache_path(url, Path(cache_dir))
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"cannot create the download cache {target.parent}: {exc}") from exc
    http = session or requests.Session()
    try:
        for attempt in range(retries + 1):
            try:
                if _fetch(http, url, part, (min(connect_timeout, timeout), timeout), progress):
                    os.replace(part, target)
                    return target
                why = "the transfer ended before the expected size"
            except _Unreachable as exc:
                raise _fail(url, f"cannot connect ({exc})") from exc.__cause__
            except _Retryable as exc:
                why = str(exc)
            except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
                why = _short(exc)  # cut mid-body: the next attempt resumes from the .part
            if attempt < retries:
                time.sleep(min(0.25 * 2**attempt, 2.0))
        raise _fail(url, f"gave up after {retries + 1} attempts: {why}")
    except requests.RequestException as exc:
        raise _fail(url, _short(exc)) from exc
    except OSError as exc:  # disk full, permissions: not a network problem
        raise SourceError(f"cannot write {part}: {exc}") from exc
    finally:
        if session is None:
            http.close()


class _Unreachable(Exception):
    """No response at all (DNS failure, refused, connect timeout): not worth retrying."""


class _Retryable(Exception):
    """A response worth retrying (429 / 5xx)."""


def _fetch(
    http: requests.Session,
    url: str,
    part: Path,
    timeout: tuple[float, float],
    progress: Progress | None,
) -> bool:
    """One attempt: resume ``part`` if present. True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    headers = (
        {"Range": f"bytes={have}-", "Accept-Encoding": "identity"}
        if have
        else {"Accept-Encoding": "identity"}
    )
    try:
        resp = http.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.ConnectionError as exc:  # DNS, refused, connect timeout (a ReadTimeout
        raise _Unreachable(_short(exc)) from exc  # waiting for headers is retried instead)
    with resp:
        if resp.status_code == 416 and have:  # nothing left to send: complete, or stale part
            total = _total_from_content_range(resp.headers.get("Content-Range", ""))
            if total == have:
                return True
            part.unlink()
            return False
        if resp.status_code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise SourceError(
                f"cannot download {url}: HTTP {resp.status_code} {resp.reason}; {LOCAL_HINT}"
            )
        if resp.status_code == 206 and have:
            start = _start_from_content_range(resp.headers.get("Content-Range", ""))
            if start != have:  # a range we did not ask for: start over
                part.unlink()
                return False
            mode, done = "ab", have
            total = _total_from_content_range(resp.headers.get("Content-Range", ""))
        else:  # 200: the server ignored Range (or there was nothing to resume)
            mode, done = "wb", 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, mode) as out:
            for chunk in resp.iter_content(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
    return total is None or done == total


def _start_from_content_range(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)", value)
    return int(m.group(1)) if m else None


def _total_from_content_range(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(?:\d+-\d+|\*)/(\d+)", value)
    return int(m.group(1)) if m else None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _fail(url: str, why: str) -> SourceError:
    return SourceError(f"cannot download {url}: {why}. With no network, {LOCAL_HINT}")
