"""Elasticsearch request and response bodies as pure functions (no client, no I/O).

``ElasticsearchStore`` only sends what these build, so golden-JSON tests of these functions
check the requests the store makes. Reference pages (Elasticsearch 8.x) they follow:

- filters: ``term``/``terms``/``ids`` in a ``bool`` ``filter`` / ``must_not``
  (reference/8.15/query-dsl-bool-query.html, query-dsl-ids-query.html);
- lexical: ``multi_match`` with ``field^boost`` (reference/8.15/query-dsl-multi-match-query.html).
  Type ``most_fields``: it sums the boosted per-field BM25 scores, so every field weight
  counts (a product matching the query in its title *and* its category outranks one matching
  in a single field), like the weighted column sum of the embedded store. ``best_fields`` (the
  default) keeps only the best field's score (plus ``tie_breaker``), so lower-weighted fields
  would barely matter and the weights would not mean the same thing on both backends;
- vectors: the top-level ``knn`` search option with ``k``, ``num_candidates`` and ``filter``;
  the filter is applied during the approximate search, so ``k`` matching products come back
  (reference/8.15/knn-search.html, search-search.html#search-api-knn);
- one round trip: ``_msearch`` with a header/body pair per sub-search
  (reference/8.15/search-multi-search.html);
- writes: bulk ``index`` actions with ``_id`` = product id, so re-ingesting replaces
  (reference/8.15/docs-bulk.html); reads: ``_mget`` (reference/8.15/docs-multi-get.html).
- server-side fusion (optional, see ``ctir_es.store.es.capabilities``): one ``_search`` with a
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

from ..errors import FilterError, QueryError, StoreError
from ..filters import Filter
from ..products import Product, format_category_path
from ..store.base import (
    LEXICAL_FIELDS,
    LEXICAL_SOURCE,
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    StoredProduct,
    VectorQuery,
)
from .index import (
    ATTRIBUTES_FIELD,
    CATEGORIES_FIELD,
    CATEGORY_PATH_FIELD,
    DESCRIPTION_FIELD,
    HAS_IMAGE_FIELD,
    ID_FIELD,
    IMAGE_FIELD,
    MARKET_FIELD,
    RECORD_FIELD,
    TITLE_FIELD,
    VECTOR_FIELDS_FIELD,
    path_key,
)

MULTI_MATCH_TYPE = "most_fields"
MAX_NUM_CANDIDATES = 10_000  # Elasticsearch rejects larger num_candidates
MAX_K = 10_000  # index.max_result_window default; knn k must also be <= num_candidates
# What ``get`` reads from _source: everything except the (large) vectors.
SOURCE_FIELDS: tuple[str, ...] = (
    ID_FIELD,
    TITLE_FIELD,
    DESCRIPTION_FIELD,
    MARKET_FIELD,
    IMAGE_FIELD,
    VECTOR_FIELDS_FIELD,
    RECORD_FIELD,
)


# ---------------------------------------------------------------- filters


def _category(f: Filter) -> dict[str, Any]:
    return {"term": {CATEGORY_PATH_FIELD: path_key(f.path)}}


def _market_eq(f: Filter) -> dict[str, Any]:
    return {"term": {MARKET_FIELD: f.value}}


def _market_in(f: Filter) -> dict[str, Any]:
    # markets are stored lowercased (Product.from_mapping); "eq" is lowercased by Filter itself
    return {"terms": {MARKET_FIELD: [str(v).lower() for v in f.value]}}


def _has_image(f: Filter) -> dict[str, Any]:
    return {"term": {HAS_IMAGE_FIELD: bool(f.value)}}


def _id_in(f: Filter) -> dict[str, Any]:
    return {"ids": {"values": list(f.value)}}


def _id_not_in(f: Filter) -> dict[str, Any]:
    return {"bool": {"must_not": [{"ids": {"values": list(f.value)}}]}}


# (field, op) -> clause builder; its keys also produce the "supported" error text.
FILTER_TRANSLATIONS: dict[tuple[str, str], Callable[[Filter], dict[str, Any]]] = {
    ("category", "subtree"): _category,
    ("market", "eq"): _market_eq,
    ("market", "in"): _market_in,
    ("has_image", "eq"): _has_image,
    ("id", "in"): _id_in,
    ("id", "not_in"): _id_not_in,
}


def es_filter(filters: Sequence[Filter] | None) -> list[dict[str, Any]]:
    """Translate the neutral filter grammar into ``bool.filter`` clauses (all must hold).

    The same list goes into the lexical ``bool`` query and into each ``knn.filter``.
    """
    out = []
    for f in filters or ():
        if not isinstance(f, Filter):
            raise FilterError(
                f"expected a Filter, got {type(f).__name__}; build filters with parse_filters()"
            )
        translate = FILTER_TRANSLATIONS.get((f.field, f.op))
        if translate is None:
            supported = ", ".join(f"{field} {op}" for field, op in FILTER_TRANSLATIONS)
            raise FilterError(
                f"no Elasticsearch translation for {f.field} {f.op}; supported: {supported}"
            )
        out.append(translate(f))
    return out


# ---------------------------------------------------------------- searches


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


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k > MAX_K:
        raise QueryError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")


def _base(k: int) -> dict[str, Any]:
    # ids and scores are all the ranking layer needs: no _source, no total count.
    return {"size": k, "_source": False, "track_total_hits": False}


def lexical_body(
    lexical: LexicalQuery,
    k: int,
    filters: Sequence[Filter] = (),
    *,
    multi_match_type: str = MULTI_MATCH_TYPE,
) -> dict[str, Any] | None:
    """A BM25 search body, or None when there is nothing to search (no text or no field)."""
    _check_k(k)
    fields = lexical_fields(lexical.weights)
    text = " ".join(lexical.text.split())
    if not text or not fields:
        return None
    query: dict[str, Any] = {
        "multi_match": {"query": text, "type": multi_match_type, "fields": fields}
    }
    clauses = es_filter(filters)
    if clauses:
        query = {"bool": {"must": [query], "filter": clauses}}
    return {**_base(k), "query": query}


def num_candidates(k: int, requested: int | None = None) -> int:
    """Candidates per shard: ``requested`` or ``max(100, 2k)``, never below k nor above 10,000."""
    n = requested if requested is not None else max(100, 2 * k)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise QueryError(f"num_candidates must be a positive integer, got {requested!r}")
    return min(max(n, k), MAX_NUM_CANDIDATES)


def vector_list(vector: Any) -> list[float]:
    """A 1-d float32 vector as JSON numbers."""
    arr = np.asarray(vector, dtype=np.float32).ravel()
    return [float(x) for x in arr.tolist()]


def knn_body(vq: VectorQuery, k: int, filters: Sequence[Filter] = ()) -> dict[str, Any]:
    """A top-level ``knn`` search body; ``filters`` restrict the approximate search itself."""
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
    return {**_base(k), "knn": knn}


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
) -> tuple[list[str], list[dict[str, Any]]]:
    """Result names and the ``_msearch`` header/body list for one round trip.

    The lexical search is left out when it has nothing to search; its result is then empty.
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
        searches += [{"index": index}, knn_body(vq, k, filters)]
    return names, searches


