"""What every endpoint works with: the ``Search``, the request limits and the image roots, and
the one way blocking work runs.

Every store or model call runs in a worker thread (at most ``limits.max_concurrency`` at once,
the rest queue) under a per-request deadline of ``limits.timeout`` seconds; a request that
misses it gets 503 ``timeout`` (the worker finishes in the background). Endpoints receive the
``Service`` as a dependency (``ServiceDep``), never from a closure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request, UploadFile
from PIL import Image

from ..errors import StoreError, Unsupported
from ..ingest.images import ImageLoader
from ..search import Search
from ..vocabulary import IMAGE_VECTOR
from .errors import ApiError
from .limits import Limits
from .uploads import decode_upload

T = TypeVar("T")


class Service:
    """The state one app serves from (kept on ``app.state.service``)."""

    def __init__(self, search: Search, limits: Limits, image_roots: list[Path]) -> None:
        self.search = search
        self.limits = limits
        self.image_roots = image_roots
        self.store_error: str | None = None  # set once a request found the store corrupted
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop

    @property
    def image_search(self) -> bool:
        """Whether uploads can be searched and categorized (an image encoder and image vectors)."""
        return self.search.image_encoder is not None and IMAGE_VECTOR in self.search.schema.vectors

    @property
    def image_loader(self) -> ImageLoader | None:
        loader = self.search.image_loader
        return loader if isinstance(loader, ImageLoader) else None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a worker thread, under the concurrency cap and the request deadline."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limits.max_concurrency)
        try:
            with anyio.fail_after(self.limits.timeout):
                return await anyio.to_thread.run_sync(
                    functools.partial(fn, *args, **kwargs), limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise ApiError(503, "timeout", f"the request took longer than {self.limits.timeout:g} s",
                           {"Retry-After": "5"}) from None
        except StoreError as exc:
            if "corrupted" in str(exc):  # /health reports it from now on
                self.store_error = str(exc)
            raise

    async def read_upload(self, file: UploadFile) -> bytes:
        """The uploaded image's bytes (409 on an index without image vectors, 413 over the cap)."""
        if not self.image_search:
            raise Unsupported("this index has no image vectors, so it cannot search or categorize by "
                              "image: ingest with CLIP weights (--clip-weights TAG|FILE)")
        cap = self.limits.max_upload_bytes
        data = await file.read(cap + 1)
        if len(data) > cap:
            raise ApiError(413, "image_too_large", f"the upload is larger than {cap:,} bytes")
        return data

    def decode(self, data: bytes) -> Image.Image:
        """Uploaded bytes -> RGB image, the pixel cap checked first (run it in a worker)."""
        return decode_upload(data, max_bytes=self.limits.max_upload_bytes, max_pixels=self.limits.max_image_pixels)


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
