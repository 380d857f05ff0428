"""ctir-es: multimodal hybrid category-to-image search for e-commerce catalogues.

Top-level layout (one concept per subpackage):

- ``products``     the validated ``Product`` record every reader yields
- ``ingest``       catalogue readers, image fetching, the ingest pipeline and its report
- ``encoders``     text / image encoders (sentence-transformers, open_clip)
- ``store``        the ``Store`` protocol with an embedded (SQLite) and an Elasticsearch backend
- ``es_mappings``  the Elasticsearch index definition, as data
- ``ranking``      query planning and fusion (RRF, linear)
- ``cli``          thin click commands over the library
"""

__version__ = "0.1.0"
