"""The OpenSearch backend: ``OpenSearchStore``, beside ``store.elasticsearch`` and built from it.

- ``store``    ``OpenSearchStore``: ``ElasticsearchStore`` with OpenSearch's dialect
- ``session``  ``OsSession``: OpenSearch's client, vector mapping and cluster facts
- ``client``   ``OpenSearchClient``: elasticsearch-py's typed API speaking plain JSON
- ``cluster``  what the cluster's version and plugins allow (k-NN, lexical query, hybrid)
- ``bodies/``  what differs as pure data: ``index`` (``knn_vector``), ``search`` (the ``knn``
  query), ``hybrid`` (the neural-search plugin's hybrid query and pipelines)

Shared with Elasticsearch, unchanged: connection settings and secret redaction, lifecycle
(versioned indices, aliases, reindex, swap), bulk writes, documents, filters, statistics and
response parsing (``store.elasticsearch``).
"""

from .store import ENV_PREFIX, OpenSearchStore

__all__ = ["ENV_PREFIX", "OpenSearchStore"]
