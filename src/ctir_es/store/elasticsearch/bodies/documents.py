"""Product documents as data: the ``_source`` ctir-es writes, its derived fields, bulk lines,
and the ``Product`` read back from ``_source`` (no client, no I/O).

Everything a search or an aggregation needs is computed here, client-side, so the index needs
no ingest pipeline and no analysis module (see ``index.py``):

- ``category_path``: every ancestor prefix of every path as a ``path_key`` (a subtree filter is
  one ``term``), what a ``path_hierarchy`` tokenizer would emit;
- ``category_top``, ``category_ancestors`` ("A > B"), ``category_levels.lN``, ``category_depth``
  (Kibana and the category aggregations use them);
- the searched copies of the text with markup removed from ``description`` (catalogue
  descriptions often carry HTML) and whitespace collapsed; ``record`` keeps the exact product;
- ``ingested_at``: when the client built the document (UTC);
- ``values``: the product's typed values as they are (str, float, bool), indexed by the
  mapping's typed fields (``values.<name>``, mapping v4) and read back exactly by ``get``.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any

import numpy as np

from ctir_es.products import Product, format_category_path
from ctir_es.schema import Document, IndexSchema, StoredProduct
from ctir_es.values import Value, ValueSpec

from .index import (
    ATTRIBUTES_FIELD,
    CATEGORIES_FIELD,
    CATEGORY_ANCESTORS_FIELD,
    CATEGORY_DEPTH_FIELD,
    CATEGORY_LEVELS_FIELD,
    CATEGORY_PATH_FIELD,
    CATEGORY_TOP_FIELD,
    DESCRIPTION_FIELD,
    HAS_IMAGE_FIELD,
    ID_FIELD,
    IMAGE_DIR_FIELD,
    IMAGE_FIELD,
    INGESTED_AT_FIELD,
    MARKET_FIELD,
    RECORD_FIELD,
    SUMMARY_FIELD,
    SUMMARY_MAX_CHARS,
    TITLE_FIELD,
    VALUES_FIELD,
    VECTOR_FIELDS_FIELD,
    path_key,
)
from .responses import error_text

# what ``get`` reads back (vectors are left out: ``vectors()`` asks for them by name)
SOURCE_FIELDS: tuple[str, ...] = (
    ID_FIELD,
    TITLE_FIELD,
    DESCRIPTION_FIELD,
    MARKET_FIELD,
    IMAGE_FIELD,
    VECTOR_FIELDS_FIELD,
    RECORD_FIELD,
    VALUES_FIELD,
)

_SPACE = re.compile(r"\s+")


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment (tags dropped, entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.parts.append(" ")  # <br>, <li>, <p> separate words

    def handle_endtag(self, tag: str) -> None:
        self.parts.append(" ")


def clean_text(text: str, *, markup: bool = False) -> str:
    """Whitespace collapsed; with ``markup``, HTML tags removed and entities decoded."""
    if markup and ("<" in text or "&" in text):
        parser = _TextOnly()
        try:
            parser.feed(text)
            parser.close()
            text = "".join(parser.parts)
        except Exception:  # noqa: BLE001 - malformed markup: keep the text, unescaped
            text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def derived_category_fields(paths: Iterable[Sequence[str]]) -> dict[str, Any]:
    """The category fields derived from a product's paths (root first, deduplicated)."""
    prefixes: list[str] = []
    top: list[str] = []
    ancestors: list[str] = []
    levels: dict[str, list[str]] = {}
    depth = 0
    for path in paths:
        names = [" ".join(level.split()) for level in path]
        names = [n for n in names if n]
        for level, name in enumerate(names, 1):
            if level == 1 and name not in top:
                top.append(name)
            key = path_key(names[:level])
            if key not in prefixes:
                prefixes.append(key)
            shown = format_category_path(names[:level])
            if shown not in ancestors:
                ancestors.append(shown)
            bucket = levels.setdefault(f"l{level}", [])
            if name not in bucket:
                bucket.append(name)
        depth = max(depth, len(names))
    return {
        CATEGORY_PATH_FIELD: prefixes,
        CATEGORY_TOP_FIELD: top,
        CATEGORY_ANCESTORS_FIELD: ancestors,
        CATEGORY_LEVELS_FIELD: levels,
        CATEGORY_DEPTH_FIELD: depth,
    }


def vector_list(vector: Any) -> list[float]:
    """A vector as a JSON-ready list of floats."""
    return [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]


