"""ASGI guards around the app: the request body (deadline and size), requests in flight, and
product ids in paths. Every refusal is the service's JSON error shape.

- ``BodyGuard`` reads the whole body before the app sees the request: at most ``max_bytes``
  (413, at once when Content-Length says so) and within ``timeout`` seconds in all (408), so
  a client sending one byte a second is cut, however the bytes are spaced. The app then gets
  the body in one message.
- ``LoadShedder`` lets at most ``max_pending`` requests be processed at once; more get 503
  ``overloaded`` with ``Retry-After`` at once, instead of queueing without bound. It sits
  inside ``BodyGuard``, so slow uploads do not hold its slots.
- ``ProductPath`` takes the product id of ``/products/{id}[/image|/similar]`` from the raw,
  still percent-encoded path, so an id holding ``/`` (sent as ``%2F``) reaches its endpoint;
  the route then gets the id percent-encoded, and ``product_id_of`` decodes it.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body

PRODUCTS_PREFIX = "/products/"
PRODUCT_SUBPATHS = ("image", "similar")


async def send_error(send: Send, status: int, code: str, message: str,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A JSON error answer that also closes the connection."""
    body = json.dumps(error_body(code, message)).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"), *headers],
    })
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Read the body under a size cap and a total deadline, then hand it to the app whole."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self._too_large(send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await send_error(send, 408, "request_timeout",
                             f"the request body did not arrive within {self.timeout:g} s")
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await send_error(send, 413, "payload_too_large", f"request body larger than {self.max_bytes:,} bytes")


class LoadShedder:
    """At most ``max_pending`` requests in the app at once; the rest get 503 + Retry-After."""

    def __init__(self, app: ASGIApp, max_pending: int, retry_after: int = 2) -> None:
        self.app = app
        self.max_pending = max_pending
        self.retry_after = retry_after
        self.active = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_pending:
            await send_error(send, 503, "overloaded",
                             f"{self.active} requests in progress (limit {self.max_pending}); retry shortly",
                             ((b"retry-after", str(self.retry_after).encode()),))
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class ProductPath:
    """Route ``/products/{id}...`` by the raw path, so ``%2F`` in an id is not a separator."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PRODUCTS_PREFIX):
            raw = scope.get("raw_path")
            target = raw.decode("latin-1") if raw else quote(scope["path"], safe="/")
            rest = target[len(PRODUCTS_PREFIX):] if target.startswith(PRODUCTS_PREFIX) else ""
            segment, sep, tail = rest.partition("/")
            if segment and (not sep or tail in PRODUCT_SUBPATHS):
                product_id = unquote(segment, errors="replace")
                path = PRODUCTS_PREFIX + quote(product_id, safe="") + (f"/{tail}" if sep else "")
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)


def product_id_of(segment: str, max_chars: int) -> str:
    """The product id of a route's ``{product_id}`` segment (``ProductPath`` keeps it encoded);
    422 when longer than any id a reader accepts."""
    product_id = unquote(segment)
    if len(product_id) > max_chars:
        raise ApiError(422, "invalid_request", f"product_id: at most {max_chars} characters")
    return product_id
