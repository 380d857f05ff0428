"""The FastAPI app: thin endpoints over ``Search``, the web page, and the guards around them.

Every store or model call runs in a worker thread (at most ``limits.max_concurrency`` at
once, the rest queue) under a per-request deadline of ``limits.timeout`` seconds; a request
that misses it gets 503 ``timeout`` (the worker finishes in the background).

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations,
some of which are local to ``create_app``.)
"""

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import StoreError
from ..filters import Filter
from ..ranking.fusion import FUSIONS, RRF_K
from ..ranking.plan import IMAGE_VECTOR
from ..ranking.weights import parse_weights
from ..search import MAX_K, Search, SearchResponse, SearchResult, Unsupported
from .categorize import CategorizeIn, categorize_input
from .errors import ApiError, install_error_handlers
from .files import ImageFile, Redirect, normalise_roots, resolve_image
from .guards import BodyGuard, LoadShedder, ProductPath, product_id_of
from .limits import Limits
from .models import (
    AuditOut,
    CategorizeOut,
    CategoryTreeOut,
    ErrorResponse,
    HealthOut,
    ProductOut,
    SearchPage,
)
from .uploads import decode_upload

log = logging.getLogger("ctir_es.service")
T = TypeVar("T")

STATIC_FILES: Mapping[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page loads only its own files; images may come from catalogue CDNs (redirects).
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy",
     (b"default-src 'self'; img-src 'self' https: http: data: blob:; object-src 'none'; "
      b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def _error(status: int, description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    422: _error(422, "Invalid parameters (out of limits, wrong type)."),
    503: _error(503, "Timed out or the store/models are unavailable."),
}
QUERY_ERRORS = {**COMMON_ERRORS, 400: _error(400, "The query cannot be planned (bad weights, filters, ...).")}
PRODUCT_ERRORS = {**COMMON_ERRORS, 404: _error(404, "No such product.")}
UPLOAD_ERRORS = {
    **QUERY_ERRORS,
    409: _error(409, "The index has no image vectors (ingest with CLIP weights)."),
    413: _error(413, "The upload is too large (bytes or pixels)."),
    415: _error(415, "The upload is not a supported raster image."),
}


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (the page needs no inline script, no CDN)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def contribution(fusion: str, weight: float, rank: int, normalised: float | None) -> float:
    """What one source added to a fused score (for score bars)."""
    if fusion == "rrf":
        return weight / (RRF_K + rank)
    if fusion == "linear":
        return weight * (normalised or 0.0)
    return 0.0


def image_url(product_id: str) -> str:
    return f"/products/{quote(product_id, safe='')}/image"


def result_json(result: SearchResult, fusion: str, weights: Mapping[str, float]) -> dict[str, Any]:
    return {
        "rank": result.rank,
        "id": result.id,
        "title": result.title,
        "categories": result.categories,
        "image_url": image_url(result.id) if result.image else None,
        "score": result.score,
        "sources": {
            name: {
                "rank": s.rank,
                "score": s.score,
                "normalised": s.normalised,
                "contribution": contribution(fusion, weights.get(name, 1.0), s.rank, s.normalised),
            }
            for name, s in result.sources.items()
        },
    }


def page_json(response: SearchResponse, offset: int, k: int) -> dict[str, Any]:
    results = response.results[offset : offset + k]
    return {
        "query": response.query,
        "mode": response.mode,
        "fusion": response.fusion,
        "sources": response.sources,
        "weights": dict(response.weights),
        "offset": offset,
        "k": k,
        "has_more": len(response.results) > offset + k,
        "max_score": response.results[0].score if response.results else None,
        "results": [result_json(r, response.fusion, response.weights) for r in results],
    }


def _static(name: str) -> bytes:
    return resources.files("ctir_es.service").joinpath("static", name).read_bytes()


def create_app(
    search: Search,
    image_roots: Sequence[str | Path] = (),
    limits: Limits | None = None,
) -> FastAPI:
    """The HTTP API and web page over ``search``.

    ``image_roots``: the only directories local catalogue images are served from (see
    ``ctir_es.service.files``); an empty list serves no local files at all.
    """
    limits = limits or Limits()
    roots = normalise_roots(image_roots)
    static = {name: _static(name) for name in STATIC_FILES}
    state: dict[str, Any] = {}

    app = FastAPI(
        title="ctir-es",
        version=__version__,
        description=(
            "Multimodal hybrid (BM25 + vector) product search: category, text and image queries, "
            "similar products, image categorization. Every error is "
            '`{"error": {"code": "...", "message": "..."}}`.'
        ),
        docs_url=None,  # the Swagger/ReDoc pages load from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.search = search
    app.state.limits = limits
    app.state.image_roots = roots
    install_error_handlers(app)

    async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a worker thread, under the concurrency cap and the request deadline."""
        limiter = state.get("limiter")
        if limiter is None:
            limiter = state["limiter"] = anyio.CapacityLimiter(limits.max_concurrency)
        try:
            with anyio.fail_after(limits.timeout):
                return await anyio.to_thread.run_sync(
                    functools.partial(fn, *args, **kwargs), limiter=limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise ApiError(503, "timeout", f"the request took longer than {limits.timeout:g} s",
                           {"Retry-After": "5"}) from None
        except StoreError as exc:
            if "corrupted" in str(exc):  # /health reports it from now on
                state["store_error"] = str(exc)
            raise

    async def read_upload(file: UploadFile) -> bytes:
        if search.image_encoder is None or IMAGE_VECTOR not in search.schema.vectors:
            raise Unsupported("this index has no image vectors, so it cannot search or categorize by "
                              "image: ingest with CLIP weights (--clip-weights TAG|FILE)")
        data = await file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise ApiError(413, "image_too_large", f"the upload is larger than {limits.max_upload_bytes:,} bytes")
        return data

    def decode(data: bytes) -> Any:
        return decode_upload(data, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_image_pixels)

    # -- shared parameters ---------------------------------------------------------------

    QueryText = Annotated[str, Query(min_length=1, max_length=limits.max_query_chars,
                                     description="A category path ('Kitchen > Blenders') or free text.")]
    K = Annotated[int, Query(ge=1, le=limits.max_k, description="Results per page.")]
    Offset = Annotated[int, Query(ge=0, le=limits.max_offset, description="Results to skip (pagination).")]
    # Percent-encoded by ProductPath (decode with product_id_of): up to 12 characters per
    # character of the id (a 4-byte UTF-8 character is %XX%XX%XX%XX).
    ProductId = Annotated[str, PathParam(min_length=1, max_length=12 * limits.max_id_chars)]

    def filters_and_fusion(
        within: Annotated[str | None, Query(max_length=limits.max_query_chars,
                                            description="Only products under this category path.")] = None,
        market: Annotated[str | None, Query(max_length=64, description="Only products of this market.")] = None,
        with_image: Annotated[bool, Query(description="Only products with an image.")] = False,
        fusion: Annotated[Literal["rrf", "linear"], Query(description="How the sources are fused.")] = "rrf",
        weights: Annotated[str | None, Query(max_length=200, description=(
            "Per-source weights, e.g. `bm25=1,text=0.3` (finite, 0..1000; unnamed sources keep their defaults)."
        ))] = None,
    ) -> dict[str, Any]:
        filters: list[Filter] = []
        if within is not None and within.strip():
            filters.append(Filter("category", "subtree", within))
        if market is not None and market.strip():
            filters.append(Filter("market", "eq", market.strip()))
        if with_image:
            filters.append(Filter("has_image", "eq", True))
        return {"filters": filters, "fusion": fusion, "weights": parse_weights(weights)}

    Common = Annotated[dict[str, Any], Depends(filters_and_fusion)]
    assert set(FUSIONS) == {"rrf", "linear"}, "update the fusion Literal above"

    # -- the page --------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static["index.html"], media_type=STATIC_FILES["index.html"])

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:  # a fixed list: no path ever reaches the filesystem
            raise ApiError(404, "not_found", "no such file")
        return Response(static[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    # -- API ---------------------------------------------------------------------------------

    @app.get("/health", response_model=HealthOut, responses=COMMON_ERRORS, tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness and what this index can do (503 once a request found the store corrupted)."""
        if "store_error" in state:
            raise ApiError(503, "store_corrupted", state["store_error"])
        count = await run(search.store.count)
        fields = sorted(search.schema.vectors)
        return {
            "status": "ok",
            "products": count,
            "backend": type(search.store).__name__,
            "vector_fields": fields,
            "image_search": search.image_encoder is not None and IMAGE_VECTOR in fields,
            "image_roots": len(roots),
        }

    @app.get("/search", response_model=SearchPage, responses=QUERY_ERRORS, tags=["search"])
    async def search_get(
        q: QueryText,
        common: Common,
        mode: Annotated[Literal["category", "text"] | None,
                        Query(description="category or text; default: category when q holds '>'. "
                                          "Image search is POST /search/image.")] = None,
        k: K = 10,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Category or free-text search, fused over BM25 and the vector sources, paginated."""
        depth = min(offset + k + 1, MAX_K)
        response = await run(search.search, q, mode=mode, k=depth, **common)
        return page_json(response, offset, k)

    @app.post("/search/image", response_model=SearchPage, responses=UPLOAD_ERRORS, tags=["search"])
    async def search_image(
        file: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, GIF, BMP, TIFF).")],
        common: Common,
        k: K = 10,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Search by an uploaded image (multipart field `file`) against product images."""
        data = await read_upload(file)
        depth = min(offset + k + 1, MAX_K)
        label = (file.filename or "uploaded image")[:200]

        def work() -> SearchResponse:
            return search.search(label, image=decode(data), mode="image", k=depth, **common)

        return page_json(await run(work), offset, k)

    @app.get("/products/{product_id}", response_model=ProductOut, responses=PRODUCT_ERRORS, tags=["products"])
    async def product(product_id: ProductId) -> dict[str, Any]:
        """One product (local image paths are not shown: use `image_url`)."""
        stored = await run(search.product, product_id_of(product_id, limits.max_id_chars))
        p = stored.product
        return {
            "id": p.id,
            "title": p.title,
            "categories": [list(c) for c in p.categories],
            "attributes": dict(p.attributes),
            "description": p.description,
            "market": p.market,
            "image_url": image_url(p.id) if stored.image else None,
            "vector_fields": list(stored.vector_fields),
        }

    @app.get(
        "/products/{product_id}/image",
        responses={**PRODUCT_ERRORS, 200: {"content": {"image/*": {}}, "description": "The image."},
                   307: {"description": "Redirect to the catalogue's remote image URL."}},
        response_class=Response,
        tags=["products"],
    )
    async def product_image(product_id: ProductId) -> Response:
        """The product's image: a local file under the image roots, a cached download, or a
        redirect to its remote URL. Anything else is 404."""
        loader = search.image_loader
        product_id = product_id_of(product_id, limits.max_id_chars)

        def find() -> ImageFile | Redirect | None:
            found = search.store.get([product_id]).get(product_id)
            if found is None or not found.image:
                return None
            cache_file = None
            if loader is not None and hasattr(loader, "cache_path"):
                cache_file = loader.cache_path(found.image)  # the ingest's download cache
            return resolve_image(found.image, roots, cache_file, limits.max_image_file_bytes)

        served = await run(find)
        if isinstance(served, ImageFile):
            return Response(served.data, media_type=served.media_type,
                            headers={"Cache-Control": "public, max-age=3600"})
        if isinstance(served, Redirect):
            return RedirectResponse(served.url, status_code=307)
        raise ApiError(404, "not_found", "no image for this product")

    @app.get("/products/{product_id}/similar", response_model=SearchPage, responses=PRODUCT_ERRORS,
             tags=["products"])
    async def similar(product_id: ProductId, common: Common, k: K = 10, offset: Offset = 0) -> dict[str, Any]:
        """Products like this one (kNN on its own image and title vectors), never itself."""
        depth = min(offset + k + 1, MAX_K)
        response = await run(search.similar, product_id_of(product_id, limits.max_id_chars), k=depth, **common)
        return page_json(response, offset, k)

    @app.get("/categories", response_model=CategoryTreeOut, responses={**COMMON_ERRORS, 409: UPLOAD_ERRORS[409]},
             tags=["categories"])
    async def categories(
        depth: Annotated[int, Query(ge=0, le=32, description="Levels to return; 0: the whole tree.")] = 0,
    ) -> dict[str, Any]:
        """The category tree with product counts per node (children sorted by name)."""
        tree = await run(search.categories)
        count = await run(search.store.count)

        def size(nodes: list[Any]) -> int:
            return sum(1 + size(n.children) for n in nodes)

        return {"products": count, "nodes": size(tree), "tree": [n.to_json(depth or None) for n in tree]}

    @app.post("/categorize", response_model=CategorizeOut, responses=UPLOAD_ERRORS, tags=["categories"],
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": CategorizeIn.model_json_schema()}}}})
    async def categorize(
        request: Request,
        file: Annotated[UploadFile | None, File(description="The image to categorize.")] = None,
        k: Annotated[int, Query(ge=1, le=50, description="Categories to return.")] = 5,
        depth: Annotated[int, Query(ge=0, le=32, description="Cut paths to this many levels; 0: full paths.")] = 3,
        neighbours: Annotated[int, Query(ge=1, le=200, description="Nearest products that vote.")] = 30,
    ) -> dict[str, Any]:
        """Suggested categories, with the signals that voted, for an uploaded image (multipart
        field `file`, needs image vectors) or a JSON body: `{"id": ...}` (a stored product, which
        never votes for itself), `{"text": ...}`, or a product `{"title", "attributes", "description"}`."""
        options: dict[str, Any] = {"k": k, "depth": depth or None, "neighbours": neighbours}
        if file is not None:
            data = await read_upload(file)

            def work() -> Any:
                return search.categorize(decode(data), **options)

            return (await run(work)).to_json()
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(422, "invalid_request", "send an image (multipart/form-data, field `file`) or a JSON "
                                                   'product: {"id": ...}, {"text": ...} or {"title": ...}')
        body = categorize_input(await request.body(), limits.max_id_chars, limits.max_query_chars)
        return (await run(search.categorize, **body, **options)).to_json()

    @app.get("/audit", response_model=AuditOut, responses=COMMON_ERRORS, tags=["categories"])
    async def audit(
        k: Annotated[int, Query(ge=1, le=200, description="Most suspicious products to return.")] = 20,
        depth: Annotated[int, Query(ge=1, le=32, description="Levels of the stored path compared.")] = 3,
        within: Annotated[str | None, Query(max_length=limits.max_query_chars,
                                            description="Only products under this category path.")] = None,
    ) -> dict[str, Any]:
        """Products whose stored category disagrees most with what the other products say."""
        filters = [Filter("category", "subtree", within)] if within and within.strip() else []
        return (await run(search.audit, k=k, depth=depth, filters=filters)).to_json()

    # The last added is the outermost: product ids are taken from the raw path first; the body
    # arrives whole (capped, under its deadline) before a request counts as in flight; and
    # every answer (413 / 408 / 503 included) gets the security headers.
    app.add_middleware(ProductPath)
    app.add_middleware(LoadShedder, max_pending=limits.max_pending)
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes, timeout=limits.body_timeout)
    app.add_middleware(SecurityHeaders)
    return app