def parse_hits(
    response: Mapping[str, Any], to_score: Callable[[float], float] | None = None
) -> list[Hit]:
    """Hits of one search response, in rank order (scores mapped through ``to_score``)."""
    hits = response.get("hits", {}).get("hits", [])
    convert = to_score or float
    return [Hit(str(h["_id"]), convert(float(h["_score"]))) for h in hits]


def cosine_from_score(score: float) -> float:
    """Elasticsearch scores cosine and dot_product kNN as ``(1 + cos) / 2``; give back ``cos``.

    The embedded store returns the cosine itself, so both backends report the same numbers.
    (reference/8.15/dense-vector.html#dense-vector-similarity)
    """
    return 2.0 * score - 1.0


def score_converter(similarity: str | None) -> Callable[[float], float] | None:
    return cosine_from_score if similarity in ("cosine", "dot_product") else None


def error_text(error: Any) -> str:
    """``type: reason`` of an Elasticsearch error object (or of a whole error response)."""
    if isinstance(error, Mapping) and "error" in error:
        error = error["error"]
    if isinstance(error, Mapping):
        root = error.get("root_cause") or []
        first = root[0] if root and isinstance(root[0], Mapping) else error
        caused = error.get("caused_by")
        text = f"{first.get('type', 'error')}: {first.get('reason', '')}"
        if (
            isinstance(caused, Mapping)
            and caused.get("reason")
            and caused.get("reason") != first.get("reason")
        ):
            text += f" ({caused.get('reason')})"
        return text[:500]
    return str(error)[:500]


