"""The Elasticsearch product index, as data: settings, analysers and mappings.

Everything here is a pure function of the ``IndexSchema`` so it can be golden-tested and
reviewed as JSON. Choices, with the reference pages that back them (Elasticsearch 8.x):

- Text fields (``title``, ``categories``, ``attributes``, ``description``) use the built-in
  ``english`` analyser (possessives, lowercase, stop words, Porter stemming), so "blenders"
  matches "blender" - the same stemming the embedded SQLite store gets from FTS5's porter.
  ``english`` lives in the analysis-common module, which every Elasticsearch distribution ships
  but the Maven Central test distribution lacks; there the store falls back to ``standard``
  (no stemming) with a one-line notice, and ``_meta`` records the analyser in use.
- ``category_path`` is a ``keyword`` holding every ancestor prefix of every category path,
  levels joined by U+001F (``A``, ``A\x1fB``, ``A\x1fB\x1fC`` for ``A > B > C``): what a
  ``path_hierarchy`` tokenizer would emit, computed client-side so no analysis module is
  needed. A subtree filter is then a single ``term`` query on the joined prefix.
- The path delimiter is U+001F (INFORMATION SEPARATOR ONE, "unit separator"), not "/" or
  " > ": category names contain "/" and "&" ("Cases & Covers/Sleeves"), and U+001F can never
  occur inside a cleaned level because ``str.split()`` treats it as whitespace and ``Product``
  collapses whitespace in levels (``path_key`` applies the same collapse to be safe for
  hand-built products).
- Vectors are ``dense_vector`` with the schema's similarity, ``cosine`` by default. Our
  vectors are L2-normalised, where cosine and dot_product rank and score identically
  (``_score = (1 + cos) / 2`` for both); since 8.11 Elasticsearch normalises cosine vectors
  at index time and scores them with the dot-product kernel (elastic/elasticsearch#99445),
  so cosine costs nothing, while ``dot_product`` rejects any document or query vector that
  is not unit length to within 1e-3 (e.g. an averaged query vector).
  (reference/8.15/dense-vector.html#dense-vector-similarity)
- ``index_options.type`` is configurable: ``int8_hnsw`` (the 8.x default for float vectors,
  4x less memory), ``hnsw``, ``int4_hnsw`` (8x, even dims only), ``bbq_hnsw`` (32x, dims >= 64,
  needs 8.16+), ``flat`` and ``int8_flat`` (brute force, exact for small catalogues).
  (reference/8.15/dense-vector.html#dense-vector-index-options)
- ``_meta.ctir_es`` records the ``IndexSchema`` (vector fields with their encoder manifests)
  so the query side can check that it encodes with the encoders that built the index.
  (reference/8.15/mapping-meta-field.html)
- ``record`` is an ``object`` with ``enabled: false``: kept in ``_source`` verbatim (category
  paths as lists of levels, attributes as a mapping) so ``get`` rebuilds the exact
  ``Product``, but never parsed or indexed. (reference/8.15/enabled.html)
- ``dynamic: strict`` turns a misspelt field into a per-document error instead of a silently
  auto-mapped field. The one exception is ``category_levels`` (``dynamic: true`` on that object
  only), whose ``l1``, ``l2``, ... sub-fields the client fills per depth; a dynamic
  template maps each of them to ``keyword``. (reference/8.15/dynamic.html,
  dynamic-templates.html#path-match-unmatch)
- Derived fields, computed by the client when it builds each document
  (``documents``): ``category_top``, ``category_ancestors`` (every ancestor
  as "A > B"), ``category_levels.lN``, ``category_depth`` and ``ingested_at``. Mapping v2 had an
  ingest pipeline (Painless, html_strip) derive them server-side; v3 needs no ingest module,
  and ``_reindex`` copies documents verbatim (nothing is re-derived or re-stamped).
- Typed values (mapping v4): the index's ``IndexSchema.values`` become typed fields under one
  object, ``values.<name>``: a ``keyword`` with the built-in ``lowercase`` normalizer (term and
  terms queries are normalised the same way, so ``brand:sony`` finds ``Sony`` while ``_source``
  keeps the catalogue's spelling; the normalizer lives in the server, not analysis-common), a
  ``double`` for a number (its unit is in the schema in ``_meta``) or a ``boolean``.
  The properties come from the schema, not from dynamic mapping or dynamic templates: a
  template can only pick a type from a name pattern or the JSON type of the FIRST document
  that holds the name (a ``"5"`` size would make a keyword of a number, a ``4`` rating a
  ``long`` that truncates ``4.5``), while the schema's kinds are inferred over the whole
  catalogue with config overrides, and a conflict is found once, at setup, instead of per
  document. The ``values`` object is ``dynamic: false``: a value the schema does not name is
  kept in ``_source`` (the product reads back whole) but not indexed until the schema maps it
  (a reindex then indexes it from ``_source``). (reference/8.15/normalizer.html,
  dynamic.html, number.html)
- Versioned indices behind an alias: the store writes and reads ``products`` (an alias), the
  data lives in ``products-v1``, ``products-v2``, ...; see ``aliases``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ctir_es.errors import ConfigError
from ctir_es.schema import IndexSchema, VectorField
from ctir_es.values import ValueSpec

# v3: documents carry their derived fields (no ingest pipeline); v4: typed values
# (``values.<name>``). A v3 index migrates by ``reindex`` (its documents copy verbatim); an
# older one is built again by an ingest.
MAPPING_VERSION = 4
# The first version whose documents copy verbatim into the current mapping.
REINDEXABLE_FROM = 3
META_KEY = "ctir_es"

# One char between the levels of a category path key; see the module docstring.
PATH_DELIMITER = "\u001f"
# The text analyser: ``english`` where the cluster has analysis-common (every distribution but
# the test one), else ``standard``; ``text_analyzer_for`` decides from the cluster's modules.
TEXT_ANALYZER = "english"
FALLBACK_TEXT_ANALYZER = "standard"
TEXT_ANALYZERS: tuple[str, ...] = (TEXT_ANALYZER, FALLBACK_TEXT_ANALYZER)

# field names the product documents use; vector fields may not reuse them.
ID_FIELD = "id"
TITLE_FIELD = "title"
CATEGORIES_FIELD = "categories"
CATEGORY_PATH_FIELD = "category_path"
ATTRIBUTES_FIELD = "attributes"
DESCRIPTION_FIELD = "description"
MARKET_FIELD = "market"
HAS_IMAGE_FIELD = "has_image"
IMAGE_FIELD = "image"
IMAGE_DIR_FIELD = "image_dir"  # directory of a local image file (for serving), not for URLs
VECTOR_FIELDS_FIELD = "vector_fields"
RECORD_FIELD = "record"
# derived by the client (``documents.derived_fields``)
CATEGORY_TOP_FIELD = "category_top"
CATEGORY_ANCESTORS_FIELD = "category_ancestors"
CATEGORY_LEVELS_FIELD = "category_levels"
CATEGORY_DEPTH_FIELD = "category_depth"
INGESTED_AT_FIELD = "ingested_at"
VALUES_FIELD = "values"  # typed values, ``values.<name>`` (mapping v4)
# A product's values and exact category paths as one JSON string in doc values only (not
# searched): what a shop request's facets, sort and value collapse read for ~200-1000 candidates.
# Reading it costs no stored-field load, where ``_source`` (holding the vectors) or even ``_id``
# costs ~0.2 ms per document (``summaries``); added in place to an index created without it.
SUMMARY_FIELD = "summary"
# Keyword doc values hold at most 32,766 bytes: 8,191 characters of up to 4 bytes each. A longer
# summary is not kept (``ignore_above``) and that product is read from ``_source`` instead.
SUMMARY_MAX_CHARS = 8191
RESERVED_FIELDS: frozenset[str] = frozenset(
    {
        ID_FIELD,
        TITLE_FIELD,
        CATEGORIES_FIELD,
        CATEGORY_PATH_FIELD,
        ATTRIBUTES_FIELD,
        DESCRIPTION_FIELD,
        MARKET_FIELD,
        HAS_IMAGE_FIELD,
        IMAGE_FIELD,
        IMAGE_DIR_FIELD,
        VECTOR_FIELDS_FIELD,
        RECORD_FIELD,
        CATEGORY_TOP_FIELD,
        CATEGORY_ANCESTORS_FIELD,
        CATEGORY_LEVELS_FIELD,
        CATEGORY_DEPTH_FIELD,
        INGESTED_AT_FIELD,
        VALUES_FIELD,
        SUMMARY_FIELD,
    }
)
# A keyword value is matched case-insensitively: Elasticsearch's built-in ``lowercase``
# normalizer (in the server itself, so the test distribution has it too).
KEYWORD_NORMALIZER = "lowercase"
# value kind (``ctir_es.values.KINDS``) -> its field type
VALUE_FIELD_TYPES: dict[str, str] = {"keyword": "keyword", "number": "double", "boolean": "boolean"}

DEFAULT_INDEX_OPTIONS = "int8_hnsw"
# index_options.type -> (needs even dims, minimum dims). Types that do not exist in 8.x are
# left out on purpose (e.g. bbq_disk is 9.x only).
INDEX_OPTION_TYPES: dict[str, tuple[bool, int]] = {
    "int8_hnsw": (False, 1),
    "hnsw": (False, 1),
    "int4_hnsw": (True, 1),
    "bbq_hnsw": (False, 64),
    "flat": (False, 1),
    "int8_flat": (False, 1),
}
SIMILARITIES: tuple[str, ...] = ("cosine", "dot_product", "l2_norm", "max_inner_product")

# Field names Elasticsearch treats specially or that would create object paths.
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def path_key(path: Iterable[str]) -> str:
    """The form of a category path stored in ``category_path`` and used by subtree filters."""
    return PATH_DELIMITER.join(" ".join(level.split()) for level in path)


def check_index_options(index_options: str, dims: int, field: str = "vector") -> None:
    """Fail before the server does when an index type cannot hold vectors of ``dims``."""
    rule = INDEX_OPTION_TYPES.get(index_options)
    if rule is None:
        raise ConfigError(
            f"unknown index_options type {index_options!r}; supported: {', '.join(INDEX_OPTION_TYPES)}"
        )
    even, minimum = rule
    if even and dims % 2:
        raise ConfigError(f"{field}: {index_options} needs an even number of dims, got {dims}")
    if dims < minimum:
        raise ConfigError(f"{field}: {index_options} needs at least {minimum} dims, got {dims}")


def check_vector_field(name: str, field: VectorField) -> None:
    """Vector field names become top-level mapping fields: keep them plain and unreserved."""
    if not _FIELD_NAME.match(name) or name in RESERVED_FIELDS:
        raise ConfigError(
            f"bad vector field name {name!r}: use letters, digits and '_' (not one of "
            f"{', '.join(sorted(RESERVED_FIELDS))})"
        )
    if field.dims < 1 or field.dims > 4096:
        raise ConfigError(f"{name}: dims must be between 1 and 4096, got {field.dims}")
    if field.similarity not in SIMILARITIES:
        raise ConfigError(
            f"{name}: unknown similarity {field.similarity!r}; supported: {', '.join(SIMILARITIES)}"
        )


def vector_mapping(
    name: str, field: VectorField, index_options: str = DEFAULT_INDEX_OPTIONS
) -> dict[str, Any]:
    """One ``dense_vector`` field, indexed for approximate kNN with ``index_options``."""
    check_vector_field(name, field)
    check_index_options(index_options, field.dims, name)
    return {
        "type": "dense_vector",
        "dims": field.dims,
        "index": True,
        "similarity": field.similarity,
        "index_options": {"type": index_options},
    }


class VectorMappings:
    """What differs between engines in the index bodies: how a vector field is mapped and read
    back, the index types it may use, and the index settings kNN needs. Elasticsearch's
    ``dense_vector`` here; OpenSearch's ``knn_vector`` subclasses it
    (``ctir_es.store.opensearch.bodies.index``). Every other part of the mapping is shared."""

    engine = "Elasticsearch"
    default_index_options = DEFAULT_INDEX_OPTIONS
    index_option_types: Mapping[str, tuple[bool, int]] = INDEX_OPTION_TYPES

    def vector_mapping(self, name: str, field: VectorField, index_options: str) -> dict[str, Any]:
        return vector_mapping(name, field, index_options)

    def mapped_vector_field(self, mapping: Mapping[str, Any], name: str) -> VectorField | None:
        """The vector property ``name`` of a GET-mapping body (dims and similarity), or None."""
        prop = _properties(mapping).get(name)
        if not isinstance(prop, Mapping) or prop.get("type") != "dense_vector" or prop.get("dims") is None:
            return None
        return VectorField(int(prop["dims"]), str(prop.get("similarity", "cosine")))

    def index_settings(self) -> dict[str, Any]:
        """Index settings beyond shards and replicas (none on Elasticsearch)."""
        return {}


ELASTICSEARCH = VectorMappings()


def meta(
    schema: IndexSchema,
    index_options: str = DEFAULT_INDEX_OPTIONS,
    text_analyzer: str = TEXT_ANALYZER,
    mapping_version: int = MAPPING_VERSION,
) -> dict[str, Any]:
    """The ``_meta`` block: what built the index, read back by ``schema_from_mapping``.

    ``put_mapping`` replaces ``_meta`` whole, so updates pass the index's own
    ``text_analyzer`` and ``mapping_version``.
    """
    info: dict[str, Any] = {
        "mapping_version": mapping_version,
        "schema": schema.to_json(),
        "index_options": index_options,
        "text_analyzer": text_analyzer,
        "category_path_delimiter": PATH_DELIMITER,
    }
    return {META_KEY: info}


def check_text_analyzer(name: str) -> None:
    if name not in TEXT_ANALYZERS:
        raise ConfigError(f"unknown text analyser {name!r}; supported: {', '.join(TEXT_ANALYZERS)}")


def product_properties(text_analyzer: str = TEXT_ANALYZER) -> dict[str, Any]:
    """The product fields every index has, whatever its vectors."""
    check_text_analyzer(text_analyzer)
    text = {"type": "text", "analyzer": text_analyzer}
    return {
        ID_FIELD: {"type": "keyword"},
        TITLE_FIELD: {**text, "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        CATEGORIES_FIELD: {
            **text,
            "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}},
        },
        CATEGORY_PATH_FIELD: {"type": "keyword"},
        ATTRIBUTES_FIELD: dict(text),
        DESCRIPTION_FIELD: dict(text),
        MARKET_FIELD: {"type": "keyword"},
        HAS_IMAGE_FIELD: {"type": "boolean"},
        IMAGE_FIELD: {"type": "keyword", "index": False},
        IMAGE_DIR_FIELD: {"type": "keyword"},
        VECTOR_FIELDS_FIELD: {"type": "keyword"},
        RECORD_FIELD: {"type": "object", "enabled": False},
        CATEGORY_TOP_FIELD: {"type": "keyword"},
        CATEGORY_ANCESTORS_FIELD: {"type": "keyword"},
        CATEGORY_LEVELS_FIELD: {"type": "object", "dynamic": True},
        CATEGORY_DEPTH_FIELD: {"type": "short"},
        INGESTED_AT_FIELD: {"type": "date"},
        SUMMARY_FIELD: summary_mapping(),
    }


def summary_mapping() -> dict[str, Any]:
    """``summary``: doc values only (not indexed, so never searched or scored)."""
    return {"type": "keyword", "index": False, "doc_values": True, "ignore_above": SUMMARY_MAX_CHARS}


def has_summary(mapping: Mapping[str, Any]) -> bool:
    """Does a GET-mapping body map ``summary`` (indices created before it do not)?"""
    return SUMMARY_FIELD in _properties(mapping)


def value_field(name: str) -> str:
    """The indexed field of the typed value ``name`` (a normalised value name: no dots)."""
    return f"{VALUES_FIELD}.{name}"


def value_mapping(spec: ValueSpec) -> dict[str, Any]:
    """The field of one typed value: keyword (lowercase-normalised), double or boolean."""
    if spec.kind == "keyword":
        return {"type": "keyword", "normalizer": KEYWORD_NORMALIZER}
    return {"type": VALUE_FIELD_TYPES[spec.kind]}


def values_mapping(values: Mapping[str, ValueSpec]) -> dict[str, Any]:
    """The ``values`` object: one typed field per value of the schema, names sorted; a name the
    schema does not hold stays in ``_source`` unindexed (``dynamic: false``)."""
    return {
        "type": "object",
        "dynamic": False,
        "properties": {name: value_mapping(values[name]) for name in sorted(values)},
    }


def dynamic_templates() -> list[dict[str, Any]]:
    """``category_levels.l1``, ``.l2``, ... (one per depth) are keywords."""
    return [
        {
            "category_levels": {
                "path_match": f"{CATEGORY_LEVELS_FIELD}.*",
                "mapping": {"type": "keyword"},
            }
        }
    ]


def mappings(
    schema: IndexSchema,
    index_options: str = DEFAULT_INDEX_OPTIONS,
    text_analyzer: str = TEXT_ANALYZER,
    unlisted: Mapping[str, VectorField] | None = None,
    vectors: VectorMappings = ELASTICSEARCH,
) -> dict[str, Any]:
    """Mappings for ``schema``: product fields plus one vector field (``vectors``' kind) per
    vector field. ``unlisted`` vector fields are mapped too but left out of ``_meta`` (see
    ``unlisted_vector_fields``)."""
    properties = product_properties(text_analyzer)
    properties[VALUES_FIELD] = values_mapping(schema.values)
    for name, field in schema.vectors.items():
        properties[name] = vectors.vector_mapping(name, field, index_options)
    for name, field in (unlisted or {}).items():
        if name not in schema.vectors:
            properties[name] = vectors.vector_mapping(name, field, index_options)
    return {
        "dynamic": "strict",
        "dynamic_templates": dynamic_templates(),
        "_meta": meta(schema, index_options, text_analyzer),
        "properties": properties,
    }


def index_body(
    schema: IndexSchema,
    index_options: str = DEFAULT_INDEX_OPTIONS,
    *,
    shards: int = 1,
    replicas: int | None = None,
    text_analyzer: str = TEXT_ANALYZER,
    unlisted: Mapping[str, VectorField] | None = None,
    vectors: VectorMappings = ELASTICSEARCH,
) -> dict[str, Any]:
    """The create-index body (``settings`` + ``mappings``).

    One shard by default: kNN gathers ``num_candidates`` per shard, and a product catalogue
    of up to a few million items fits one shard. ``replicas=None`` keeps the cluster default.
    ``unlisted``: vector fields mapped but not (yet) in the schema (a reindex keeps them).
    """
    index: dict[str, Any] = {"number_of_shards": shards}
    if replicas is not None:
        index["number_of_replicas"] = replicas
    index.update(vectors.index_settings())
    return {
        "settings": {"index": index},
        "mappings": mappings(schema, index_options, text_analyzer, unlisted, vectors),
    }


def schema_from_mapping(mapping: Mapping[str, Any]) -> IndexSchema | None:
    """Read the ``IndexSchema`` back from a GET-mapping body (``{"mappings": {...}}`` or bare)."""
    body = mapping.get("mappings", mapping)
    info = (body.get("_meta") or {}).get(META_KEY)
    if not isinstance(info, Mapping) or "schema" not in info:
        return None
    return IndexSchema.from_json(info["schema"])


def _info(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    body = mapping.get("mappings", mapping)
    info = (body.get("_meta") or {}).get(META_KEY)
    return info if isinstance(info, Mapping) else {}


def index_options_from_mapping(mapping: Mapping[str, Any]) -> str | None:
    value = _info(mapping).get("index_options")
    return str(value) if value else None


def mapping_version_from_mapping(mapping: Mapping[str, Any]) -> int | None:
    value = _info(mapping).get("mapping_version")
    return int(value) if value is not None else None


def text_analyzer_from_mapping(mapping: Mapping[str, Any]) -> str:
    """The analyser of the text fields (``english`` for indices made before it was recorded)."""
    value = _info(mapping).get("text_analyzer")
    return str(value) if value else TEXT_ANALYZER


def added_vector_properties(
    existing: IndexSchema,
    wanted: IndexSchema,
    index_options: str = DEFAULT_INDEX_OPTIONS,
    vectors: VectorMappings = ELASTICSEARCH,
) -> dict[str, Any]:
    """Mappings for vector fields in ``wanted`` that the index lacks (for put-mapping)."""
    return {
        name: vectors.vector_mapping(name, field, index_options)
        for name, field in wanted.vectors.items()
        if name not in existing.vectors
    }


def merged_schema(existing: IndexSchema, wanted: IndexSchema) -> IndexSchema:
    """Existing fields kept as they are, new ones appended (vectors and typed values)."""
    vectors = dict(existing.vectors)
    for name, field in wanted.vectors.items():
        vectors.setdefault(name, field)
    values = dict(existing.values)
    for name, spec in wanted.values.items():
        values.setdefault(name, spec)
    return IndexSchema(vectors, values)


# ---------------------------------------------------------------- typed values added in place


def mapped_value_types(mapping: Mapping[str, Any]) -> dict[str, str]:
    """``{value name: field type}`` of the ``values`` object of a GET-mapping body (empty for an
    index of mapping v3 or older, which has none)."""
    prop = _properties(mapping).get(VALUES_FIELD)
    inner = prop.get("properties") if isinstance(prop, Mapping) else None
    if not isinstance(inner, Mapping):
        return {}
    return {str(n): str(p.get("type", "object")) for n, p in inner.items() if isinstance(p, Mapping)}


def _spec_text(spec: ValueSpec) -> str:
    return f"{spec.kind} in {spec.unit}" if spec.unit else spec.kind


def value_conflicts(
    existing: IndexSchema, mapping: Mapping[str, Any], wanted: IndexSchema
) -> list[str]:
    """Why ``wanted``'s typed values cannot go into the index: a name the index holds as
    another kind, or as a number in another unit (a bare number takes the index's unit), or
    mapped with another field type than its kind needs."""
    out = []
    mapped = mapped_value_types(mapping)
    for name in sorted(wanted.values):
        theirs = wanted.values[name]
        mine = existing.values.get(name)
        if mine is not None and (
            mine.kind != theirs.kind or (mine.unit and theirs.unit and mine.unit != theirs.unit)
        ):
            out.append(f"value {name!r} is a {_spec_text(mine)} in the index, the catalogue gives a "
                       f"{_spec_text(theirs)}")
            continue
        field_type = mapped.get(name)
        need = VALUE_FIELD_TYPES[(mine or theirs).kind]
        if field_type is not None and field_type != need:
            out.append(f"value {name!r} is mapped as {field_type} in the index, a "
                       f"{(mine or theirs).kind} needs {need}")
    return out


def added_values(existing: IndexSchema, mapping: Mapping[str, Any], wanted: IndexSchema) -> list[str]:
    """Names of ``wanted``'s typed values the index neither lists in ``_meta`` nor maps."""
    mapped = mapped_value_types(mapping)
    return sorted(n for n in wanted.values if n not in existing.values or n not in mapped)


def values_put_mapping(values: Mapping[str, ValueSpec]) -> dict[str, Any]:
    """The ``properties`` of a ``PUT {index}/_mapping`` that maps every value of ``values`` (the
    merged schema's: fields already mapped alike are accepted again, new ones are added)."""
    return {VALUES_FIELD: values_mapping(values)}


# ---------------------------------------------------------------- vector fields added in place
# ``VectorWriter`` (store.base): a new vector field is first mapped (``add_vector_field_body``)
# and filled by partial updates (``documents.vector_update_lines``) while ``_meta`` does not
# list it yet; ``set_vector_field_body`` then records it in ``_meta`` (the schema in force).


def mapping_properties(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``properties`` of a GET-mapping body (``{"mappings": {...}}`` or bare), or ``{}``."""
    body = mapping.get("mappings", mapping)
    properties = body.get("properties") if isinstance(body, Mapping) else None
    return properties if isinstance(properties, Mapping) else {}


_properties = mapping_properties


def mapped_vector_field(
    mapping: Mapping[str, Any], name: str, vectors: VectorMappings = ELASTICSEARCH
) -> VectorField | None:
    """The vector property ``name`` of a GET-mapping body (dims and similarity; no encoder
    manifest), or None when it is not mapped as one."""
    return vectors.mapped_vector_field(mapping, name)


def unlisted_vector_fields(
    mapping: Mapping[str, Any], vectors: VectorMappings = ELASTICSEARCH
) -> dict[str, VectorField]:
    """Vector fields in the mapping that ``_meta`` does not list (written in place, waiting
    for ``set_vector_field``): a new index version must map them too, or copying documents
    that hold them fails (``dynamic: strict``)."""
    schema = schema_from_mapping(mapping)
    listed = schema.vectors if schema is not None else {}
    out: dict[str, VectorField] = {}
    for name in sorted(_properties(mapping)):
        if name not in listed and name not in RESERVED_FIELDS:
            field = vectors.mapped_vector_field(mapping, name)
            if field is not None:
                out[name] = field
    return out


def add_vector_field_body(
    name: str,
    field: VectorField,
    index_options: str = DEFAULT_INDEX_OPTIONS,
    vectors: VectorMappings = ELASTICSEARCH,
) -> dict[str, Any]:
    """``PUT {index}/_mapping`` adding one vector field, ``_meta`` left as it is (so the schema
    does not list the field yet)."""
    return {"properties": {name: vectors.vector_mapping(name, field, index_options)}}


def replaced_schema(existing: IndexSchema, name: str, field: VectorField) -> IndexSchema:
    """``existing`` with ``name`` set to ``field`` (in place when present, else appended)."""
    return existing.with_vector(name, field)


def set_vector_field_body(
    schema: IndexSchema,
    name: str,
    field: VectorField,
    index_options: str = DEFAULT_INDEX_OPTIONS,
    text_analyzer: str = TEXT_ANALYZER,
    mapping_version: int = MAPPING_VERSION,
    *,
    add_property: bool = True,
    vectors: VectorMappings = ELASTICSEARCH,
) -> dict[str, Any]:
    """``PUT {index}/_mapping`` recording ``name`` with ``field`` in ``_meta`` (``schema`` is
    the index's schema before; ``_meta`` is replaced whole, so the index's own options,
    analyser and mapping version are passed), plus its ``dense_vector`` property unless the
    index maps it already (``add_property=False``: dims and similarity cannot change)."""
    body: dict[str, Any] = {}
    prop = vectors.vector_mapping(name, field, index_options)
    if add_property:
        body["properties"] = {name: prop}
    body["_meta"] = meta(
        replaced_schema(schema, name, field), index_options, text_analyzer, mapping_version
    )
    return body


def meta_index_properties() -> dict[str, Any]:
    """Checkpoints (``position``) and index metadata (``value``, a JSON object kept verbatim),
    one document per key. ``put_mapping`` of these is idempotent: older side indices gain
    ``value`` on first use."""
    return {
        "key": {"type": "keyword"},
        "position": {"type": "long"},
        "value": {"type": "object", "enabled": False},
    }


def meta_index_body() -> dict[str, Any]:
    """The small side index ``{alias}-ctir-meta``: it belongs to the alias, so it survives
    reindexes and swaps."""
    return {
        "settings": {"index": {"number_of_shards": 1}},
        "mappings": {"dynamic": "strict", "properties": meta_index_properties()},
    }


# ---------------------------------------------------------------- sizing (docs/scaling.md)

TARGET_SHARD_BYTES = 30 * 1024**3  # Elastic's guidance: shards of 10-50 GB; kNN prefers few
MAX_SHARD_DOCS = 200_000_000  # Elastic's guidance: under 200M documents per shard
TEXT_BYTES_PER_PRODUCT = 2048  # title, paths, attributes, description, record (flipkart: ~2.3 KB)
SOURCE_BYTES_PER_DIM = 16  # a float in _source JSON, compressed: measured 16 (benchmarks/es_sizing.py)
# bytes per dimension of the kNN structures besides the raw float32 vector (4 bytes)
QUANTISED_BYTES_PER_DIM: dict[str, float] = {
    "hnsw": 0.0,
    "flat": 0.0,
    "int8_hnsw": 1.0,
    "int8_flat": 1.0,
    "int4_hnsw": 0.5,
    "bbq_hnsw": 1 / 8,
}


def bytes_per_product(schema: IndexSchema, index_options: str = DEFAULT_INDEX_OPTIONS) -> float:
    """Estimated disk per product (one copy): text + per vector field its _source JSON, the
    float32 vector and the quantised copy. An estimate; docs/scaling.md compares it with
    measured sizes."""
    extra = QUANTISED_BYTES_PER_DIM.get(index_options, 1.0)
    vectors = sum(f.dims * (SOURCE_BYTES_PER_DIM + 4 + extra) for f in schema.vectors.values())
    return TEXT_BYTES_PER_PRODUCT + vectors


def suggested_shards(
    products: int, schema: IndexSchema, index_options: str = DEFAULT_INDEX_OPTIONS
) -> int:
    """Primary shards for ``products``: shards of about 30 GB and under 200M documents, at
    least 1. kNN search visits every shard, so fewer, larger shards are faster to query."""
    if products < 0:
        raise ConfigError(f"expected products must be >= 0, got {products}")
    by_size = products * bytes_per_product(schema, index_options) / TARGET_SHARD_BYTES
    by_docs = products / MAX_SHARD_DOCS
    return max(1, math.ceil(max(by_size, by_docs)))
