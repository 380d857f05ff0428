"""An optional API key for the expensive and admin routes (``GET /audit``).

``serve`` reads it from the environment only (``CTIR_ES_SERVICE_API_KEY``, never a flag, so it
stays out of ``ps`` and shell history; ``CTIR_ES_API_KEY`` is Elasticsearch's credential). When
set, those routes need ``Authorization: Bearer <key>``, compared in constant time
(``hmac.compare_digest``); anything else is 401. The key is never logged nor echoed in an error.
Unset, the routes are open, as every other route is.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .runtime import ServiceDep

API_KEY_ENV = "CTIR_ES_SERVICE_API_KEY"

bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", description=(
    f"Needed by the expensive and admin routes when the server sets {API_KEY_ENV}: "
    "`Authorization: Bearer <key>`. Unset on the server, they are open."))


def key_matches(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


async def require_api_key(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the server has no key or the request carries it as a bearer token."""
    key = service.api_key
    if key is None:
        return
    if credentials is None or credentials.scheme.lower() != "bearer" or not key_matches(credentials.credentials, key):
        raise ApiError(401, "unauthorized", "this route needs the server's API key: send "
                                            "`Authorization: Bearer <key>`", {"WWW-Authenticate": "Bearer"})


ApiKeyDep = Depends(require_api_key)
