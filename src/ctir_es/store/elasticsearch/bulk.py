"""Robust ``_bulk`` writing: streamed chunks bounded by count and bytes, retries with backoff,
per-document errors collected (never retried, never dropped silently).

What is retried, and how (Elasticsearch 8.x, reference/8.15/docs-bulk.html):

- the whole request, when it fails with 429 (``es_rejected_execution_exception``: the write
  thread pool queue is full; the documented answer is to back off and retry), 502/503/504
  (a proxy or a node restarting, a cluster without a master) or a connection error
  (refused, reset, timed out): nothing of that request counts as written, the same chunk is
  sent again after ``initial_backoff * 2**attempt`` seconds (capped at ``max_backoff``);
- single items answered 429/502/503/504 inside a 200 response: only those items are sent again;
- any other item status (400 ``document_parsing_exception`` / ``mapper_parsing_exception``,
  a pipeline failure, ...) is a per-document error: recorded by id with its reason, not retried.

Every action is ``index`` with ``_id`` = product id, so sending a document again replaces it:
a retry after a response that was lost on the way back can never make a duplicate. Partial
``update`` actions (vectors added in place, ``documents.vector_update_lines``) never create a
document: one whose id is not in the index answers 404 ``document_missing_exception``, which
is counted as missing (``BulkResult.missing``), neither written nor an error.
When retries run out the writer raises ``BulkAborted``, which says what was written, what is
still pending and why it stopped; the caller's checkpoint (recorded only after a chunk
completed) tells a new run where to resume.

Transport-level retries of the client are switched off for bulk requests
(``client.options(max_retries=0)``), so every retry is counted and backed off here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import elastic_transport
import elasticsearch

from ...errors import ConfigError, StoreError, Unreachable, described
from .bodies.responses import error_text

log = logging.getLogger(__name__)

RETRY_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
DEFAULT_CHUNK_SIZE = 500
DEFAULT_CHUNK_BYTES = 10 * 1024 * 1024  # well under http.max_content_length (100mb)


@dataclass(frozen=True, slots=True)
class BulkOptions:
    """Chunking and retry knobs (rarely changed, so grouped here)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE  # documents per request
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES  # request body bytes
    max_retries: int = 5  # retries of one chunk before giving up
    initial_backoff: float = 1.0  # seconds; doubled per retry
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.max_chunk_bytes < 1024:
            raise ConfigError(f"max_chunk_bytes must be >= 1024, got {self.max_chunk_bytes}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ConfigError("backoff seconds must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        return float(min(self.max_backoff, self.initial_backoff * (2**attempt)))


@dataclass(frozen=True, slots=True)
class BulkLine:
    """One document as it goes on the wire: its id, action line and source line."""

    id: str
    action: str
    source: str
    position: int = 0  # position in the caller's stream (for checkpoints)

    @property
    def nbytes(self) -> int:
        return len(self.action.encode()) + len(self.source.encode()) + 2  # two newlines


@dataclass
class BulkResult:
    written: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # id -> reason (not retried)
    retries: int = 0  # requests sent again (whole or in part)
    retry_reasons: list[str] = field(default_factory=list)
    requests: int = 0
    written_ids: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)  # updates of ids not in the index (skipped)

    def merge(self, other: BulkResult) -> None:
        self.written += other.written
        self.missing |= other.missing
        self.errors.update(other.errors)
        self.retries += other.retries
        self.retry_reasons += other.retry_reasons
        self.requests += other.requests
        self.written_ids |= other.written_ids


class BulkAborted(StoreError):
    """Retries ran out: ``result`` holds what was written, ``pending`` the ids not written."""

    def __init__(self, message: str, result: BulkResult, pending: list[str]) -> None:
        super().__init__(message)
        self.result = result
        self.pending = pending


class BulkUnreachable(BulkAborted, Unreachable):
    """Retries ran out because the cluster could not be reached (connection lost or refused,
    time-out): the request itself was fine."""


class RetryableError(Exception):
    """A whole request failed in a way worth retrying (``reason`` says how)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_CONNECTION_ERRORS = (
    elastic_transport.ConnectionError,
    elastic_transport.ConnectionTimeout,
    elasticsearch.ConnectionError,
    elasticsearch.ConnectionTimeout,
)


def retry_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth a retry, or None when it is not (auth, bad request, ...)."""
    if isinstance(exc, RetryableError):
        return exc.reason
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status
        if status in RETRY_STATUSES:
            return f"HTTP {status} {error_text(exc.body)}"[:200]
        return None
    if isinstance(exc, _CONNECTION_ERRORS):
        return described(exc, 150)
    return None


