"""One conversation with a cluster: the lazy client, error translation, notices, cluster facts.

``ElasticsearchStore`` and ``lifecycle`` both talk to Elasticsearch through an ``EsSession``:
``session.call(what, fn)`` runs one request and turns every client exception into a
``StoreError`` with secrets scrubbed, so no caller handles client exceptions or reaches into
another object's private state. Construction does no I/O; the first call connects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import elastic_transport
import elasticsearch
from elasticsearch import Elasticsearch

from ...errors import AccessDenied, CtirError, LicenceRequired, StoreError, Unreachable
from .bodies.index import ELASTICSEARCH, VectorMappings
from .bodies.responses import error_class, error_text, refused_feature
from .cluster import ClusterInfo, data_nodes_from_nodes, modules_from_nodes
from .connection import EsConnection, build_client

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def response_body(response: Any) -> Any:
    """The JSON body of a client response (``ObjectApiResponse.body``) or the value itself."""
    return getattr(response, "body", response)


class EsSession:
    """The client for ``connection`` (built on first use) and what is known of the cluster.

    ``engine``, ``vectors`` and ``start_hint`` are what another engine speaking the same REST
    dialect changes (``ctir_es.store.opensearch.session.OsSession``)."""

    engine = "Elasticsearch"
    vectors: VectorMappings = ELASTICSEARCH  # how this engine maps vector fields
    start_hint = "scripts/elasticsearch-local up, or set CTIR_ES_URL"

    def __init__(self, connection: EsConnection, client: Elasticsearch | None = None) -> None:
        self.connection = connection
        self._client = client
        self._cluster: ClusterInfo | None = None
        self._notices: set[str] = set()

    @property
    def client(self) -> Elasticsearch:
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def new_client(self) -> Elasticsearch:
        """The engine's client for ``connection`` (no I/O)."""
        return build_client(self.connection)

    def call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one request; client errors become ``StoreError`` with secrets removed."""
        conn = self.connection
        try:
            return fn()
        except CtirError:
            raise
        except elasticsearch.AuthenticationException:
            raise StoreError(
                f"{what}: {self.engine} at {conn.redacted_url} rejected the credentials (401); "
                "set CTIR_ES_API_KEY, CTIR_ES_USERNAME and CTIR_ES_PASSWORD, or CTIR_ES_BEARER_TOKEN"
            ) from None
        except elasticsearch.ApiError as exc:
            raise self.api_error(what, exc.meta.status, exc.body) from None
        except (elastic_transport.TransportError, elasticsearch.TransportError) as exc:
            hint = ""
            if isinstance(exc, elastic_transport.TlsError):
                hint = " (TLS: set CTIR_ES_CA_CERTS or CTIR_ES_SSL_FINGERPRINT)"
            raise Unreachable(
                f"{what}: cannot reach {self.engine} at {conn.redacted_url}: "
                f"{conn.scrub(type(exc).__name__ + ': ' + str(exc))[:300]}{hint}; is it running? "
                f"({self.start_hint})"
            ) from None

    def api_error(self, what: str, status: int, body: Any) -> StoreError:
        """The typed error for an error response (its class from ``error_class``), secrets
        scrubbed from the message."""
        conn = self.connection
        kind = error_class(status, body)
        detail = conn.scrub(error_text(body))
        if kind is LicenceRequired:
            return LicenceRequired(
                f"{what}: the cluster's licence does not cover {refused_feature(body)!r} "
                f"({status}): {detail}"
            )
        if kind is AccessDenied:
            return AccessDenied(
                f"{what}: the {self.engine} user lacks a privilege on {conn.index!r} ({status}): "
                f"{detail}. Searching needs `read` and "
                "`view_index_metadata` on the index and its versions; ingesting also `write`, "
                "`create_index` and `manage` (docs/elasticsearch.md, \"Users and privileges\")"
            )
        return kind(f"{what} failed ({status}): {detail}")

    def body(self, what: str, fn: Callable[[], Any]) -> Any:
        """``call`` returning the JSON body of the response."""
        return self.call(what, lambda: response_body(fn()))

    def notice(self, text: str) -> None:
        """A one-line notice, logged once per session and message."""
        if text not in self._notices:
            self._notices.add(text)
            log.warning("%s", text)

    def _optional(self, what: str, fn: Callable[[], Any]) -> tuple[Any, str | None]:
        """A request that may be refused (403 without ``monitor``, 405/404 where an API is
        missing): ``(body, None)`` or ``(None, why)``; never raises a ``StoreError``."""
        try:
            return self.body(what, fn), None
        except StoreError as exc:
            return None, str(exc)[:200]

    def nodes_info(self) -> tuple[Any, str | None]:
        """``GET _nodes/plugins`` (version, roles, modules and plugins of every node; needs
        ``monitor``): ``(body, None)`` or ``(None, why)``."""
        return self._optional(
            "reading the cluster's modules",
            lambda: self.client.nodes.info(
                metric="plugins",
                filter_path="nodes.*.version,nodes.*.roles,nodes.*.modules.name,nodes.*.plugins.name",
            ),
        )

    def cluster_info(self, refresh: bool = False) -> ClusterInfo:
        """Version, licence and modules, read once per session.

        ``GET _nodes/plugins`` (version and modules of every node; needs ``monitor``), else
        ``GET /`` (version and flavour; absent from the test distribution, and Serverless has
        no ``_nodes``), and ``GET _license``. Each may fail: what cannot be read stays
        unknown, and unknown modules are taken to be the default distribution's.
        """
        if self._cluster is not None and not refresh:
            return self._cluster
        nodes, nodes_error = self.nodes_info()
        version, modules = modules_from_nodes(nodes)
        root: dict[str, Any] | None = None
        if version is None:  # no monitor privilege, or Serverless (no _nodes API)
            root, _ = self._optional("reading the cluster version", lambda: self.client.info())
        licence: dict[str, Any] | None = None
        licence_error: str | None = None
        flavor = ((root or {}).get("version") or {}).get("build_flavor")
        if flavor != "serverless":
            licence, licence_error = self._optional(
                "reading the cluster licence", lambda: self.client.license.get()
            )
        self._cluster = ClusterInfo.from_responses(
            root or {"version": {"number": version}} if version else root or {},
            licence,
            licence_error,
            modules=modules,
            modules_error=nodes_error if modules is None else None,
            data_nodes=data_nodes_from_nodes(nodes),
        )
        return self._cluster

    def forget_cluster(self) -> None:
        """Read the cluster facts again next time (e.g. after a licence error)."""
        self._cluster = None

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
