"""ctir-es: multimodal hybrid category-to-image search for e-commerce catalogues.

The package map (every module and subpackage, one line each) and the architecture are in
``docs/index.md``; ``tests/test_docs.py`` keeps that map complete, so it is not repeated here.
In short: readers (``ingest``) yield ``Product`` records, encoders (``encoders``, ONNX)
turn them into vectors, a ``Store`` (``store``: embedded SQLite or Elasticsearch) indexes
them, and ``ranking`` plans a query and fuses the BM25 and kNN lists; ``cli`` and
``service`` are thin layers over ``Search``.

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
