"""Elasticsearch request and response bodies as pure functions (no client, no I/O).

``ElasticsearchStore`` only sends what these build, so golden-JSON tests of these functions
check the requests the store makes. Reference pages (Elasticsearch 8.x) they follow:

- filters: ``term``/``terms``/``ids`` in a ``bool`` ``filter`` / ``must_not``
  (reference/8.15/query-dsl-bool-query.html, query-dsl-ids-query.html);
- lexical: ``combined_fields`` with ``field^boost`` by default
  (reference/8.15/query-dsl-combined-fields-query.html): BM25F, the weighted fields scored as
  one, with one IDF per term. Measured on flipkart-1050 against the embedded store (FTS5's
  ``bm25()`` also counts a row once for IDF), it gives the same answers far more often than
  ``multi_match`` ``most_fields`` (per-field IDF, where a rare word in a boosted title
  outweighs the category path): category queries' BM25 top-10 overlap 0.77 vs 0.42
  (``benchmarks/store_parity.py``, docs/elasticsearch.md). ``most_fields``, ``best_fields`` and
  ``cross_fields`` stay available (``multi_match_type``);
- vectors: the top-level ``knn`` search option with ``k``, ``num_candidates`` and ``filter``;
  the filter is applied during the approximate search, so ``k`` matching products come back
  (reference/8.15/knn-search.html, search-search.html#search-api-knn);
- one round trip: ``_msearch`` with a header/body pair per sub-search
  (reference/8.15/search-multi-search.html);
- writes: bulk ``index`` actions with ``_id`` = product id, so re-ingesting replaces
  (reference/8.15/docs-bulk.html); reads: ``_mget`` (reference/8.15/docs-multi-get.html).
- server-side fusion (optional, see ``..cluster``): one ``_search`` with a
  ``retriever``: ``rrf`` over ``standard`` + ``knn`` retrievers (``rank_constant``,
  ``rank_window_size``; GA in 8.16, reference/8.16/retriever.html#rrf-retriever) or ``linear``
  with per-retriever ``weight`` and ``normalizer: minmax`` (8.18+,
  reference/8.18/retriever.html#linear-retriever). Filters go on every child retriever
  (``standard.filter``, ``knn.filter``), which every 8.x version with retrievers accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ctir_es.errors import QueryError
from ctir_es.filters import Filter
from ctir_es.schema import LEXICAL_FIELDS, IndexSchema, LexicalQuery, VectorQuery
from ctir_es.vocabulary import FUSION_METHODS, LEXICAL_SOURCE, RRF_K

from .documents import vector_list
from .filters import es_filter
from .index import ID_FIELD

MULTI_MATCH_TYPE = "combined_fields"  # see the module docstring; COMBINED_FIELDS
MAX_NUM_CANDIDATES = 10_000  # Elasticsearch rejects larger num_candidates
MAX_K = 10_000  # index.max_result_window default; knn k must also be <= num_candidates
# What ``get`` reads from _source: everything except the (large) vectors.


def _boost(weight: float) -> str:
    return format(float(weight), "g")


def lexical_fields(weights: Mapping[str, float]) -> list[str]:
    """``["title^3", ...]`` in ``LEXICAL_FIELDS`` order; weight 0 or absent = not searched."""
    unknown = sorted(set(weights) - set(LEXICAL_FIELDS))
    if unknown:
        raise QueryError(
            f"unknown lexical field(s) {', '.join(unknown)}; supported: {', '.join(LEXICAL_FIELDS)}"
        )
    out = []
    for name in LEXICAL_FIELDS:
        weight = weights.get(name, 0.0)
        if not math.isfinite(weight) or weight < 0:
            raise QueryError(
                f"lexical weight for {name} must be a finite number >= 0, got {weight!r}"
            )
        if weight > 0:
            out.append(f"{name}^{_boost(weight)}")
    return out


# ``combined_fields`` (BM25F): the fields are scored as one, with one IDF and one length
# norm per term, the field weights multiplying term frequencies - like the embedded store's
# FTS5 bm25(), whose IDF counts a row once whatever column matches. It needs boosts >= 1, so
# the weights are scaled (their ratios kept). (reference/8.15/query-dsl-combined-fields-query.html)
COMBINED_FIELDS = "combined_fields"
MATCH_TYPES: tuple[str, ...] = ("most_fields", "best_fields", "cross_fields", COMBINED_FIELDS)


def text_query(text: str, weights: Mapping[str, float], match_type: str) -> dict[str, Any] | None:
    """The BM25 clause for ``text`` over the weighted fields (None when nothing to search)."""
    if match_type not in MATCH_TYPES:
        raise QueryError(f"unknown match type {match_type!r}; supported: {', '.join(MATCH_TYPES)}")
    text = " ".join(text.split())
    if match_type == COMBINED_FIELDS:
        positive = [w for w in weights.values() if math.isfinite(w) and w > 0]
        scale = 1.0 / min(positive) if positive and min(positive) < 1 else 1.0
        weights = {name: w * scale for name, w in weights.items()}
    fields = lexical_fields(weights)
    if not text or not fields:
        return None
    if match_type == COMBINED_FIELDS:
        return {COMBINED_FIELDS: {"query": text, "fields": fields}}
    return {"multi_match": {"query": text, "type": match_type, "fields": fields}}


def check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k > MAX_K:
        raise QueryError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")


_check_k = check_k


def base_body(k: int) -> dict[str, Any]:
    # ids and scores are all the ranking layer needs: no _source, no total count.
    return {"size": k, "_source": False, "track_total_hits": False}


_base = base_body


# Equal scores are ordered by product id: every copy of a shard (primary or replica, before or
# after a node fails) then gives the same list; without it ties follow each copy's internal
# document order. ``track_scores`` keeps ``_score`` in the hits of a sorted search.
TIE_BREAK: dict[str, Any] = {"sort": [{"_score": "desc"}, {ID_FIELD: "asc"}], "track_scores": True}


def lexical_body(
    lexical: LexicalQuery,
    k: int,
    filters: Sequence[Filter] = (),
    *,
    multi_match_type: str = MULTI_MATCH_TYPE,
) -> dict[str, Any] | None:
    """A BM25 search body, or None when there is nothing to search (no text or no field)."""
    _check_k(k)
    query = text_query(lexical.text, lexical.weights, multi_match_type)
    if query is None:
        return None
    clauses = es_filter(filters)
    if clauses:
        query = {"bool": {"must": [query], "filter": clauses}}
    return {**_base(k), "query": query, **TIE_BREAK}


def num_candidates(k: int, requested: int | None = None) -> int:
    """Candidates per shard: ``requested`` or ``max(100, 2k)``, never below k nor above 10,000."""
    n = requested if requested is not None else max(100, 2 * k)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise QueryError(f"num_candidates must be a positive integer, got {requested!r}")
    return min(max(n, k), MAX_NUM_CANDIDATES)


# knn ``rescore_vector.oversample`` on quantised indices (8.18+): gather oversample * k
# candidates by the quantised vectors, rescore them with the float vectors, keep k. The
# scores are then exact, so they convert back to the cosines the embedded store reports.
RESCORE_OVERSAMPLE = 3.0
# bbq keeps one bit per dimension, so its ranking of the candidates is coarse: at oversample 3,
# recall@10 on Elasticsearch 9.3.2 was 0.866 (50k synthetic x 384) and 0.951 (MiniLM), at 10
# 0.9995 and 0.977 (int8_hnsw at 3: 1.000 and 0.979), for ~0.7 ms more per search
# (docs/benchmarks.md, "Elasticsearch 9.x: the quantised kNN index types side by side").
OVERSAMPLE_BY_TYPE: dict[str, float] = {"bbq_hnsw": 10.0, "bbq_flat": 10.0}


def rescore_oversample(index_options: str | None) -> float:
    """The ``rescore_vector.oversample`` for kNN on an index of this quantised type."""
    return OVERSAMPLE_BY_TYPE.get(index_options or "", RESCORE_OVERSAMPLE)


def knn_body(
    vq: VectorQuery, k: int, filters: Sequence[Filter] = (), *, rescore: float = 0.0
) -> dict[str, Any]:
    """A top-level ``knn`` search body; ``filters`` restrict the approximate search itself;
    ``rescore``: the oversample of float-vector rescoring (quantised index types, 8.18+ only;
    0: none, see ``rescore_oversample``)."""
    _check_k(k)
    vector = vector_list(vq.vector)
    if not vector or not all(math.isfinite(x) for x in vector):
        raise QueryError(f"query vector for {vq.name!r} is empty or has non-finite values")
    knn: dict[str, Any] = {
        "field": vq.field,
        "query_vector": vector,
        "k": k,
        "num_candidates": num_candidates(k, vq.num_candidates),
    }
    clauses = es_filter(filters)
    if clauses:
        knn["filter"] = clauses
    if rescore:
        knn["rescore_vector"] = {"oversample": float(rescore)}
    return {**_base(k), "knn": knn, **TIE_BREAK}


def check_vector_queries(vectors: Sequence[VectorQuery], schema: IndexSchema | None) -> None:
    """Names must be unique and not ``bm25``; fields and dims must match the index (if known)."""
    seen = {LEXICAL_SOURCE}
    for vq in vectors:
        if vq.name in seen:
            raise QueryError(
                f"duplicate result name {vq.name!r}: give each VectorQuery its own source"
            )
        seen.add(vq.name)
        if schema is None:
            continue
        field = schema.vectors.get(vq.field)
        if field is None:
            have = ", ".join(schema.vectors) or "none"
            raise QueryError(f"the index has no vector field {vq.field!r} (it has: {have})")
        dims = int(np.asarray(vq.vector).size)
        if dims != field.dims:
            raise QueryError(
                f"{vq.field}: index has {field.dims} dims, the query vector has {dims}"
            )


def msearch_body(
    index: str,
    lexical: LexicalQuery | None,
    vectors: Sequence[VectorQuery],
    k: int,
    filters: Sequence[Filter] = (),
    *,
    multi_match_type: str = MULTI_MATCH_TYPE,
    rescore: float = 0.0,
    vector_body: Callable[[VectorQuery, int, Sequence[Filter]], dict[str, Any]] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Result names and the ``_msearch`` header/body list for one round trip.

    The lexical search is left out when it has nothing to search; its result is then empty.
    ``vector_body`` builds each kNN search (default: ``knn_body`` with ``rescore``; OpenSearch
    passes its ``knn`` query).
    """
    names: list[str] = []
    searches: list[dict[str, Any]] = []
    if lexical is not None:
        body = lexical_body(lexical, k, filters, multi_match_type=multi_match_type)
        if body is not None:
            names.append(LEXICAL_SOURCE)
            searches += [{"index": index}, body]
    for vq in vectors:
        names.append(vq.name)
        body = vector_body(vq, k, filters) if vector_body else knn_body(vq, k, filters, rescore=rescore)
        searches += [{"index": index}, body]
    return names, searches