def ingest_time() -> str:
    """Now, as the ``ingested_at`` of the documents of one write (UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_dir(image: str | None) -> str | None:
    """The directory of a local absolute image path (None for URLs and relative paths)."""
    if not image or "://" in image or not PurePath(image).is_absolute():
        return None
    return str(PurePath(image).parent)


def has_image(doc: Document) -> bool:
    """A product "has an image" when its image loaded (as in the embedded store)."""
    return doc.image is not None


def document_source(doc: Document, ingested_at: str | None = None, summary: bool = True) -> dict[str, Any]:
    """The ``_source`` of one product: searched (cleaned) text, derived category fields, the
    exact record and the vectors. ``ingested_at`` (see ``ingest_time``) is left out when None;
    ``summary`` (``summary_text``) when False (an index without the field) or too long."""
    p = doc.product
    source: dict[str, Any] = {
        ID_FIELD: p.id,
        TITLE_FIELD: clean_text(p.title),
        CATEGORIES_FIELD: [format_category_path(path) for path in p.categories],
        ATTRIBUTES_FIELD: clean_text(p.attribute_text),
        DESCRIPTION_FIELD: clean_text(p.description, markup=True),
        MARKET_FIELD: p.market,
        HAS_IMAGE_FIELD: has_image(doc),
        IMAGE_FIELD: doc.image,  # the image that loaded and was encoded, never a failed one
        IMAGE_DIR_FIELD: image_dir(doc.image),
        VECTOR_FIELDS_FIELD: sorted(doc.vectors),
        **derived_category_fields(p.categories),
        RECORD_FIELD: {
            # the exact record; the searched copies above are cleaned
            "title": p.title,
            "description": p.description,
            "categories": [list(path) for path in p.categories],
            "attributes": dict(p.attributes),
            "images": list(p.images),
        },
    }
    if p.values:
        source[VALUES_FIELD] = {name: p.values[name] for name in sorted(p.values)}
    text = summary_text(p) if summary else None
    if text is not None:
        source[SUMMARY_FIELD] = text
    if ingested_at is not None:
        source[INGESTED_AT_FIELD] = ingested_at
    for name in sorted(doc.vectors):
        source[name] = vector_list(doc.vectors[name])
    return source


def value_fits(value: Any, spec: ValueSpec) -> bool:
    """``value`` is of ``spec``'s kind as ``Product.values`` holds it: a keyword is ``str``, a
    number a finite ``float`` (an ``int`` too, never a ``bool``), a boolean ``bool``."""
    if spec.kind == "keyword":
        return isinstance(value, str)
    if spec.kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_document(doc: Document, schema: IndexSchema | None) -> str | None:
    """Why ``doc`` cannot be indexed (reported per id, never silently dropped), or None.

    A typed value of another kind than the index's (a text price in a number field) is such a
    reason: Elasticsearch would refuse the document, and typing happens at ingest."""
    if schema is not None:
        for name in sorted(doc.product.values):
            spec = schema.values.get(name)
            value = doc.product.values[name]
            if spec is not None and not value_fits(value, spec):
                return (f"value {name!r}: the index holds a {spec.kind}, the product gives "
                        f"{type(value).__name__} {str(value)[:40]!r}")
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


def bulk_actions(
    docs: Sequence[Document], index: str, ingested_at: str | None = None
) -> list[dict[str, Any]]:
    """``index`` actions keyed by product id, so a re-ingest replaces instead of duplicating."""
    return [
        {
            "_op_type": "index",
            "_index": index,
            "_id": doc.product.id,
            "_source": document_source(doc, ingested_at),
        }
        for doc in docs
    ]


def bulk_lines(
    docs: Sequence[Document],
    index: str,
    dumps: Callable[[Any], str] | None = None,
    ingested_at: str | None = None,
    summary: bool = True,
) -> list[tuple[str, str, str]]:
    """``(id, action line, source line)`` per document: the ``_bulk`` NDJSON, pre-serialised so
    chunks can be cut by byte size exactly as they go on the wire."""

    encode = dumps or (lambda obj: json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return [
        (
            doc.product.id,
            encode({"index": {"_index": index, "_id": doc.product.id}}),
            encode(document_source(doc, ingested_at, summary)),
        )
        for doc in docs
    ]


# ---------------------------------------------------------------- summaries (doc values)


def summary_text(p: Product) -> str | None:
    """``summary`` of a product: its values and exact category paths as compact JSON (None when
    longer than the field keeps)."""
    text = json.dumps({"values": {n: p.values[n] for n in sorted(p.values)},
                       "categories": [list(path) for path in p.categories]},
                      ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= SUMMARY_MAX_CHARS else None


def summaries_body(ids: Sequence[str]) -> dict[str, Any]:
    """A search for ``ids`` that reads only doc values (``id`` and ``summary``): no ``_source``,
    no stored fields, not even ``_id``, so no stored block is decompressed."""
    return {
        "query": {"ids": {"values": list(ids)}},
        "size": len(ids),
        "_source": False,
        "stored_fields": "_none_",
        "docvalue_fields": [ID_FIELD, SUMMARY_FIELD],
        "track_total_hits": False,
    }


def parse_summaries(response: Mapping[str, Any]) -> dict[str, Product]:
    """``{id: Product}`` (id, values and categories only) of the hits that hold a summary; an id
    without one (written before the field existed, or too long) is left out."""
    out: dict[str, Product] = {}
    for hit in (response.get("hits") or {}).get("hits", []):
        fields = hit.get("fields") or {}
        pid, text = (fields.get(ID_FIELD) or [None])[0], (fields.get(SUMMARY_FIELD) or [None])[0]
        if pid is None or text is None:
            continue
        data = json.loads(text)
        out[str(pid)] = Product(
            id=str(pid), title="",
            categories=tuple(tuple(str(level) for level in path) for path in data.get("categories", [])),
            values=stored_values(data.get("values")))
    return out


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
        values=stored_values(source.get(VALUES_FIELD)),
    )
    return StoredProduct(
        product=product,
        image=source.get(IMAGE_FIELD),
        vector_fields=tuple(source.get(VECTOR_FIELDS_FIELD) or ()),
    )


def stored_values(raw: Any) -> dict[str, Value]:
    """``Product.values`` from ``_source``: text stays ``str``, booleans ``bool``, numbers
    become ``float`` (a JSON ``899.0`` may come back as ``899`` from another writer)."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, Value] = {}
    for name, value in raw.items():
        if isinstance(value, (str, bool)):
            out[str(name)] = value
        elif isinstance(value, (int, float)):
            out[str(name)] = float(value)
    return out


