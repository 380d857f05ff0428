"""Hostile-input-safe line iteration shared by the line-oriented readers (JSONL, XMarket).

Why a helper: every line reader needs the same guards - transparent gzip, a cap on line
length that never holds a giant line whole, invalid UTF-8 rejected per line, and a
truncated or corrupt gzip stream that ends the file cleanly instead of the ingest.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ...errors import SourceError
from ..report import IngestReport

# A line longer than this is counted and skipped (read in chunks, never held whole).
MAX_LINE_BYTES = 10 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> IO[bytes]:
    """Open ``path`` for binary reading, gunzipping when the content (not the name) is gzip."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller's ``with``
    except FileNotFoundError as exc:
        raise SourceError(f"catalogue file not found: {path}") from exc
    except OSError as exc:
        raise SourceError(f"cannot open catalogue file {path}: {exc}") from exc
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def iter_lines(
    path: Path, report: IngestReport, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank, decodable line of ``path``.

    Every line that is not blank counts in ``report.read``; lines that cannot be read are
    rejected here (``line_too_long``, ``invalid_utf8``) and not yielded, so a reader only
    counts and rejects what it parses. A truncated / corrupt gzip stream is rejected once
    (``truncated_gzip`` / ``corrupt_gzip``) at the line where it broke, and the file ends
    there, keeping everything read before.
    """
    name = path.name
    lineno = 0
    with _open(path) as fh:
        while True:
            too_long = 0
            try:
                line = fh.readline(max_line_bytes + 1)
                if len(line) > max_line_bytes and not line.endswith(b"\n"):
                    too_long = len(line) + _skip_rest_of_line(fh, max_line_bytes)
            except EOFError as exc:  # gzip stream ends before its end-of-stream marker
                _stream_broken(report, name, lineno, "truncated_gzip", str(exc))
                return
            except (OSError, zlib.error) as exc:  # BadGzipFile, CRC / length mismatch, bad data
                _stream_broken(report, name, lineno, "corrupt_gzip", str(exc))
                return
            if not line:
                return
            lineno += 1
            if too_long:
                report.read += 1
                report.reject(
                    f"{name}:{lineno}",
                    "line_too_long",
                    f"{too_long:,} bytes (limit {max_line_bytes:,})",
                )
                continue
            if not line.strip():
                continue
            try:
                text = line.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as exc:
                report.read += 1
                report.reject(f"{name}:{lineno}", "invalid_utf8", str(exc))
                continue
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            report.read += 1
            yield lineno, text


def _stream_broken(report: IngestReport, name: str, lineno: int, reason: str, detail: str) -> None:
    """Count the record lost where a gzip stream broke (so read == yielded + rejected)."""
    report.read += 1
    report.reject(f"{name}:{lineno + 1}", reason, detail)
    report.message(f"{name}: gzip stream {reason.split('_')[0]}; kept the {lineno} lines before it")


def _skip_rest_of_line(fh: IO[bytes], chunk: int) -> int:
    """Discard the remainder of an over-long line in bounded chunks; return bytes skipped."""
    skipped = 0
    while True:
        part = fh.readline(chunk)  # gzip errors here propagate to the caller's next read
        skipped += len(part)
        if not part or part.endswith(b"\n"):
            return skipped