# ---------------------------------------------------------------- server-side fusion (retrievers)

RETRIEVER_FUSIONS: tuple[str, ...] = FUSION_METHODS  # the rrf and linear retrievers
RRF_RANK_CONSTANT = RRF_K  # the same constant as client-side fusion, so both rank alike


def _standard_retriever(
    lexical: LexicalQuery, clauses: list[dict[str, Any]], multi_match_type: str
) -> dict[str, Any] | None:
    query = text_query(lexical.text, lexical.weights, multi_match_type)
    if query is None:
        return None
    standard: dict[str, Any] = {"query": query}
    if clauses:
        standard["filter"] = clauses
    return {"standard": standard}


def _knn_retriever(
    vq: VectorQuery, k: int, clauses: list[dict[str, Any]], rescore: float
) -> dict[str, Any]:
    body = knn_body(vq, k, rescore=rescore)["knn"]
    if clauses:
        body["filter"] = clauses
    return {"knn": body}


def retriever_body(
    method: str,
    lexical: LexicalQuery | None,
    vectors: Sequence[VectorQuery],
    k: int,
    filters: Sequence[Filter] = (),
    *,
    window: int | None = None,
    weights: Mapping[str, float] | None = None,
    rank_constant: int = RRF_RANK_CONSTANT,
    multi_match_type: str = MULTI_MATCH_TYPE,
    rescore: float = 0.0,
) -> tuple[list[str], dict[str, Any] | None]:
    """Source names and ONE ``_search`` body fusing them server-side, or None when fewer than
    two sources have something to search (a compound retriever needs two children).

    ``window`` is each child's depth (``rank_window_size``, and ``k`` of the kNN children);
    ``weights`` (by source name, default 1) apply to ``linear`` only - the 8.x ``rrf`` retriever
    weighs every child equally, so callers fall back to client-side RRF when weights differ.
    """
    if method not in RETRIEVER_FUSIONS:
        raise QueryError(
            f"unknown server-side fusion {method!r}; supported: {', '.join(RETRIEVER_FUSIONS)}"
        )
    _check_k(k)
    depth = max(k, window or k)
    _check_k(depth)
    clauses = es_filter(filters)
    names: list[str] = []
    children: list[dict[str, Any]] = []
    if lexical is not None:
        standard = _standard_retriever(lexical, clauses, multi_match_type)
        if standard is not None:
            names.append(LEXICAL_SOURCE)
            children.append(standard)
    for vq in vectors:
        names.append(vq.name)
        children.append(_knn_retriever(vq, depth, clauses, rescore))
    if len(children) < 2:
        return names, None
    retriever: dict[str, Any]
    if method == "rrf":
        retriever = {
            "rrf": {
                "retrievers": children,
                "rank_window_size": depth,
                "rank_constant": rank_constant,
            }
        }
    else:
        w = weights or {}
        for name, weight in w.items():
            if not math.isfinite(weight) or weight < 0:
                raise QueryError(f"weight for {name} must be a finite number >= 0, got {weight!r}")
        retriever = {
            "linear": {
                "retrievers": [
                    {
                        "retriever": child,
                        "weight": float(w.get(name, 1.0)),
                        "normalizer": "minmax",
                    }
                    for name, child in zip(names, children)
                ],
                "rank_window_size": depth,
            }
        }
    return names, {**_base(k), "retriever": retriever}