def parse_msearch(
    names: Sequence[str],
    response: Mapping[str, Any],
    converters: Mapping[str, Callable[[float], float] | None] | None = None,
) -> dict[str, list[Hit]]:
    """Map ``_msearch`` responses back to result names; any failed sub-search raises."""
    responses = list(response.get("responses", []))
    if len(responses) != len(names):
        raise StoreError(f"_msearch returned {len(responses)} responses for {len(names)} searches")
    out: dict[str, list[Hit]] = {}
    for name, item in zip(names, responses):
        if "error" in item:
            raise StoreError(
                f"search {name!r} failed ({item.get('status', '?')}): {error_text(item['error'])}"
            )
        out[name] = parse_hits(item, (converters or {}).get(name))
    return out


def vector_score_converters(
    vectors: Sequence[VectorQuery], schema: IndexSchema | None
) -> dict[str, Callable[[float], float] | None]:
    """Per result name, how to turn kNN ``_score`` back into the field's similarity."""
    if schema is None:
        return {}
    return {
        vq.name: score_converter(schema.vectors[vq.field].similarity)
        for vq in vectors
        if vq.field in schema.vectors
    }


# ---------------------------------------------------------------- server-side fusion (retrievers)

RETRIEVER_FUSIONS: tuple[str, ...] = ("rrf", "linear")
RRF_RANK_CONSTANT = 60


def _standard_retriever(
    lexical: LexicalQuery, clauses: list[dict[str, Any]], multi_match_type: str
) -> dict[str, Any] | None:
    fields = lexical_fields(lexical.weights)
    text = " ".join(lexical.text.split())
    if not text or not fields:
        return None
    standard: dict[str, Any] = {
        "query": {"multi_match": {"query": text, "type": multi_match_type, "fields": fields}}
    }
    if clauses:
        standard["filter"] = clauses
    return {"standard": standard}


def _knn_retriever(vq: VectorQuery, k: int, clauses: list[dict[str, Any]]) -> dict[str, Any]:
    body = knn_body(vq, k)["knn"]
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
        children.append(_knn_retriever(vq, depth, clauses))
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


# ---------------------------------------------------------------- documents


def has_image(doc: Document) -> bool:
    """A product "has an image" when its image loaded (as in the embedded store)."""
    return doc.image is not None


def shown_image(doc: Document) -> str | None:
    """The image shown in results: one that loaded; never a reference that failed."""
    return doc.image


def document_source(doc: Document) -> dict[str, Any]:
    """The ``_source`` of one product: searchable fields, the exact record, the vectors."""
    p = doc.product
    source: dict[str, Any] = {
        ID_FIELD: p.id,
        TITLE_FIELD: p.title,
        CATEGORIES_FIELD: [format_category_path(path) for path in p.categories],
        CATEGORY_PATH_FIELD: [path_key(path) for path in p.categories],
        ATTRIBUTES_FIELD: p.attribute_text,
        DESCRIPTION_FIELD: p.description,
        MARKET_FIELD: p.market,
        HAS_IMAGE_FIELD: has_image(doc),
        IMAGE_FIELD: shown_image(doc),
        VECTOR_FIELDS_FIELD: sorted(doc.vectors),
        RECORD_FIELD: {
            # the exact record: the ingest pipeline normalises the searched copies above
            "title": p.title,
            "description": p.description,
            "categories": [list(path) for path in p.categories],
            "attributes": dict(p.attributes),
            "images": list(p.images),
        },
    }
    for name in sorted(doc.vectors):
        source[name] = vector_list(doc.vectors[name])
    return source


