"""One conversation with an OpenSearch cluster: ``EsSession`` with OpenSearch's client, vector
mapping and cluster facts. Error translation, notices and secret scrubbing are shared."""

from __future__ import annotations

from typing import Any

from ..elasticsearch.cluster import data_nodes_from_nodes, modules_from_nodes
from ..elasticsearch.session import EsSession
from .bodies.index import KNN_VECTORS
from .client import OpenSearchClient, build_client
from .cluster import OsClusterInfo


class OsSession(EsSession):
    engine = "OpenSearch"
    vectors = KNN_VECTORS
    start_hint = "make os-up (scripts/opensearch-local up), or set CTIR_ES_OS_URL"

    def new_client(self) -> OpenSearchClient:
        return build_client(self.connection)

    def cluster_info(self, refresh: bool = False) -> OsClusterInfo:
        """Version, distribution and plugins, read once per session: ``GET _nodes/plugins``
        (every node's version, modules and plugins; needs ``monitor``) and ``GET /`` (version
        and ``distribution``). Either may fail; what cannot be read stays unknown."""
        if isinstance(self._cluster, OsClusterInfo) and not refresh:
            return self._cluster
        nodes, nodes_error = self.nodes_info()
        version, modules = modules_from_nodes(nodes)
        root, _ = self._optional("reading the cluster version", lambda: self.client.info())
        number: Any = ((root or {}).get("version") or {}).get("number") or version or "0.0.0"
        distribution = ((root or {}).get("version") or {}).get("distribution")
        # Elasticsearch names no distribution but answers with its tagline
        if distribution is None and root and "build_flavor" in (root.get("version") or {}):
            distribution = "elasticsearch"
        if distribution is None and any(m.startswith("x-pack") for m in modules or ()):
            distribution = "elasticsearch"  # its test distribution answers GET / with 405
        info = OsClusterInfo(
            version=str(version or number),
            flavor=str(distribution or "default"),
            modules=modules,
            modules_error=nodes_error if modules is None else None,
            data_nodes=data_nodes_from_nodes(nodes),
        )
        self._cluster = info
        return info