def mget_products(response: Mapping[str, Any]) -> dict[str, StoredProduct]:
    """Found documents of an ``_mget`` response by id; missing ids are left out."""
    out = {}
    for doc in response.get("docs", []):
        if doc.get("found") and "_source" in doc:
            out[str(doc["_id"])] = stored_product(doc["_source"])
    return out




def vector_fetch_params(field: str) -> dict[str, Any]:
    """``_mget`` parameters that return one vector field.

    ``_source`` filtering names the field. 9.x keeps dense vectors out of ``_source`` by
    default (``index.mapping.exclude_source_vectors``), but a field named explicitly in the
    includes still comes back (the contract test ``test_vectors_by_id`` passes on 8.19 and
    9.2), so the same request serves both; scans that read whole documents need
    ``aliases.source_with_vectors`` instead.
    """
    return {"source_includes": [field]}


def mget_vectors(response: Mapping[str, Any], field: str) -> dict[str, np.ndarray]:
    """``{id: float32 vector}`` of the found documents that hold ``field``."""
    out: dict[str, np.ndarray] = {}
    for doc in response.get("docs", []):
        value = (doc.get("_source") or {}).get(field) if doc.get("found") else None
        if isinstance(value, list) and value:
            out[str(doc["_id"])] = np.asarray(value, dtype=np.float32)
    return out


def vector_fields_fetch_params() -> dict[str, Any]:
    """``_mget`` parameters that return only the list of vector fields a product holds."""
    return {"source_includes": [VECTOR_FIELDS_FIELD]}


def mget_vector_fields(response: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{id: vector fields it holds}`` of the found documents (missing ids are left out)."""
    out: dict[str, list[str]] = {}
    for doc in response.get("docs", []):
        if doc.get("found"):
            held = (doc.get("_source") or {}).get(VECTOR_FIELDS_FIELD) or []
            out[str(doc["_id"])] = [str(f) for f in (held if isinstance(held, list) else [held])]
    return out


# an update reads, changes and writes the document: a concurrent write of the same product
# between the two is a version conflict (409), which Elasticsearch retries itself this often
UPDATE_RETRY_ON_CONFLICT = 3


def vector_update_lines(
    updates: Iterable[tuple[str, Any, Sequence[str]]],
    field: str,
    index: str,
    dumps: Callable[[Any], str] | None = None,
) -> list[tuple[str, str, str]]:
    """``(id, action line, source line)`` per ``(id, vector, vector fields it holds now)``: a
    partial ``update`` setting ``field`` and adding it to ``vector_fields``. No ``upsert`` and
    no ``doc_as_upsert``: an id that is not in the index answers 404 ``document_missing_exception``
    and is skipped, never created. Searched text, category fields and ``ingested_at`` are
    left as they are."""
    encode = dumps or (lambda obj: json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    out = []
    for pid, vector, held in updates:
        action = {"update": {"_index": index, "_id": pid, "retry_on_conflict": UPDATE_RETRY_ON_CONFLICT}}
        doc = {field: vector_list(vector), VECTOR_FIELDS_FIELD: sorted({*held, field})}
        out.append((pid, encode(action), encode({"doc": doc})))
    return out


def delete_operations(ids: Sequence[str], index: str) -> list[dict[str, Any]]:
    """``_bulk`` delete actions by id (``_delete_by_query`` lives in the reindex module, which
    not every distribution has; a bulk delete works on every cluster)."""
    return [{"delete": {"_index": index, "_id": pid}} for pid in ids]


def deleted_count(response: Mapping[str, Any]) -> tuple[int, dict[str, str]]:
    """``(products deleted, {id: error})`` from a bulk delete response (not_found is no error)."""
    deleted, errors = 0, {}
    for item in response.get("items", []):
        info = item.get("delete", {})
        if info.get("result") == "deleted":
            deleted += 1
        elif info.get("status") != 404:
            errors[str(info.get("_id", ""))] = error_text(info.get("error", "unknown error"))
    return deleted, errors
