"""The FastAPI app, assembled: the routes (``service.routes``, one module per concern), the
``Service`` they share (``service.runtime``), the error handlers and the guards around them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from .. import __version__
from ..search import Search
from .errors import install_error_handlers
from .files import normalise_roots
from .guards import BodyGuard, LoadShedder, ProductPath
from .headers import SecurityHeaders
from .hosts import AllowedHosts
from .integrity import IntegrityCheck
from .limits import Limits
from .params import Params
from .routes import categories, health, page, products
from .routes import search as search_routes
from .runtime import Service


def create_app(
    search: Search,
    image_roots: Sequence[str | Path] = (),
    limits: Limits | None = None,
    *,
    check_store: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The HTTP API and web page over ``search``.

    ``image_roots``: the only directories local catalogue images are served from (see
    ``ctir_es.service.files``); an empty list serves no local files at all.
    ``check_store``: read every page of an embedded store once in the background
    (``service.integrity``), so ``/health`` reports damage no request has reached yet.
    ``allowed_hosts``: the ``Host`` names answered (others get 400 ``bad_host``); None: any.
    ``api_key``: needed as a bearer token by the expensive routes (``service.auth``); None: open.
    """
    limits = limits or Limits()
    app = FastAPI(
        title="ctir-es",
        version=__version__,
        description=(
            "Multimodal hybrid (BM25 + vector) product search: category, text and image queries, "
            "similar products, categorize and audit. Every error is "
            '`{"error": {"code": "...", "message": "..."}}`.'
        ),
        docs_url=None,  # the Swagger/ReDoc pages load from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    service = Service(search, limits, normalise_roots(image_roots))
    app.state.service = service
    service.api_key = api_key or None
    if check_store:
        service.integrity = IntegrityCheck(search.store, service.found_corrupted).start()
    install_error_handlers(app)

    params = Params(limits)
    app.include_router(page.router)
    app.include_router(health.router)
    app.include_router(search_routes.router(params))
    app.include_router(products.router(params))
    app.include_router(categories.router(params))

    # The last added is the outermost: product ids are taken from the raw path first; the body
    # arrives whole (capped, under its deadline) before a request counts as in flight; and
    # every answer (413 / 408 / 503 included) gets the security headers.
    app.add_middleware(ProductPath)
    app.add_middleware(LoadShedder, max_pending=limits.max_pending)
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes, timeout=limits.body_timeout)
    if allowed_hosts is not None:  # before the body is read; the refusal still gets the headers
        app.add_middleware(AllowedHosts, allowed_hosts=allowed_hosts)
    app.add_middleware(SecurityHeaders)
    return app
