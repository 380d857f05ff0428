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

from ...errors import ConfigError, LicenceRequired, QueryError, ServerFusionUnavailable
from ...filters import Filter
from ...schema import Hit, IndexSchema, LexicalQuery, VectorQuery
from ..elasticsearch import lifecycle
from ..elasticsearch.bodies import responses
from ..elasticsearch.bodies import search as es_search
from ..elasticsearch.store import MIN_FUSION_WINDOW, ElasticsearchStore
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

    def search_fused(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
        *,
        method: str = "rrf",
        weights: Mapping[str, float] | None = None,
        window: int | None = None,
    ) -> list[Hit]:
        """One ``hybrid`` query fused by a temporary search pipeline (``bodies.hybrid``) where
        the cluster reports the neural-search plugin; else ``ServerFusionUnavailable`` with
        the reason (logged once), and the caller fuses ``search`` runs itself."""
        if method not in hybrid.FUSIONS:
            raise QueryError(f"unknown fusion {method!r}; supported: {', '.join(hybrid.FUSIONS)}")
        depth = window or min(es_search.MAX_K, max(MIN_FUSION_WINDOW, 2 * k))
        info = self.cluster_info()
        ok, why = info.fusion_support(method)
        if ok:
            filters = self._checked_filters(filters)
            schema = self._query_schema() if vectors else None
            es_search.check_vector_queries(vectors, schema)
            _names, body = hybrid.hybrid_body(
                method,
                lexical,
                self._with_candidates(vectors),
                k,
                filters,
                window=depth,
                weights=weights,
                lexical_type=self.multi_match_type,
                ef_search=info.ef_search_in_query,
            )
            if body is None:
                raise ServerFusionUnavailable(method)  # one source: nothing to fuse, no notice
            try:
                response = self.session.body(
                    f"searching {self.index!r} (hybrid query, {method} fusion)",
                    lambda: self.client.perform_request(
                        "POST",
                        f"/{self.index}/_search",
                        headers={"accept": "application/json", "content-type": "application/json"},
                        body=body,
                    ),
                )
            except LicenceRequired as exc:  # a security plugin refusing the feature
                why = str(exc)
            else:
                return responses.parse_hits(response)[:k]
        unavailable = ServerFusionUnavailable(method, why)
        self.session.notice(f"{unavailable}; fusing client-side")
        raise unavailable

    def status(self) -> dict[str, Any]:
        out = lifecycle.status(self.session, self.index)
        out["engine"] = "opensearch"
        return out
