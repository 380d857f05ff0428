"""Uploads: the body is capped while it streams in (413 before anything is parsed or
decoded), then the image header is checked against the pixel limit before decoding."""

from __future__ import annotations

import io
import json

from PIL import Image, UnidentifiedImageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ImageError
from ..ingest.images import ALLOWED_FORMATS, decode
from .errors import error_body


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413: at once when Content-Length says so,
    else as soon as the streamed body passes the limit (the app's own answer is replaced)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_bytes:
                await self._reject(send)
                return
        seen = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    # Stop reading: the app sees the end of an (incomplete) body.
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                started = True
                await self._reject(send)
                return
            if started and exceeded:
                return  # drop the app's own response to the truncated body
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            error_body("payload_too_large", f"request body larger than {self.max_bytes:,} bytes")
        ).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header (nothing is decoded)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            return im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decompression_bomb", str(exc)[:200]) from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", f"not a {'/'.join(ALLOWED_FORMATS)} image") from None
    except Exception as exc:  # noqa: BLE001 - hostile headers
        raise ImageError("corrupt", f"{type(exc).__name__}: {str(exc)[:200]}") from None


def decode_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Uploaded bytes -> RGB image, refusing oversized files and pixel bombs first."""
    if len(data) > max_bytes:
        raise ImageError("too_large", f"upload larger than {max_bytes:,} bytes")
    if not data:
        raise ImageError("not_an_image", "empty file")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageError("decompression_bomb", f"{width}x{height} pixels > {max_pixels:,}")
    return decode(data, max_bytes=max_bytes)
