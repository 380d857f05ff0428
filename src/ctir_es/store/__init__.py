"""Store layer: one protocol (``store.base``), two backends (``store.embedded``: SQLite;
``store.elasticsearch``), and ``store.open`` to pick one from the settings. The values that
cross the boundary live in ``ctir_es.schema``."""
