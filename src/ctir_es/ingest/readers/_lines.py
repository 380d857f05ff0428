"""Hostile-input-safe line iteration shared by the line-oriented readers (JSONL, XMarket).

Why a helper: every line reader needs the same guards - transparent gzip, a cap on line
length that never holds a giant line whole, invalid UTF-8 rejected per line, a truncated or
corrupt gzip stream that ends the file cleanly instead of the ingest, and bounds on what a
small file may cost: a run of blank lines (a gzip of a billion newlines is 1 MB) and the
decompressed size, absolute and relative to the compressed size (a gzip bomb). Hitting one
stops reading that file, keeps every record before it, and is reported (``blank_run`` /
``gzip_bomb``) with a one-line message.
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
# Consecutive blank lines after which a file is not a catalogue any more.
MAX_BLANK_RUN = 10_000
# Decompressed bytes a gzip file may expand to, and its largest expansion ratio once past
# RATIO_GRACE bytes (catalogue JSON compresses 5-15x; runs of one byte compress ~1000x).
MAX_DECOMPRESSED_BYTES = 64 * 1024**3
MAX_GZIP_RATIO = 200
RATIO_GRACE = 64 * 1024**2
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> tuple[IO[bytes], IO[bytes] | None]:
    """Open ``path`` for binary reading, gunzipping when the content (not the name) is gzip;
    also returns the compressed file (None when not gzip), to measure the expansion."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller's ``with``
    except FileNotFoundError as exc:
        raise SourceError(f"catalogue file not found: {path}") from exc
    except OSError as exc:
        raise SourceError(f"cannot open catalogue file {path}: {exc}") from exc
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
    return raw, None


def iter_lines(
    path: Path,
    report: IngestReport,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_blank_run: int = MAX_BLANK_RUN,
    max_decompressed: int = MAX_DECOMPRESSED_BYTES,
    max_ratio: float = MAX_GZIP_RATIO,
    ratio_grace: int = RATIO_GRACE,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank, decodable line of ``path``.

    Every line that is not blank counts in ``report.read``; lines that cannot be read are
    rejected here (``line_too_long``, ``invalid_utf8``) and not yielded, so a reader only
    counts and rejects what it parses. A truncated / corrupt gzip stream is rejected once
    (``truncated_gzip`` / ``corrupt_gzip``) at the line where it broke, and the file ends
    there, keeping everything read before. A run of ``max_blank_run`` blank lines, or a gzip
    stream past ``max_decompressed`` bytes or ``max_ratio`` times its compressed size, stops
    the file the same way (``blank_run`` / ``gzip_bomb``).
    """
    name = path.name
    lineno = 0
    blanks = 0
    decompressed = 0
    fh, compressed = _open(path)
    with fh, compressed or fh:
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
            if compressed is not None:
                decompressed += len(line) + too_long
                packed = max(compressed.tell(), 1)
                if decompressed > max_decompressed or (
                    decompressed > ratio_grace and decompressed > max_ratio * packed
                ):
                    _stop(report, name, lineno, "gzip_bomb",
                          f"{decompressed:,} bytes decompressed from {packed:,} (limits: {max_decompressed:,} "
                          f"bytes, {max_ratio:g}x)")
                    return
            if too_long:
                report.read += 1
                report.reject(
                    f"{name}:{lineno}",
                    "line_too_long",
                    f"{too_long:,} bytes (limit {max_line_bytes:,})",
                )
                continue
            if not line.strip():
                blanks += 1
                if blanks >= max_blank_run:
                    _stop(report, name, lineno, "blank_run", f"{blanks:,} blank lines in a row")
                    return
                continue
            blanks = 0
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


def _stop(report: IngestReport, name: str, lineno: int, reason: str, detail: str) -> None:
    """Stop reading a file that would cost unbounded work; keep and count what came before."""
    report.read += 1  # counted like a broken gzip stream: read == yielded + rejected
    report.reject(f"{name}:{lineno}", reason, detail)
    report.message(f"{name}: stopped reading at line {lineno:,} ({reason}: {detail}); "
                   "the records before it are kept")


def _skip_rest_of_line(fh: IO[bytes], chunk: int) -> int:
    """Discard the remainder of an over-long line in bounded chunks; return bytes skipped."""
    skipped = 0
    while True:
        part = fh.readline(chunk)  # gzip errors here propagate to the caller's next read
        skipped += len(part)
        if not part or part.endswith(b"\n"):
            return skipped
