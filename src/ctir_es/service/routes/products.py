"""``/products/{id}``: one product, its image, and products like it.

Ids arrive percent-encoded (``guards.ProductPath`` routes by the raw path, so an id may hold
``/``); ``product_id_of`` decodes them."""

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ...ingest.images import ImageLoader
from ...search import Search
from ..errors import ApiError, documented
from ..files import ImageFile, Redirect, resolve_image
from ..guards import product_id_of
from ..models import ProductOut, SearchPage
from ..params import Params, SearchOptions
from ..runtime import Service, ServiceDep
from ..serialise import page_json, product_json


def find_image(search: Search, service: Service, product_id: str) -> ImageFile | Redirect | None:
    """What ``/products/{id}/image`` serves: a local file under the image roots, the ingest's
    cached download of a remote image, or a redirect to it (``ctir_es.service.files``)."""
    found = search.store.get([product_id]).get(product_id)
    if found is None or not found.image:
        return None
    loader = search.image_loader if isinstance(search.image_loader, ImageLoader) else None
    cache_file = loader.cache_path(found.image) if loader is not None else None
    return resolve_image(found.image, service.image_roots, cache_file, service.limits.max_image_file_bytes)


def router(params: Params) -> APIRouter:
    routes = APIRouter(tags=["products"])
    ProductId = Annotated[str, params.product_id]
    max_id = params.limits.max_id_chars

    @routes.get("/products/{product_id}", response_model=ProductOut, responses=documented(404))
    async def product(service: ServiceDep, product_id: ProductId) -> dict[str, Any]:
        """One product (local image paths are not shown: use `image_url`)."""
        stored = await service.use(Search.product, product_id_of(product_id, max_id))
        return product_json(stored)

    @routes.get(
        "/products/{product_id}/image",
        responses={**documented(404), 200: {"content": {"image/*": {}}, "description": "The image."},
                   307: {"description": "Redirect to the catalogue's remote image URL."}},
        response_class=Response,
    )
    async def product_image(service: ServiceDep, product_id: ProductId) -> Response:
        """The product's image: a local file under the image roots, a cached download, or a
        redirect to its remote URL. Anything else is 404."""
        served = await service.use(find_image, service, product_id_of(product_id, max_id))
        if isinstance(served, ImageFile):
            return Response(served.data, media_type=served.media_type,
                            headers={"Cache-Control": "public, max-age=3600"})
        if isinstance(served, Redirect):
            return RedirectResponse(served.url, status_code=307)
        raise ApiError(404, "not_found", "no image for this product")

    @routes.get("/products/{product_id}/similar", response_model=SearchPage, responses=documented(400, 404))
    async def similar(
        service: ServiceDep,
        product_id: ProductId,
        options: Annotated[SearchOptions, params.options],
        k: Annotated[int, params.k] = 10,
        offset: Annotated[int, params.offset] = 0,
    ) -> dict[str, Any]:
        """Products like this one (kNN on its own image and title vectors), never itself."""
        response = await service.use(Search.similar, product_id_of(product_id, max_id),
                                     k=params.depth(offset, k), **options.kwargs())
        return page_json(response, offset, k)

    return routes
