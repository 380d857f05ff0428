"""The connection-level guard of ``ctir-es serve``: uvicorn's h11 protocol with the timeouts and
limits it lacks, and JSON for the answers uvicorn would give in plain text.

Why here and not in the app: a client that connects and sends nothing, or half a request
head, never reaches the ASGI app - uvicorn arms no timer until a first response is sent, so
such connections live forever, and its ``limit_concurrency`` then answers *everyone* with a
plain-text 503. This protocol:

- closes a connection whose request head is not complete within ``header_timeout`` seconds
  of connecting (or of the previous response), answering ``408`` JSON when part of a head
  arrived (slowloris) and closing silently when nothing did;
- refuses connections beyond ``max_connections`` with a ``503`` JSON and ``Retry-After``;
- answers a malformed or oversized request head (over ``max_head_bytes``) with a ``400``
  JSON instead of uvicorn's plain text.

Request bodies (their deadline and size) and the number of requests in flight are guarded
by ASGI middleware in ``ctir_es.service.guards``; together they keep an idle or slow client
from costing anything but one socket, for a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("ctir_es.service")


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of the HTTP server (``ctir-es serve`` flags)."""

    header_timeout: float = 10.0  # seconds from connect (or the last response) to a complete request head
    keep_alive: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 4096  # open connections; more get 503 + Retry-After
    max_head_bytes: int = 16 * 1024  # request line + headers
    retry_after: int = 2  # seconds, in every 503


def raw_json_response(status: int, reason: str, code: str, message: str,
                      extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 response in the service's error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def protocol_class(limits: ConnectionLimits) -> type[H11Protocol]:
    """An ``H11Protocol`` subclass bound to ``limits``, for ``uvicorn.Config(http=...)``."""

    class GuardedH11Protocol(H11Protocol):
        guard = limits

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_bytes = 0
            # h11 refuses a head over this size with RemoteProtocolError -> send_400_response
            self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)

        # -- connection ---------------------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                log.warning("connection refused: %d open connections (limit %d)",
                            len(self.connections), limits.max_connections)
                self._close_with(raw_json_response(
                    503, "Service Unavailable", "overloaded",
                    f"too many open connections (limit {limits.max_connections}); retry shortly",
                    (("retry-after", str(limits.retry_after)),)))
                return
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._head_bytes += len(data)
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # a complete head arrived
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._head_bytes = 0
                self._arm_head_timer()  # the next request's head gets the same deadline

        # -- answers uvicorn would give in plain text ------------------------------------
        def send_400_response(self, msg: str) -> None:
            self._close_with(raw_json_response(
                400, "Bad Request", "bad_request",
                f"invalid HTTP request head (malformed, or larger than {limits.max_head_bytes:,} bytes)"))

        # -- helpers -----------------------------------------------------------------
        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self._head_bytes:  # part of a head: say why the connection ends
                self._close_with(raw_json_response(
                    408, "Request Timeout", "request_timeout",
                    f"the request head did not arrive within {limits.header_timeout:g} s"))
            else:  # an idle connection: nothing to answer
                self._unset_keepalive_if_required()
                self.transport.close()

        def _close_with(self, response: bytes) -> None:
            self._cancel_head_timer()
            self._unset_keepalive_if_required()
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    return GuardedH11Protocol
