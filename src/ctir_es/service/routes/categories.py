"""The catalogue's categories: the tree (``GET /categories``), suggested categories for a
product, text or image (``POST /categorize``), and products that look filed in the wrong
category (``GET /audit``)."""

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile

from ...errors import Unsupported
from ...products import format_category_path, parse_category_path
from ...search import Search
from ...store.base import CategoryCounter
from ..auth import ApiKeyDep
from ..categorize import CategorizeIn, categorize_input
from ..category_tree import DEFAULT_NODES, CategoryIndex, TreeCache, normalise_path
from ..errors import ApiError, documented
from ..models import AuditOut, CategorizeOut, CategoryTreeOut, ErrorResponse
from ..params import Params, category_filters
from ..runtime import ServiceDep


def router(params: Params) -> APIRouter:
    routes = APIRouter(tags=["categories"])
    limits = params.limits

    trees = TreeCache()
    default_nodes = min(DEFAULT_NODES, limits.max_category_nodes)

    @routes.get("/categories", response_model=CategoryTreeOut, responses={
        **documented(409), 404: {"model": ErrorResponse, "description": "No category at `under`."}})
    async def categories(
        service: ServiceDep,
        depth: Annotated[int, Query(ge=0, le=32, description="Levels to return below the listed level "
                                                                "(1: the listed level only); 0: all.")] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.max_category_nodes, description=(
            f"Nodes in the answer at most (default {default_nodes:,}), filled breadth-first: the listed "
            "level first, then each next level. `truncated` says the limit cut the answer."))] = default_nodes,
        under: Annotated[str | None, Query(max_length=limits.max_query_chars, description=(
            "List this node's subtree (a `label` such as 'Kitchen > Pans'), not the whole tree: how to "
            "get the children of a node whose `children_total` is more than it lists."))] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description=(
            "Skip this many nodes of the listed level (the roots, or the children of `under`): the "
            "previous answer's `next_offset` pages through a wide level."))] = 0,
    ) -> dict[str, Any]:
        """The category tree with product counts per node (children sorted by name), at most `limit`
        nodes per answer: each node's `children_total` says how many children it has; page with
        `under` and `offset`. Counts may lag writes by up to ten seconds (the tree is shared by the
        requests of that time)."""
        path = normalise_path(parse_category_path(under or ""))

        def make(search: Search) -> CategoryIndex:
            if not isinstance(search.store, CategoryCounter):
                raise Unsupported(f"{type(search.store).__name__} cannot list categories yet")
            return CategoryIndex.build(search.store.category_counts(), search.store.count())

        owner = service.search
        try:
            index = await trees.get(owner, lambda work: service.use(lambda _search: work()),
                                    lambda: make(owner), limits.timeout)
        except TimeoutError:
            raise ApiError(503, "timeout", f"the request took longer than {limits.timeout:g} s",
                           {"Retry-After": "5"}) from None
        if not index.has(path):
            raise ApiError(404, "not_found", f"no category {format_category_path(path)!r} in this index "
                                             "(`under` takes a node's `label`)")
        return index.page(path, offset=offset, limit=limit, depth=depth)

    @routes.post("/categorize", response_model=CategorizeOut, responses=documented(400, 404, 409, 413, 415),
                 openapi_extra={"requestBody": {"content": {"application/json": {
                     "schema": CategorizeIn.model_json_schema()}}}})
    async def categorize(
        service: ServiceDep,
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
            data = await service.read_upload(file)
            suggestion = await service.use(lambda search: search.categorize(service.decode(data), **options))
            return suggestion.to_json()
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(422, "invalid_request", "send an image (multipart/form-data, field `file`) or a JSON "
                                                   'product: {"id": ...}, {"text": ...} or {"title": ...}')
        body = categorize_input(await request.body(), limits.max_id_chars, limits.max_query_chars)
        return (await service.use(Search.categorize, **body, **options)).to_json()

    @routes.get("/audit", response_model=AuditOut, responses=documented(400, 401, 409), dependencies=[ApiKeyDep],
                description=(
        "Products whose stored category disagrees most with what the other products say, most suspicious "
        f"first, each with the suggested category and the confidence gap. One request judges at most "
        f"{limits.max_audit:,} products: narrow a larger selection with `within` (a category), or page "
        "through it with `offset` (each page ranks its own products); otherwise it is refused with 422 "
        "`too_many_products` before any work. Needs the server's API key when it has one."))
    async def audit(
        service: ServiceDep,
        k: Annotated[int, Query(ge=1, le=200, description="Most suspicious products to return.")] = 20,
        depth: Annotated[int, Query(ge=1, le=32, description="Levels of the stored path compared.")] = 3,
        within: Annotated[str | None, params.within] = None,
        offset: Annotated[int | None, Query(ge=0, le=10_000_000, description=(
            f"Page through a selection of more than {limits.max_audit:,} products: audit the "
            f"{limits.max_audit:,} from this position (in id order); `next_offset` names the next page. "
            "Without it such a selection is refused (422)."))] = None,
    ) -> dict[str, Any]:
        """Products that look filed in the wrong category, within a bounded amount of work."""
        cap = limits.max_audit
        filters = category_filters(within)

        def bounded(search: Search) -> dict[str, Any]:
            selection = search.audit_selection(filters)
            total = len(selection)
            if offset is None and total > cap:
                raise ApiError(422, "too_many_products", (
                    f"this audit would judge {total:,} products; one request judges at most {cap:,}: narrow it "
                    f"with within=CATEGORY, or page through it with offset=0, {cap}, {2 * cap}, ..."))
            start = offset or 0
            page = selection[start : start + cap]
            report = search.audit(page, k=k, depth=depth).to_json()
            following = start + cap if start + cap < total else None
            return {**report, "total": total, "offset": start, "next_offset": following}

        return await service.use_apart(bounded)  # never on the workers searches use

    return routes
