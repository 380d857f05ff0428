"""The Elasticsearch backend's parts: ``connection`` (settings, auth, TLS, redaction),
``lifecycle`` (versioned indices, pipeline, reindex, alias swap), ``bulk`` (robust writes) and
``capabilities`` (version and licence). ``ctir_es.store.elasticsearch.ElasticsearchStore``
puts them together."""
