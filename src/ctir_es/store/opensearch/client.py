"""The client: elasticsearch-py's typed API, speaking plain JSON to OpenSearch.

OpenSearch forked from Elasticsearch 7.10 and serves the same REST calls the store makes
(``_bulk``, ``_msearch``, ``_mget``, ``_search``, mappings, aliases, scroll). Two things the
elasticsearch-py 8+/9 client does on every request stop it from talking to OpenSearch: it sends
vendor media types (``application/vnd.elasticsearch+json; compatible-with=9``), which OpenSearch
answers with 406 (opensearch-project/opensearch-py#46), and it raises
``UnsupportedProductError`` on a 2xx answer without ``X-Elastic-Product: Elasticsearch``.

``OpenSearchClient`` overrides ``perform_request`` - the one method every typed call (and every
namespaced client: ``indices``, ``nodes``, ...) goes through - to send plain ``application/json``
and ``application/x-ndjson`` over the same ``elastic_transport`` transport, without the
product check, raising the same exception classes (``elasticsearch.NotFoundError``, ...). So
the Elasticsearch package's session, lifecycle, bulk layer and store run unchanged on OpenSearch;
opensearch-py would be a second client with another call style and other exceptions, sharing
none of that code (docs/opensearch.md, "What differs from Elasticsearch").
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any

from elastic_transport import (
    ApiResponse,
    BinaryApiResponse,
    HeadApiResponse,
    HttpHeaders,
    ListApiResponse,
    ObjectApiResponse,
    TextApiResponse,
)
from elasticsearch import Elasticsearch
from elasticsearch.exceptions import HTTP_EXCEPTIONS, ApiError

from ..elasticsearch.connection import EsConnection, client_kwargs, install_log_redaction

_VENDOR = re.compile(r"application/vnd\.elasticsearch\+([A-Za-z0-9.-]+)(\s*;\s*compatible-with\s*=\s*\d+)?")


def plain_mimetype(value: str) -> str:
    """``application/vnd.elasticsearch+json; compatible-with=9`` -> ``application/json``."""
    return _VENDOR.sub(r"application/\1", value)


def _escape(value: Any) -> str:
    """One query-string value as Elasticsearch's clients write it (lists comma-joined, booleans
    lowercase)."""
    if isinstance(value, list | tuple):
        return ",".join(_escape(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def query_string(params: Mapping[str, Any]) -> str:
    return "&".join(f"{key}={urllib.parse.quote(_escape(value), ',*')}" for key, value in params.items())


class OpenSearchClient(Elasticsearch):
    """``Elasticsearch``'s typed API over plain JSON, for OpenSearch (see the module docstring).
    ``options()`` rebuilds ``type(self)``, so per-request options keep this class."""

    def perform_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any | None = None,
        endpoint_id: str | None = None,
        path_parts: Mapping[str, Any] | None = None,
    ) -> ApiResponse[Any]:
        request_headers = HttpHeaders(self._headers)
        if headers:
            request_headers.update(headers)
        for name in ("accept", "content-type"):
            if name in request_headers:
                request_headers[name] = plain_mimetype(request_headers[name])
        target = f"{path}?{query_string(params)}" if params else path
        meta, resp_body = self.transport.perform_request(
            method,
            target,
            headers=request_headers,
            body=body,
            request_timeout=self._request_timeout,
            max_retries=self._max_retries,
            retry_on_status=self._retry_on_status,
            retry_on_timeout=self._retry_on_timeout,
            client_meta=self._client_meta,
        )
        ignored = self._ignore_status if isinstance(self._ignore_status, Collection) else ()
        ok = 200 <= meta.status < 300 or (method == "HEAD" and meta.status == 404)
        if not ok and meta.status not in ignored:
            message: Any = str(resp_body)
            error = resp_body.get("error") if isinstance(resp_body, dict) else None
            if isinstance(error, dict) and "type" in error:
                message = error["type"]
            elif error is not None:
                message = error
            raise HTTP_EXCEPTIONS.get(meta.status, ApiError)(message=message, meta=meta, body=resp_body)
        if method == "HEAD":
            return HeadApiResponse(meta=meta)
        if isinstance(resp_body, dict):
            return ObjectApiResponse(body=resp_body, meta=meta)
        if isinstance(resp_body, list):
            return ListApiResponse(body=resp_body, meta=meta)
        if isinstance(resp_body, str):
            return TextApiResponse(body=resp_body, meta=meta)
        if isinstance(resp_body, bytes):
            return BinaryApiResponse(body=resp_body, meta=meta)
        return ApiResponse(body=resp_body, meta=meta)


def build_client(conn: EsConnection) -> OpenSearchClient:
    """The client for ``conn``; constructing it does no I/O. Secrets are kept out of the client
    libraries' log records, as for Elasticsearch."""
    if conn.secrets():
        install_log_redaction(conn)
    return OpenSearchClient(**client_kwargs(conn))
