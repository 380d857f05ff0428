"""What an OpenSearch cluster can do: version, distribution and plugins (``GET _nodes/plugins``,
``GET /``); OpenSearch has no licence API and no retrievers.

- vectors need the k-NN plugin (``opensearch-knn``); only its Lucene engine runs without the
  plugin's native libraries, and only it pre-filters (docs: vector-search/filter-search-knn);
- ``combined_fields`` (BM25F, what the Elasticsearch store uses) arrived in OpenSearch 3.2
  (opensearch-project/OpenSearch#18724); before it the lexical query is ``multi_match``
  ``cross_fields``, the term-centric query that blends each term's statistics across fields;
- ``method_parameters.ef_search`` in a ``knn`` query: 2.16+ (query-dsl/specialized/k-nn); the
  Lucene engine searches with ``max(k, ef_search)`` candidates;
- server-side hybrid fusion needs the neural-search plugin (``opensearch-neural-search``: the
  ``hybrid`` query with ``normalization-processor`` since 2.10, RRF's ``score-ranker-processor``
  since 2.19). Unknown plugins (no ``monitor`` privilege) count as absent for it: a hybrid
  query is only ever sent to a cluster that reported the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..elasticsearch.cluster import ClusterInfo

KNN_PLUGIN = "opensearch-knn"
NEURAL_PLUGIN = "opensearch-neural-search"
COMBINED_FIELDS_MIN_VERSION = (3, 2)
EF_SEARCH_MIN_VERSION = (2, 16)
# method -> (first version, search phase results processor)
HYBRID_MIN_VERSION: dict[str, tuple[int, int]] = {"linear": (2, 10), "rrf": (2, 19)}
DISTRIBUTION = "opensearch"


@dataclass(frozen=True, slots=True)
class OsClusterInfo(ClusterInfo):
    """``ClusterInfo`` read as OpenSearch: ``flavor`` holds ``version.distribution``."""

    def has_plugin(self, name: str) -> bool:
        """Whether every node reported plugin ``name`` (unknown = no)."""
        return self.modules is not None and name in self.modules

    @property
    def knn(self) -> bool:
        """Whether the k-NN plugin is there (assumed when the plugins cannot be read)."""
        return self.has_module(KNN_PLUGIN)

    @property
    def is_opensearch(self) -> bool:
        """False only when ``GET /`` named another distribution (an Elasticsearch URL)."""
        return self.flavor in (DISTRIBUTION, "default")

    @property
    def lexical_type(self) -> str:
        """``combined_fields`` on 3.2+, else ``cross_fields`` (an unknown version: 2.x)."""
        if self.version_known and self.version_tuple[:2] >= COMBINED_FIELDS_MIN_VERSION:
            return "combined_fields"
        return "cross_fields"

    @property
    def ef_search_in_query(self) -> bool:
        """Whether a ``knn`` query may carry ``method_parameters.ef_search`` (2.16+; unknown:
        yes, the versions any current cluster runs)."""
        return not self.version_known or self.version_tuple[:2] >= EF_SEARCH_MIN_VERSION

    def index_options_support(self, index_options: str) -> tuple[bool, str]:
        return True, ""  # one type, Lucene's HNSW, in every 2.x and 3.x

    def rescore_vector(self, index_options: str | None) -> bool:
        return False  # float vectors: the scores are exact already

    def fusion_support(self, method: str) -> tuple[bool, str]:
        """``(allowed, reason)`` for one ``hybrid`` query fused by a search pipeline."""
        minimum = HYBRID_MIN_VERSION.get(method)
        if minimum is None:
            return False, f"no server-side {method!r} fusion (supported: {', '.join(HYBRID_MIN_VERSION)})"
        if not self.has_plugin(NEURAL_PLUGIN):
            why = "could not be read" if self.modules is None else "do not include it"
            return False, (
                f"the hybrid query needs the {NEURAL_PLUGIN} plugin; the cluster's plugins {why}"
            )
        if not self.version_known:
            return False, "the cluster's version could not be read"
        if self.version_tuple[:2] < minimum:
            need = ".".join(map(str, minimum))
            return False, f"{method} fusion of a hybrid query needs OpenSearch {need}+, the cluster runs {self.version}"
        return True, f"hybrid query with {method} fusion on OpenSearch {self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "distribution": self.flavor,
            "plugins": sorted(self.modules) if self.modules is not None else None,
            "knn": self.knn,
            "text_analyzer": self.text_analyzer,
            "lexical_query": self.lexical_type,
            "data_nodes": self.data_nodes,
            "server_reindex": self.server_reindex,
            "server_side_fusion": {
                method: {"allowed": ok, "reason": why}
                for method in HYBRID_MIN_VERSION
                for ok, why in [self.fusion_support(method)]
            },
        }
