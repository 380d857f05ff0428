"""``GET /search`` (category or free text) and ``POST /search/image`` (an upload), paginated.

Image search is upload-only: ``GET /search`` has no image mode, so a client can never make the
server open a path or URL of its choosing."""

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile

from ...results import SearchResponse
from ...search import Search
from ...vocabulary import TextMode
from ..errors import documented
from ..models import SearchPage
from ..params import Params, SearchOptions, ShopOptions
from ..runtime import ServiceDep
from ..serialise import page_json


def with_shop(page: dict[str, Any], response: SearchResponse, offset: int, k: int) -> dict[str, Any]:
    """A page of a shop request (facets, sort, collapse): its facets, what was arranged, and each
    result's ``collapsed``."""
    if response.shop:
        page.update(facets=dict(response.facets), shop=dict(response.shop))
        for item, result in zip(page["results"], response.results[offset : offset + k], strict=False):
            item["collapsed"] = result.collapsed
    return page


def router(params: Params) -> APIRouter:
    routes = APIRouter(tags=["search"])
    Options = Annotated[SearchOptions, params.options]
    Shop = Annotated[ShopOptions, params.shop]

    @routes.get("/search", response_model=SearchPage, responses=documented(400))
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
    ) -> dict[str, Any]:
        """Category or free-text search, fused over BM25 and the vector sources, paginated."""
        response = await service.use(Search.search, q, mode=mode, k=params.depth(offset, k),
                                     **options.kwargs(), **shop.kwargs())
        return with_shop(page_json(response, offset, k), response, offset, k)

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
        return with_shop(page_json(response, offset, k), response, offset, k)

    return routes
