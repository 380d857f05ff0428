"""Server-side fusion on OpenSearch, as data: one ``hybrid`` query and the search pipeline that
fuses its sub-queries. For clusters with the neural-search plugin only.

Why it is data here and not a search path: the ``hybrid`` query and the search-phase results
processors live in the neural-search plugin (``opensearch-neural-search``), which Maven Central
does not serve, so no node here can run them; the store sends them only when the cluster
reports the plugin (``cluster.OsClusterInfo.fusion_support``), and fuses client-side otherwise,
exactly like the other stores (``ctir_es.ranking.fusion``). References:

- ``hybrid``: ``{"query": {"hybrid": {"queries": [...]}}}``, at most 5 sub-queries, a
  document scored by each sub-query it matches (query-dsl/compound/hybrid);
- ``normalization-processor`` (2.10+): ``normalization.technique`` ``min_max`` and
  ``combination.technique`` ``arithmetic_mean`` with ``parameters.weights``, one per
  sub-query, each in [0, 1], summing to 1 - the min-max linear fusion of ``ranking.fusion``
  (search-pipelines/normalization-processor);
- ``score-ranker-processor`` (2.19+): ``combination.technique`` ``rrf`` with
  ``rank_constant`` (default 60, ours ``RRF_K``) and optional weights
  (search-pipelines/score-ranker-processor);
- each sub-query gathers the request's ``size`` hits per shard before the pipeline runs
  (the normalization processor's docs advise 100-200), so ``size`` is the fusion window and
  the store keeps the top ``k`` of the fused list;
- the pipeline travels in the request body (``"search_pipeline": {...}``, a temporary pipeline
  for that request only: search-pipelines/using-search-pipeline), so no pipeline is created
  on the cluster and the user needs no cluster privilege for it.

Filters go into every sub-query (the lexical ``bool.filter`` and each ``knn.filter``), as in
the client-side path, so every list is pre-filtered alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ctir_es.errors import QueryError
from ctir_es.filters import Filter
from ctir_es.schema import LexicalQuery, VectorQuery
from ctir_es.vocabulary import LEXICAL_SOURCE, RRF_K

from ...elasticsearch.bodies.filters import es_filter
from ...elasticsearch.bodies.search import check_k, text_query
from .search import CROSS_FIELDS, knn_clause

MAX_SUBQUERIES = 5  # the hybrid query takes at most five
FUSIONS: tuple[str, ...] = ("rrf", "linear")


def _weights(names: Sequence[str], weights: Mapping[str, float] | None) -> list[float]:
    """Per sub-query weights in [0, 1] summing to 1 (the processors' rule), from the caller's
    per-source weights (default 1 each); only their ratios matter to the fusion."""
    raw = []
    for name in names:
        w = float((weights or {}).get(name, 1.0))
        if not math.isfinite(w) or w < 0:
            raise QueryError(f"weight for {name} must be a finite number >= 0, got {w!r}")
        raw.append(w)
    total = sum(raw)
    if total <= 0:
        raise QueryError("at least one source needs a weight above 0")
    return [round(w / total, 6) for w in raw]


def normalization_pipeline(names: Sequence[str], weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A search pipeline fusing a hybrid query's sub-queries (in ``names`` order) by min-max
    normalisation and a weighted arithmetic mean."""
    return {
        "description": "ctir-es: min-max linear fusion of a hybrid query",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": "min_max"},
                    "combination": {
                        "technique": "arithmetic_mean",
                        "parameters": {"weights": _weights(names, weights)},
                    },
                }
            }
        ],
    }


def rrf_pipeline(
    names: Sequence[str], weights: Mapping[str, float] | None = None, rank_constant: int = RRF_K
) -> dict[str, Any]:
    """A search pipeline fusing a hybrid query's sub-queries by reciprocal rank fusion."""
    if not isinstance(rank_constant, int) or rank_constant < 1:
        raise QueryError(f"rank_constant must be an integer >= 1, got {rank_constant!r}")
    combination: dict[str, Any] = {"technique": "rrf", "rank_constant": rank_constant}
    if weights and len({float(weights.get(n, 1.0)) for n in names}) > 1:
        combination["parameters"] = {"weights": _weights(names, weights)}
    return {
        "description": "ctir-es: reciprocal rank fusion of a hybrid query",
        "phase_results_processors": [{"score-ranker-processor": {"combination": combination}}],
    }


def hybrid_query(
    lexical: LexicalQuery | None,
    vectors: Sequence[VectorQuery],
    filters: Sequence[Filter] = (),
    *,
    window: int,
    lexical_type: str = CROSS_FIELDS,
    ef_search: bool = True,
) -> tuple[list[str], dict[str, Any] | None]:
    """Source names and the ``hybrid`` query over them (each ``window`` deep), or None when
    fewer than two sources have something to search."""
    check_k(window)
    clauses = es_filter(filters)
    names: list[str] = []
    queries: list[dict[str, Any]] = []
    if lexical is not None:
        query = text_query(lexical.text, lexical.weights, lexical_type)
        if query is not None:
            names.append(LEXICAL_SOURCE)
            queries.append({"bool": {"must": [query], "filter": clauses}} if clauses else query)
    for vq in vectors:
        names.append(vq.name)
        queries.append(knn_clause(vq, window, filters, ef_search=ef_search))
    if len(queries) > MAX_SUBQUERIES:
        raise QueryError(
            f"a hybrid query takes at most {MAX_SUBQUERIES} sub-queries, this search has {len(queries)}"
        )
    if len(queries) < 2:
        return names, None
    return names, {"hybrid": {"queries": queries}}


def hybrid_body(
    method: str,
    lexical: LexicalQuery | None,
    vectors: Sequence[VectorQuery],
    k: int,
    filters: Sequence[Filter] = (),
    *,
    window: int | None = None,
    weights: Mapping[str, float] | None = None,
    lexical_type: str = CROSS_FIELDS,
    ef_search: bool = True,
) -> tuple[list[str], dict[str, Any] | None]:
    """Source names and ONE ``_search`` body fusing them on the cluster (the hybrid query and
    its temporary pipeline), ``window`` deep, or None when fewer than two sources have
    something to search. The fused list is ``window`` long: the caller keeps its top ``k``."""
    if method not in FUSIONS:
        raise QueryError(f"unknown server-side fusion {method!r}; supported: {', '.join(FUSIONS)}")
    check_k(k)
    depth = max(k, window or k)
    names, query = hybrid_query(
        lexical, vectors, filters, window=depth, lexical_type=lexical_type, ef_search=ef_search
    )
    if query is None:
        return names, None
    pipeline = rrf_pipeline(names, weights) if method == "rrf" else normalization_pipeline(names, weights)
    # each sub-query collects ``size`` hits per shard before the pipeline fuses them, so size is
    # the window (the caller keeps the top k); total-hit tracking stays the default, as the
    # plugin's collector expects
    return names, {"size": depth, "_source": False, "query": query, "search_pipeline": pipeline}