def check_document(doc: Document, schema: IndexSchema | None) -> str | None:
    """Why ``doc`` cannot be indexed (reported per id, never silently dropped), or None."""
    for name, vector in doc.vectors.items():
        arr = np.asarray(vector, dtype=np.float32).ravel()
        if schema is not None:
            field = schema.vectors.get(name)
            if field is None:
                return f"unknown vector field {name!r} (index has: {', '.join(schema.vectors) or 'none'})"
            if arr.size != field.dims:
                return f"{name}: index has {field.dims} dims, vector has {arr.size}"
        if not np.all(np.isfinite(arr)):
            return f"{name}: vector has non-finite values"
        if not np.any(arr):
            return f"{name}: zero vector (cosine similarity is undefined)"
    return None


def bulk_actions(docs: Sequence[Document], index: str) -> list[dict[str, Any]]:
    """``index`` actions keyed by product id, so a re-ingest replaces instead of duplicating."""
    return [
        {
            "_op_type": "index",
            "_index": index,
            "_id": doc.product.id,
            "_source": document_source(doc),
        }
        for doc in docs
    ]


def bulk_lines(
    docs: Sequence[Document], index: str, dumps: Callable[[Any], str] | None = None
) -> list[tuple[str, str, str]]:
    """``(id, action line, source line)`` per document: the ``_bulk`` NDJSON, pre-serialised so
    chunks can be cut by byte size exactly as they go on the wire."""
    import json

    encode = dumps or (lambda obj: json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return [
        (
            doc.product.id,
            encode({"index": {"_index": index, "_id": doc.product.id}}),
            encode(document_source(doc)),
        )
        for doc in docs
    ]


def bulk_item_error(item: Mapping[str, Any]) -> tuple[str, str]:
    """``(id, reason)`` of a failed item as ``streaming_bulk`` yields it."""
    op, info = next(iter(item.items()))
    info = info if isinstance(info, Mapping) else {}
    reason = error_text(info.get("error", info.get("exception", "unknown error")))
    return str(info.get("_id", "")), f"{op} failed ({info.get('status', '?')}): {reason}"


def stored_product(source: Mapping[str, Any]) -> StoredProduct:
    """Rebuild the exact ``Product`` from a ``_source`` written by ``document_source``."""
    record = source.get(RECORD_FIELD) or {}
    product = Product(
        id=str(source[ID_FIELD]),
        title=str(record.get("title", source.get(TITLE_FIELD, ""))),
        categories=tuple(
            tuple(str(level) for level in path) for path in record.get("categories", [])
        ),
        attributes={str(k): str(v) for k, v in (record.get("attributes") or {}).items()},
        description=str(record.get("description", source.get(DESCRIPTION_FIELD)) or ""),
        images=tuple(str(i) for i in record.get("images", [])),
        market=source.get(MARKET_FIELD),
    )
    return StoredProduct(
        product=product,
        image=source.get(IMAGE_FIELD),
        vector_fields=tuple(source.get(VECTOR_FIELDS_FIELD) or ()),
    )


def mget_products(response: Mapping[str, Any]) -> dict[str, StoredProduct]:
    """Found documents of an ``_mget`` response by id; missing ids are left out."""
    out = {}
    for doc in response.get("docs", []):
        if doc.get("found") and "_source" in doc:
            out[str(doc["_id"])] = stored_product(doc["_source"])
    return out


# ---------------------------------------------------------------- stats


def stats_body() -> dict[str, Any]:
    """One aggregation request for ``stats``: products, with image, per vector field, markets."""
    return {
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "with_image": {"filter": {"term": {HAS_IMAGE_FIELD: True}}},
            "vector_fields": {"terms": {"field": VECTOR_FIELDS_FIELD, "size": 100}},
            "markets": {"terms": {"field": MARKET_FIELD, "size": 100, "missing": "-"}},
        },
    }


def parse_stats(response: Mapping[str, Any]) -> dict[str, Any]:
    aggs = response.get("aggregations", {})

    def buckets(name: str) -> dict[str, int]:
        return {str(b["key"]): int(b["doc_count"]) for b in aggs.get(name, {}).get("buckets", [])}

    total = response.get("hits", {}).get("total", {})
    return {
        "products": int(total.get("value", 0) if isinstance(total, Mapping) else total),
        "with_image": int(aggs.get("with_image", {}).get("doc_count", 0)),
        "vector_counts": buckets("vector_fields"),
        "markets": buckets("markets"),
    }
