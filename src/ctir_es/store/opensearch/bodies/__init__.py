"""OpenSearch request bodies as pure data (no client, no I/O; golden-tested).

Only what differs from Elasticsearch lives here: ``index`` (``knn_vector`` fields and the
``index.knn`` setting), ``search`` (the ``knn`` query, the lexical query type) and ``hybrid``
(the neural-search plugin's ``hybrid`` query and its search pipelines). Documents, filters,
aliases, statistics and responses are Elasticsearch's (``store.elasticsearch.bodies``): the
same JSON on both engines.
"""
