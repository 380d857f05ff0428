"""The Elasticsearch index definition as data (settings, analysers, mappings, ``_meta``)."""

from .index import (
    DEFAULT_INDEX_OPTIONS,
    INDEX_OPTION_TYPES,
    MAPPING_VERSION,
    PATH_DELIMITER,
    RESERVED_FIELDS,
    added_vector_properties,
    index_body,
    mappings,
    merged_schema,
    meta,
    meta_index_body,
    path_key,
    schema_from_mapping,
)

__all__ = [
    "DEFAULT_INDEX_OPTIONS",
    "INDEX_OPTION_TYPES",
    "MAPPING_VERSION",
    "PATH_DELIMITER",
    "RESERVED_FIELDS",
    "added_vector_properties",
    "index_body",
    "mappings",
    "merged_schema",
    "meta",
    "meta_index_body",
    "path_key",
    "schema_from_mapping",
]
