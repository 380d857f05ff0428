"""``GET /search`` (category or free text) and ``POST /search/image`` (an upload), paginated.

Image search is upload-only: ``GET /search`` has no image mode, so a client can never make the
server open a path or URL of its choosing."""

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile

from ...results import SearchResponse
from ...search import Search
from ...shop.cursor import CursorExpired
from ...vocabulary import TextMode
from ..errors import ApiError, documented
from ..models import ErrorResponse, SearchPage
from ..params import Params, SearchOptions, ShopOptions
from ..runtime import ServiceDep
from ..serialise import page_json

CURSOR_GONE: dict[int | str, dict[str, Any]] = {410: {
    "model": ErrorResponse,
    "description": "The cursor's pinned ranking has expired or was dropped: search again without it."}}


def pinned_page_json(response: SearchResponse, k: int) -> dict[str, Any]:
    """A page of a pinned ranking: its results are the page, ``offset`` is where it starts."""
    out = page_json(response, 0, k)
    if response.page is not None:
        out.update(offset=response.page.start, has_more=response.page.next_cursor is not None,
                   max_score=response.page.top_score, next_cursor=response.page.next_cursor)
    return out


def router(params: Params) -> APIRouter:
    routes = APIRouter(tags=["search"])
    Options = Annotated[SearchOptions, params.options]
    Shop = Annotated[ShopOptions, params.shop]

    @routes.get("/search", response_model=SearchPage, responses=documented(400) | CURSOR_GONE)
    async def search_text(
        service: ServiceDep,
        q: Annotated[str, params.q],
        options: Options,
        shop: Shop,
        mode: Annotated[TextMode | None,
                        Query(description="category or text; default: category when q holds '>'. "
                                          "Image search is POST /search/image.")] = None,
        k: Annotated[int, params.k] = 10,
        offset: Annotated[int, params.offset] = 0,
        pin: Annotated[bool, params.pin] = False,
        cursor: Annotated[str | None, params.cursor] = None,
    ) -> dict[str, Any]:
        """Category or free-text search, fused over BM25 and the vector sources, paginated: by
        `offset` (searched again per page), or stable with `pin` then `cursor`."""
        if pin or cursor is not None:
            if offset:
                raise ApiError(400, "bad_query", "offset cannot be combined with pin or cursor: the cursor "
                                                 "holds the position")
            try:
                pinned = await service.use(Search.search, q, mode=mode, k=k, pin=True, cursor=cursor,
                                           pins=service.pins, **options.kwargs(), **shop.kwargs())
            except CursorExpired as exc:
                raise ApiError(410, "cursor_expired", str(exc)) from None
            return pinned_page_json(pinned, k)
        response = await service.use(Search.search, q, mode=mode, k=params.depth(offset, k),
                                     **options.kwargs(), **shop.kwargs())
        return page_json(response, offset, k)

    @routes.post("/search/image", response_model=SearchPage, responses=documented(400, 409, 413, 415))
    async def search_image(
        service: ServiceDep,
        file: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, GIF, BMP, TIFF).")],
        options: Options,
        shop: Shop,
        k: Annotated[int, params.k] = 10,
        offset: Annotated[int, params.offset] = 0,
    ) -> dict[str, Any]:
        """Search by an uploaded image (multipart field `file`) against product images."""
        data = await service.read_upload(file)
        label = (file.filename or "uploaded image")[:200]

        def work(search: Search) -> SearchResponse:
            return search.search(label, image=service.decode(data), mode="image",
                                 k=params.depth(offset, k), **options.kwargs(), **shop.kwargs())

        response = await service.use(work)
        return page_json(response, offset, k)

    return routes
