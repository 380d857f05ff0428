"""The OpenSearch product index: Elasticsearch's mapping with ``knn_vector`` fields.

Every product field, analyser, typed value and ``_meta`` entry is the Elasticsearch mapping's
(``store.elasticsearch.bodies.index``): what differs is the vector field and one setting.

- ``index.knn: true`` enables the k-NN plugin's approximate search on the index
  (mappings/supported-field-types/knn-vector).
- A vector is a ``knn_vector`` of ``dimension`` dims with a method: ``hnsw`` on the ``lucene``
  engine. The plugin's other engines (faiss, nmslib) are native libraries, which the Maven
  Central build of the plugin does not carry; Lucene's is also the engine whose filters run
  during the graph search (``k`` hits whenever ``k`` products match), like Elasticsearch's.
  (mappings/supported-field-types/knn-methods-engines, vector-search/filter-search-knn)
- ``space_type``: ``cosinesimil`` for the schema's ``cosine`` (score ``(2 - d) / 2 =
  (1 + cos) / 2``, Elasticsearch's cosine score, so the same conversion gives the cosine back),
  ``innerproduct`` for ``dot_product``, ``l2`` for ``l2_norm`` (knn-spaces).
- ``m`` 16 and ``ef_construction`` 100, set explicitly: the HNSW defaults of Elasticsearch's
  ``hnsw`` index type, so both engines build graphs alike.
- The text analysis is Elasticsearch's: ``english`` where the cluster has the analysis-common
  module, else the built-in ``standard`` (OpenSearch's integ-test distribution has no
  analysis-common either); the ``lowercase`` normalizer of keyword values is built into the
  server on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctir_es.errors import ConfigError
from ctir_es.schema import VectorField

from ...elasticsearch.bodies import index as es_index

ENGINE = "lucene"
METHOD = "hnsw"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
DEFAULT_INDEX_OPTIONS = "hnsw"
# the one index type: Lucene's float HNSW (needs even dims, minimum dims) as Elasticsearch's table
INDEX_OPTION_TYPES: dict[str, tuple[bool, int]] = {DEFAULT_INDEX_OPTIONS: (False, 1)}
SPACE_TYPES: dict[str, str] = {"cosine": "cosinesimil", "dot_product": "innerproduct", "l2_norm": "l2"}
SIMILARITIES: dict[str, str] = {space: similarity for similarity, space in SPACE_TYPES.items()}
KNN_SETTING = "knn"


def space_type(similarity: str, field: str = "vector") -> str:
    space = SPACE_TYPES.get(similarity)
    if space is None:
        raise ConfigError(
            f"{field}: OpenSearch's Lucene engine has no similarity {similarity!r}; "
            f"supported: {', '.join(SPACE_TYPES)}"
        )
    return space


def check_index_options(index_options: str, field: str = "vector") -> None:
    if index_options not in INDEX_OPTION_TYPES:
        raise ConfigError(
            f"{field}: unknown OpenSearch index type {index_options!r}; supported: "
            f"{', '.join(INDEX_OPTION_TYPES)} (Lucene's HNSW; faiss and nmslib need native libraries)"
        )


class KnnVectorMappings(es_index.VectorMappings):
    """``knn_vector`` fields on the Lucene engine (see the module docstring)."""

    engine = "OpenSearch"
    default_index_options = DEFAULT_INDEX_OPTIONS
    index_option_types: Mapping[str, tuple[bool, int]] = INDEX_OPTION_TYPES

    def vector_mapping(self, name: str, field: VectorField, index_options: str) -> dict[str, Any]:
        es_index.check_vector_field(name, field)
        check_index_options(index_options, name)
        return {
            "type": "knn_vector",
            "dimension": field.dims,
            "method": {
                "name": METHOD,
                "engine": ENGINE,
                "space_type": space_type(field.similarity, name),
                "parameters": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
            },
        }

    def mapped_vector_field(self, mapping: Mapping[str, Any], name: str) -> VectorField | None:
        prop = es_index.mapping_properties(mapping).get(name)
        if not isinstance(prop, Mapping) or prop.get("type") != "knn_vector" or prop.get("dimension") is None:
            return None
        raw = prop.get("method")
        method: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        # the field-level space_type (2.x+) or the method's; the plugin's default is l2
        space = str(method.get("space_type") or prop.get("space_type") or "l2")
        return VectorField(int(prop["dimension"]), SIMILARITIES.get(space, space))

    def index_settings(self) -> dict[str, Any]:
        return {KNN_SETTING: True}


KNN_VECTORS = KnnVectorMappings()


def index_body(schema: Any, **options: Any) -> dict[str, Any]:
    """The create-index body on OpenSearch (``es_index.index_body`` with ``knn_vector`` fields)."""
    options.setdefault("vectors", KNN_VECTORS)
    return es_index.index_body(schema, options.pop("index_options", DEFAULT_INDEX_OPTIONS), **options)
