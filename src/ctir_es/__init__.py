"""ctir-es: multimodal hybrid category-to-image search for e-commerce catalogues.

Top-level layout (one concept per subpackage):

- ``products``     the validated ``Product`` record every reader yields
- ``ingest``       catalogue readers, image fetching, the ingest pipeline and its report
- ``encoders``     text / image encoders (sentence-transformers, open_clip)
- ``schema``       the values crossing the Store boundary (index schema, documents, queries, hits)
- ``store``        the ``Store`` protocol with an embedded (SQLite) backend and the
                   Elasticsearch backend (``store.elasticsearch``: one package, bodies as data)
- ``kibana``       Kibana saved objects for the products index (data) and their import
- ``ranking``      query planning and fusion (RRF, linear)
- ``cli``          thin click commands over the library
- ``service``      the HTTP API and web page (FastAPI) over ``Search``

The Python entry point is ``ctir_es.Search`` (imported lazily, so ``import ctir_es`` stays
light)::

    import ctir_es
    with ctir_es.Search.open() as search:
        print(search.search("Kitchen & Dining > Cookware", k=5).to_json())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .search import Search

__version__ = "0.1.0"
__all__ = ["Search", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Search":
        from .search import Search

        return Search
    raise AttributeError(f"module 'ctir_es' has no attribute {name!r}")
