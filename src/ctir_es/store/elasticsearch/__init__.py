"""The Elasticsearch backend, in one package.

- ``store``      ``ElasticsearchStore``: the ``Store`` protocol (and its optional capabilities)
- ``session``    the lazy client, error translation into ``StoreError``, cluster facts
- ``connection`` URL, auth, TLS, secret redaction, REST compatibility
- ``cluster``    what the cluster's version, modules and licence allow
- ``lifecycle``  versioned indices behind an alias: setup, status, reindex, swap, drop
- ``bulk``       chunked bulk writes with retries and per-document errors
- ``bodies/``    every request and response as pure data (no client, no I/O; golden-tested):
  ``index`` (mappings), ``documents``, ``filters``, ``search``, ``responses``, ``stats``,
  ``aliases``
"""

from .connection import EsConnection
from .store import BulkLoadReport, ElasticsearchStore

__all__ = ["BulkLoadReport", "ElasticsearchStore", "EsConnection"]
