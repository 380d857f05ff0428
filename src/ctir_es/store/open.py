"""Which store a configuration names: OpenSearch or Elasticsearch when its URL is set, else the
embedded file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from .base import Store


def _split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ``[elasticsearch]`` / ``[opensearch]`` table mixes connection fields (url, username,
    ...) and store options (index_options, chunk_size, ...): each to its owner."""
    from .elasticsearch import EsConnection

    conn_fields = set(EsConnection.__dataclass_fields__)
    conn = {k: v for k, v in options.items() if k in conn_fields}
    store = {k: v for k, v in options.items() if k not in conn_fields}
    return conn, store


def open_store(settings: Settings) -> Store:
    """The OpenSearch store when its URL is configured, the Elasticsearch store when its URL
    is, else the embedded SQLite file (both URLs: ``ConfigError``, from ``Settings.engine``)."""
    engine = settings.engine
    if engine == "opensearch":
        from .elasticsearch import EsConnection
        from .opensearch import ENV_PREFIX, OpenSearchStore

        conn_opts, store_opts = _split_options(settings.os_options)
        index = conn_opts.pop("index", None) or settings.es_index
        conn = EsConnection.from_env(prefix=ENV_PREFIX, url=settings.os_url, index=index, **conn_opts)
        return OpenSearchStore(conn, **store_opts)
    if engine == "elasticsearch":
        from .elasticsearch import ElasticsearchStore, EsConnection

        conn_opts, store_opts = _split_options(settings.es_options)
        conn = EsConnection.from_env(url=settings.es_url, index=settings.es_index, **conn_opts)
        return ElasticsearchStore(conn, **store_opts)
    from .embedded import EmbeddedStore

    # the lexical_engine setting picks the engine of a new store; an existing one keeps its own
    return EmbeddedStore(settings.store, vector_index=settings.vector_index, new_lexical=settings.lexical_engine)
