"""Kibana for the products index: talking to Kibana (``kibana``). The Elasticsearch backend itself
lives in ``ctir_es.store.elasticsearch``."""
