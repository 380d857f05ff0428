"""The web page: ``/`` and its static files (script, style sheet and the icon the page links,
so browsers never ask for a missing /favicon.ico), read once from the package (no path from a
request ever reaches the filesystem)."""

from collections.abc import Mapping
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from ..errors import ApiError

STATIC_FILES: Mapping[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
STATIC: Mapping[str, bytes] = {
    name: resources.files("ctir_es.service").joinpath("static", name).read_bytes() for name in STATIC_FILES
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> Response:
    return Response(STATIC["index.html"], media_type=STATIC_FILES["index.html"])


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC:  # a fixed list
        raise ApiError(404, "not_found", "no such file")
    return Response(STATIC[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})
