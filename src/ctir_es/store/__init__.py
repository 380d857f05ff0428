"""Store layer: one protocol, two backends (embedded SQLite, Elasticsearch)."""

from .base import (
    DEFAULT_FIELD_WEIGHTS,
    LEXICAL_FIELDS,
    LEXICAL_SOURCE,
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    Store,
    StoredProduct,
    VectorField,
    VectorQuery,
    WriteResult,
)

__all__ = [
    "DEFAULT_FIELD_WEIGHTS",
    "LEXICAL_FIELDS",
    "LEXICAL_SOURCE",
    "Document",
    "Hit",
    "IndexSchema",
    "LexicalQuery",
    "Store",
    "StoredProduct",
    "VectorField",
    "VectorQuery",
    "WriteResult",
]
