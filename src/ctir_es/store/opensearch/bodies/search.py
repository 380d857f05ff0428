"""OpenSearch search bodies: the ``knn`` query and the lexical query, for one ``_msearch``.

- kNN is a query clause, ``{"query": {"knn": {field: {"vector", "k", "filter",
  "method_parameters"}}}}`` (query-dsl/specialized/k-nn), not Elasticsearch's top-level
  ``knn`` option. The filter (the same ``bool`` clauses as Elasticsearch's) goes inside the
  clause: on the Lucene engine it restricts the graph search itself, so ``k`` hits come back
  whenever ``k`` products match (vector-search/filter-search-knn/efficient-knn-filtering).
- Candidates: ``method_parameters.ef_search`` (2.16+) = Elasticsearch's ``num_candidates``
  (``max(100, 2k)`` by default). The Lucene engine searches with ``max(k, ef_search)`` and may
  return that many hits per shard, so ``size`` keeps ``k``. Before 2.16 ``k`` itself carries
  the candidates (the same Lucene search), ``size`` again keeping ``k``.
- Lexical: Elasticsearch's body (same fields, weights, filters, tie-break), with the query type
  the cluster has: ``combined_fields`` (BM25F) on 3.2+, ``multi_match`` ``cross_fields`` before
  (``cluster.OsClusterInfo.lexical_type``).
- Scores: ``cosinesimil`` scores ``(1 + cos) / 2`` as Elasticsearch's cosine does
  (knn-spaces); ``innerproduct`` on Lucene scores ``ip + 1`` for ``ip > 0`` and
  ``1 / (1 - ip)`` otherwise; ``l2`` scores ``1 / (1 + d²)`` and is passed through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ctir_es.errors import QueryError
from ctir_es.filters import Filter
from ctir_es.schema import IndexSchema, LexicalQuery, VectorQuery

from ...elasticsearch.bodies.documents import vector_list
from ...elasticsearch.bodies.filters import es_filter
from ...elasticsearch.bodies.responses import cosine_from_score
from ...elasticsearch.bodies.search import (
    TIE_BREAK,
    base_body,
    check_k,
    num_candidates,
)
from ...elasticsearch.bodies.search import msearch_body as es_msearch_body

CROSS_FIELDS = "cross_fields"


def knn_clause(
    vq: VectorQuery, k: int, filters: Sequence[Filter] = (), *, ef_search: bool = True
) -> dict[str, Any]:
    """The ``knn`` query clause of ``vq`` (``{"knn": {field: {...}}}``), filters inside it."""
    check_k(k)
    vector = vector_list(vq.vector)
    if not vector or not all(math.isfinite(x) for x in vector):
        raise QueryError(f"query vector for {vq.name!r} is empty or has non-finite values")
    candidates = num_candidates(k, vq.num_candidates)
    clause: dict[str, Any] = {"vector": vector}
    if ef_search:
        clause["k"] = k
        clause["method_parameters"] = {"ef_search": candidates}
    else:
        clause["k"] = candidates  # Lucene searches with k candidates; size keeps k
    clauses = es_filter(filters)
    if clauses:
        clause["filter"] = {"bool": {"filter": clauses}}
    return {"knn": {vq.field: clause}}


def knn_body(
    vq: VectorQuery, k: int, filters: Sequence[Filter] = (), *, ef_search: bool = True
) -> dict[str, Any]:
    """A search body of one ``knn`` query: the top ``k``, ties by product id."""
    return {**base_body(k), "query": knn_clause(vq, k, filters, ef_search=ef_search), **TIE_BREAK}


def msearch_body(
    index: str,
    lexical: LexicalQuery | None,
    vectors: Sequence[VectorQuery],
    k: int,
    filters: Sequence[Filter] = (),
    *,
    lexical_type: str = CROSS_FIELDS,
    ef_search: bool = True,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Result names and the ``_msearch`` header/body list for one round trip: Elasticsearch's,
    with the ``knn`` query and the lexical query type the cluster has."""
    return es_msearch_body(
        index,
        lexical,
        vectors,
        k,
        filters,
        multi_match_type=lexical_type,
        vector_body=lambda vq, k, filters: knn_body(vq, k, filters, ef_search=ef_search),
    )


def inner_product_from_score(score: float) -> float:
    """The Lucene engine's ``innerproduct`` score back to the inner product."""
    return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score


def score_converter(similarity: str | None) -> Callable[[float], float] | None:
    if similarity == "cosine":
        return cosine_from_score
    if similarity == "dot_product":
        return inner_product_from_score
    return None


def vector_score_converters(
    vectors: Sequence[VectorQuery], schema: IndexSchema | None
) -> dict[str, Callable[[float], float] | None]:
    """Per result name, how to turn a ``knn`` ``_score`` back into the field's similarity
    (unknown schema: cosine, the similarity of ctir-es fields)."""
    if schema is None:
        return {vq.name: cosine_from_score for vq in vectors}
    return {
        vq.name: score_converter(schema.vectors[vq.field].similarity)
        for vq in vectors
        if vq.field in schema.vectors
    }
