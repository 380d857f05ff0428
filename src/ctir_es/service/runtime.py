"""What every endpoint works with: the ``Search``, the request limits and the image roots, and
the one way blocking work runs.

Every store or model call runs in a worker thread (at most ``limits.max_concurrency`` at once,
the rest queue) under a per-request deadline of ``limits.timeout`` seconds; a request that
misses it gets 503 ``timeout`` (the worker finishes in the background). Endpoints receive the
``Service`` as a dependency (``ServiceDep``), never from a closure.

The ``Search`` can be replaced while serving (``serve --learn`` swaps in the index's new model):
work on it goes through ``Service.use``, which holds the ``Search`` serving at its start until the
work returns, so a swap never pulls a store from under a request; the old one is closed when its
last user is done.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request, UploadFile
from PIL import Image

from ..errors import StoreCorrupted, Unsupported
from ..ingest.images import ImageLoader
from ..search import Search
from ..shop.cursor import MemoryPins
from ..vocabulary import IMAGE_VECTOR
from .errors import ApiError
from .limits import Limits
from .uploads import decode_upload

if TYPE_CHECKING:
    from .integrity import IntegrityCheck
    from .learning import BackgroundLearn

T = TypeVar("T")
P = ParamSpec("P")


class _Serving:
    """One ``Search`` and how many pieces of work hold it; closed once retired and unheld."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self.users = 0
        self.retired = False


class _Hold:
    """One piece of work's hold on a ``_Serving``, released exactly once: by the worker when it
    ran (even past the request's deadline), or by the request when the worker never started."""

    def __init__(self, service: Service, serving: _Serving) -> None:
        self.service, self.serving, self.state = service, serving, "waiting"

    def enter(self) -> bool:
        with self.service._lock:
            if self.state != "waiting":
                return False
            self.state = "running"
            return True

    def done(self, *, started: bool) -> None:
        with self.service._lock:
            if self.state != ("running" if started else "waiting"):
                return
            self.state = "done"
        self.service._release(self.serving)


class Service:
    """The state one app serves from (kept on ``app.state.service``)."""

    def __init__(self, search: Search, limits: Limits, image_roots: list[Path]) -> None:
        self._lock = threading.Lock()
        self._serving = _Serving(search)
        self._closed = False
        self.limits = limits
        self.image_roots = image_roots
        self.store_error: str | None = None  # set once a request (or the integrity check) found the store corrupted
        self.api_key: str | None = None  # service.auth: needed by the expensive routes when set (never logged)
        self.integrity: IntegrityCheck | None = None  # ``serve``: every page read once in the background
        self.learning: BackgroundLearn | None = None  # ``serve --learn``: training in the background
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop
        self._apart_limiter: anyio.CapacityLimiter | None = None  # whole-catalogue work (use_apart)
        # Pinned rankings behind ``/search?cursor=`` (bounded, ctir_es.shop.cursor): kept here, not
        # on the Search, so a swap (``serve --learn``) leaves the pages being read intact.
        self.pins = MemoryPins()

    @property
    def search(self) -> Search:
        """The ``Search`` serving now (a swap may replace it: hold it through ``use``)."""
        return self._serving.search

    def swap(self, search: Search) -> None:
        """Serve ``search`` from now on. Work under way finishes on the old one, which is closed
        when the last of it returns. A closed service closes ``search`` instead."""
        with self._lock:
            if self._closed:
                old = _Serving(search)
            else:
                old, self._serving = self._serving, _Serving(search)
            old.retired = True
            idle = old.users == 0
        if idle:
            old.search.close()

    def close(self) -> None:
        """Close the serving ``Search`` (at once when unheld, else when its last user returns)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._serving.retired = True
            idle = self._serving.users == 0
        if idle:
            self._serving.search.close()

    def _release(self, serving: _Serving) -> None:
        with self._lock:
            serving.users -= 1
            idle = serving.retired and serving.users == 0
        if idle:
            serving.search.close()

    async def use(self, fn: Callable[Concatenate[Search, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(search, ...)`` in a worker (as ``run``) on the ``Search`` serving now, held until
        ``fn`` returns even when the request's deadline passed first."""
        return await self._use(False, lambda search: fn(search, *args, **kwargs))

    async def use_apart(self, fn: Callable[Concatenate[Search, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``use`` for whole-catalogue work (``GET /audit``): on workers of its own, at most
        ``limits.max_apart_concurrency`` at once (the rest wait, under the same deadline), so it
        never holds the workers searches run on."""
        return await self._use(True, lambda search: fn(search, *args, **kwargs))

    async def _use(self, apart: bool, fn: Callable[[Search], T]) -> T:
        with self._lock:
            serving = self._serving
            serving.users += 1
        hold = _Hold(self, serving)

        def work() -> T:
            if not hold.enter():  # the request gave up before this worker started
                raise TimeoutError
            try:
                return fn(serving.search)
            finally:
                hold.done(started=True)

        try:
            return await self._run(self._apart_lane() if apart else self._lane(), work)
        finally:
            hold.done(started=False)  # a no-op when the worker ran

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
        return await self._run(self._lane(), functools.partial(fn, *args, **kwargs))

    def _lane(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limits.max_concurrency)
        return self._limiter

    def _apart_lane(self) -> anyio.CapacityLimiter:
        if self._apart_limiter is None:
            self._apart_limiter = anyio.CapacityLimiter(self.limits.max_apart_concurrency)
        return self._apart_limiter

    async def _run(self, lane: anyio.CapacityLimiter, fn: Callable[[], T]) -> T:
        try:
            with anyio.fail_after(self.limits.timeout):
                return await anyio.to_thread.run_sync(fn, limiter=lane, abandon_on_cancel=True)
        except TimeoutError:
            raise ApiError(503, "timeout", f"the request took longer than {self.limits.timeout:g} s",
                           {"Retry-After": "5"}) from None
        except StoreCorrupted as exc:  # /health reports it from now on
            self.found_corrupted(exc)
            raise

    def found_corrupted(self, exc: StoreCorrupted) -> None:
        """The store is damaged: ``/health`` answers 503 ``store_corrupted`` from now on."""
        self.store_error = str(exc)

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
