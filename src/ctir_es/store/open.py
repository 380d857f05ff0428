"""Which store a configuration names: Elasticsearch when a URL is set, else the embedded file."""

from __future__ import annotations

from ..config import Settings
from .base import Store


def open_store(settings: Settings) -> Store:
    """The Elasticsearch store when a URL is configured, else the embedded SQLite file."""
    if settings.es_url:
        from .elasticsearch import ElasticsearchStore, EsConnection

        # The [elasticsearch] config table mixes connection fields (url, api_key, ...) and
        # store options (index_options, chunk_size, ...): route each to its owner.
        conn_fields = set(EsConnection.__dataclass_fields__)
        conn_opts = {k: v for k, v in settings.es_options.items() if k in conn_fields}
        store_opts = {k: v for k, v in settings.es_options.items() if k not in conn_fields}
        conn = EsConnection.from_env(url=settings.es_url, index=settings.es_index, **conn_opts)
        return ElasticsearchStore(conn, **store_opts)
    from .embedded import EmbeddedStore

    # the lexical_engine setting picks the engine of a new store; an existing one keeps its own
    return EmbeddedStore(settings.store, vector_index=settings.vector_index, new_lexical=settings.lexical_engine)
