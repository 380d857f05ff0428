"""One error shape for every 4xx/5xx: ``{"error": {"code": "...", "message": "..."}}``.

Library errors (the ``CtirError`` family) map to statuses here; validation errors, unknown
routes (404) and wrong methods (405) get the same shape; anything unexpected is a 500 whose
message says nothing about the server's internals (the traceback goes to the log only).

5xx from the store: 503 ``unavailable`` only where a retry may succeed (the store is unreachable
or locked by a writer, an encoder could not run); a damaged store is 500 ``store_corrupted``, a
store that refused the service (no privilege, no licence for the feature) 502 ``store_refused``,
a wrong configuration 500 ``misconfigured``: a client that retries those only adds load.

422 versus 400: a request that breaks the parameters the API declares in ``/openapi.json``
(missing or blank ``q``, ``k`` out of range, a wrong type, a malformed JSON body) is 422, as
FastAPI answers any validation error; a well-formed request the library cannot plan (a
``QueryError`` or ``FilterError``: an unknown source in ``weights``, a weight out of range, an
empty category path in ``within``) is 400 ``bad_query``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AccessDenied,
    ConfigError,
    CtirError,
    FilterError,
    ImageError,
    LicenceRequired,
    NotFound,
    QueryError,
    SchemaMismatch,
    StoreCorrupted,
    Unsupported,
)
from .models import ErrorResponse

log = logging.getLogger("ctir_es.service")

# ImageError.reason -> (status, code)
IMAGE_STATUS: dict[str, tuple[int, str]] = {
    "too_large": (413, "image_too_large"),
    "decompression_bomb": (413, "image_too_large"),
    "not_an_image": (415, "unsupported_image"),
    "corrupt": (422, "corrupt_image"),
}
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


NOT_BLANK = r"\S"  # the pattern of text parameters that must hold more than whitespace

# What each status means in the OpenAPI schema (``documented``).
STATUS_DOCS: dict[int, str] = {
    400: "The query cannot be planned (bad weights, filters, ...).",
    401: "The server's API key is needed (`Authorization: Bearer <key>`).",
    404: "No such product.",
    409: "The index has no image vectors (ingest with CLIP weights).",
    413: "The upload is too large (bytes or pixels).",
    415: "The upload is not a supported raster image.",
    422: "Invalid parameters (missing, blank, out of limits, wrong type).",
    500: "The store is damaged, the index was built with other models, or the server is misconfigured.",
    502: "The store refused the service (a missing privilege or licence).",
    503: "Timed out or the store/models are unavailable; a retry may succeed.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: its error statuses, each with the one error shape."""
    return {status: {"model": ErrorResponse, "description": STATUS_DOCS[status]}
            for status in sorted({*statuses, 422, 500, 502, 503})}


class ApiError(Exception):
    """Raised by endpoints for a specific status and code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message[:1000]), status_code=status, headers=headers)


def status_for(exc: CtirError) -> tuple[int, str]:
    """The HTTP status and code of a library error."""
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, Unsupported):
        return 409, "unsupported"
    if isinstance(exc, ImageError):
        return IMAGE_STATUS.get(exc.reason, (400, "bad_image"))
    if isinstance(exc, (QueryError, FilterError)):
        return 400, "bad_query"
    if isinstance(exc, SchemaMismatch):
        return 500, "index_mismatch"
    if isinstance(exc, StoreCorrupted):
        return 500, "store_corrupted"
    if isinstance(exc, (AccessDenied, LicenceRequired)):
        return 502, "store_refused"
    if isinstance(exc, ConfigError):
        return 500, "misconfigured"
    return 503, "unavailable"  # an unreachable or locked store, an encoder: a retry may succeed


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == NOT_BLANK:
            msg = "must not be blank"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(CtirError)
    async def _ctir(_: Request, exc: CtirError) -> JSONResponse:
        status, code = status_for(exc)
        if status >= 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc)
        return error_response(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "error parsing the body",
            # raised from the parser's own exception (its wording is FastAPI's, not branched on)
            message = "the request body could not be parsed (send multipart/form-data with a `file` field)"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "internal server error (details are in the server log)")
