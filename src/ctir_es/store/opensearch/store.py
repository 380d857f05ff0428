"""``OpenSearchStore``: the ``Store`` protocol (and every optional capability) on OpenSearch.

It is ``ElasticsearchStore`` with OpenSearch's dialect: the session (``OsSession``: the client
that speaks plain JSON, ``knn_vector`` mappings, the cluster's plugins) and the search bodies
(``bodies.search``: the ``knn`` query, the lexical query type the version has). Everything else
is shared and runs unchanged: versioned indices behind an alias, bulk writes with retries and
checkpoints, ``_mget`` reads, doc-value summaries, category counts, metadata, vector writes in
place, reindex and swap. Fusion is client-side (``ctir_es.ranking.fusion``), as on every store;
``search_fused`` runs one ``hybrid`` query only on a cluster that reports the neural-search
plugin (``bodies.hybrid``), and otherwise says why it cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...errors import ConfigError
from ...filters import Filter
from ...schema import IndexSchema, LexicalQuery, VectorQuery
from ..elasticsearch import lifecycle
from ..elasticsearch.store import ElasticsearchStore
from .bodies import hybrid
from .bodies import search as search_bodies
from .cluster import KNN_PLUGIN, OsClusterInfo
from .session import OsSession

ENV_PREFIX = "CTIR_ES_OS_"  # CTIR_ES_OS_URL, CTIR_ES_OS_USERNAME, CTIR_ES_OS_PASSWORD, ...


class OpenSearchStore(ElasticsearchStore):
    """Products behind one alias on OpenSearch (``{index}`` -> ``{index}-vN``), vectors in
    ``knn_vector`` fields on the Lucene engine; the options are ``ElasticsearchStore``'s
    (``index_options``: ``hnsw`` only; ``num_candidates``: the kNN query's ``ef_search``;
    ``multi_match_type``: unset = what the cluster has, see ``cluster.OsClusterInfo``)."""

    backend = "opensearch"
    session_class = OsSession

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        if self.connection.api_key:
            raise ConfigError(
                "OpenSearch takes a username/password (CTIR_ES_OS_USERNAME, CTIR_ES_OS_PASSWORD) "
                "or a bearer token (CTIR_ES_OS_BEARER_TOKEN), not an API key"
            )

    @property
    def multi_match_type(self) -> str:
        return self._multi_match_type or self.cluster_info().lexical_type

    def cluster_info(self, refresh: bool = False) -> OsClusterInfo:
        info = self.session.cluster_info(refresh)
        assert isinstance(info, OsClusterInfo)  # OsSession reads OpenSearch's facts
        return info

    def _check_cluster(self) -> None:
        """An Elasticsearch URL, or a cluster without the k-NN plugin, fails before anything
        is written, with the way out."""
        info = self.cluster_info()
        if not info.is_opensearch:
            raise ConfigError(
                f"{self.connection.redacted_url} is {info.flavor}, not OpenSearch: "
                "give it as --es-url (CTIR_ES_URL) instead of --os-url"
            )
        if not info.knn:
            raise ConfigError(
                f"OpenSearch at {self.connection.redacted_url} has no k-NN plugin ({KNN_PLUGIN}); "
                "install it (scripts/opensearch-local does) to store vectors"
            )

    def setup(self, schema: IndexSchema) -> IndexSchema:
        self._check_cluster()
        return super().setup(schema)

    def _msearch_body(
        self, lexical: LexicalQuery | None, vectors: Sequence[VectorQuery], k: int, filters: Sequence[Filter]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        return search_bodies.msearch_body(
            self.index,
            lexical,
            vectors,
            k,
            filters,
            lexical_type=self.multi_match_type if lexical is not None else search_bodies.CROSS_FIELDS,
            ef_search=self.cluster_info().ef_search_in_query if vectors else True,
        )

    def _score_converters(
        self, vectors: Sequence[VectorQuery], schema: IndexSchema | None
    ) -> dict[str, Callable[[float], float] | None]:
        return search_bodies.vector_score_converters(vectors, schema)

    def _fusion_support(self, method: str, weights: Mapping[str, float] | None) -> tuple[bool, str]:
        """Server-side fusion is one ``hybrid`` query (``bodies.hybrid``), sent only where the
        cluster reports the neural-search plugin; ``search_fused`` otherwise raises
        ``ServerFusionUnavailable`` with the reason and the caller fuses client-side."""
        return self.cluster_info().fusion_support(method)

    def _fused_body(
        self,
        method: str,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter],
        depth: int,
        weights: Mapping[str, float] | None,
    ) -> dict[str, Any] | None:
        return hybrid.hybrid_body(
            method,
            lexical,
            vectors,
            k,
            filters,
            window=depth,
            weights=weights,
            lexical_type=self.multi_match_type,
            ef_search=self.cluster_info().ef_search_in_query,
        )[1]

    def _send_fused(self, method: str, body: dict[str, Any]) -> Any:
        # the typed search() knows no search_pipeline in the body: the request as it is
        return self.session.body(
            f"searching {self.index!r} (hybrid query, {method} fusion)",
            lambda: self.client.perform_request(
                "POST",
                f"/{self.index}/_search",
                headers={"accept": "application/json", "content-type": "application/json"},
                body=body,
            ),
        )

    def status(self) -> dict[str, Any]:
        out = lifecycle.status(self.session, self.index)
        out["engine"] = "opensearch"
        return out