def chunks(
    lines: Iterable[BulkLine], chunk_size: int, max_bytes: int
) -> Iterator[list[BulkLine]]:
    """Consecutive chunks of at most ``chunk_size`` lines and ``max_bytes`` bytes (a single
    document larger than ``max_bytes`` goes alone: Elasticsearch judges it, not us)."""
    chunk: list[BulkLine] = []
    size = 0
    for line in lines:
        n = line.nbytes
        if chunk and (len(chunk) >= chunk_size or size + n > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += n
    if chunk:
        yield chunk


def ndjson(lines: list[BulkLine]) -> str:
    return "".join(f"{line.action}\n{line.source}\n" for line in lines)


def item_status(item: Mapping[str, Any]) -> tuple[int, str]:
    """``(status, reason)`` of one item of a bulk response."""
    op, info = next(iter(item.items()))
    info = info if isinstance(info, Mapping) else {}
    status = int(info.get("status", 500))
    if 200 <= status < 300:
        return status, ""
    reason = error_text(info.get("error", "unknown error"))
    return status, f"{op} failed ({status}): {reason}"


def item_missing(item: Mapping[str, Any]) -> bool:
    """An ``update`` item of a document that is not in the index (404 ``document_missing_exception``)."""
    op, info = next(iter(item.items()))
    if op != "update" or not isinstance(info, Mapping) or info.get("status") != 404:
        return False
    error = info.get("error")
    return isinstance(error, Mapping) and error.get("type") == "document_missing_exception"


Send = Callable[[str], Mapping[str, Any]]


class BulkWriter:
    """Sends chunks through ``send`` (NDJSON body -> bulk response body) with retries.

    ``send`` raises the client's exceptions; ``retry_reason`` decides which are retried.
    ``sleep`` is injectable so tests run without waiting (and can act between attempts).
    """

    def __init__(
        self,
        send: Send,
        options: BulkOptions | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        scrub: Callable[[str], str] = lambda s: s,
    ) -> None:
        self.send = send
        self.options = options or BulkOptions()
        self.sleep = sleep
        self.scrub = scrub

    def write(
        self,
        lines: Iterable[BulkLine],
        on_chunk: Callable[[list[BulkLine], BulkResult], None] | None = None,
    ) -> BulkResult:
        """Write every line; ``on_chunk(chunk, total)`` runs after each chunk is complete."""
        total = BulkResult()
        for chunk in chunks(lines, self.options.chunk_size, self.options.max_chunk_bytes):
            try:
                total.merge(self.write_chunk(chunk))
            except BulkAborted as exc:
                total.merge(exc.result)
                raise type(exc)(str(exc), total, exc.pending) from None
            if on_chunk is not None:
                on_chunk(chunk, total)
        return total

    def write_chunk(self, chunk: list[BulkLine]) -> BulkResult:
        result = BulkResult()
        pending = list(chunk)
        attempt = 0
        while pending:
            result.requests += 1
            try:
                response = self.send(ndjson(pending))
            except Exception as exc:
                reason = retry_reason(exc)
                if reason is None:
                    raise
                self._retry_or_abort(
                    attempt,
                    self.scrub(reason),
                    pending,
                    result,
                    whole=True,
                    unreachable=isinstance(exc, _CONNECTION_ERRORS),
                )
                attempt += 1
                continue
            items = list(response.get("items") or [])
            if len(items) != len(pending):
                raise StoreError(
                    f"_bulk answered {len(items)} items for {len(pending)} documents; "
                    "nothing is assumed written for the missing ones"
                )
            again: list[BulkLine] = []
            statuses: list[int] = []
            for line, item in zip(pending, items):
                status, reason = item_status(item)
                if 200 <= status < 300:
                    result.written += 1
                    result.written_ids.add(line.id)
                    result.errors.pop(line.id, None)
                elif status in RETRY_STATUSES:
                    again.append(line)
                    statuses.append(status)
                elif item_missing(item):
                    result.missing.add(line.id)
                else:
                    result.errors[line.id] = self.scrub(reason)
            pending = again
            if pending:
                reason = f"{len(pending)} item(s) answered {sorted(set(statuses))}"
                self._retry_or_abort(attempt, reason, pending, result, whole=False)
                attempt += 1
        return result

    def _retry_or_abort(
        self,
        attempt: int,
        reason: str,
        pending: list[BulkLine],
        result: BulkResult,
        *,
        whole: bool,
        unreachable: bool = False,
    ) -> None:
        if attempt >= self.options.max_retries:
            ids = [line.id for line in pending]
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            raise (BulkUnreachable if unreachable else BulkAborted)(
                f"bulk write gave up after {attempt + 1} attempts ({reason}); "
                f"{len(ids)} document(s) not written: {shown}",
                result,
                ids,
            )
        delay = self.options.backoff(attempt)
        result.retries += 1
        result.retry_reasons.append(reason)
        log.warning(
            "bulk %s failed (%s); retry %d/%d in %.1fs",
            "request" if whole else "items",
            reason,
            attempt + 1,
            self.options.max_retries,
            delay,
        )
        self.sleep(delay)
