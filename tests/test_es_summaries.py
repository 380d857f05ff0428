"""The ``summary`` doc-values field (issue 23, facet cost on Elasticsearch): a shop request reads
its candidates' values and categories from doc values instead of ``_source``.

As data: the field's mapping, the document's summary (exact values and category paths, none
when too long), the search body (doc values only: no ``_source``, no stored fields, no
``_id``) and its parsing. On a real node (``CTIR_ES_TEST_URL``): summaries equal what ``get``
reads back; a document written without one (an index created before the field, or a summary
too long) is read whole instead; and ``setup`` adds the field in place to an index created
without it, after which new writes carry it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from test_es_values import ROWS, VALUED, catalogue, live_mapping

from ctir_es.products import Product
from ctir_es.schema import Document
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.elasticsearch.bodies import documents
from ctir_es.store.elasticsearch.bodies import index as mapping

PRODUCT = Product(id="p1", title="Sony speaker", categories=(("Electronics", "Audio"), ("Gifts",)),
                  values={"price": 1299.0, "brand": "Sony", "fk_advantage": False})


def test_the_summary_holds_exact_values_and_paths_and_is_left_out_when_too_long() -> None:
    text = documents.summary_text(PRODUCT)
    assert text is not None and json.loads(text) == {
        "values": {"brand": "Sony", "fk_advantage": False, "price": 1299.0},
        "categories": [["Electronics", "Audio"], ["Gifts"]]}
    source = documents.document_source(Document(PRODUCT, {}))
    assert source[mapping.SUMMARY_FIELD] == text
    assert mapping.SUMMARY_FIELD not in documents.document_source(Document(PRODUCT, {}), summary=False)
    long = Product(id="p2", title="t", values={"brand": "x" * mapping.SUMMARY_MAX_CHARS})
    assert documents.summary_text(long) is None
    assert mapping.SUMMARY_FIELD not in documents.document_source(Document(long, {}))


def test_the_field_is_doc_values_only_and_the_read_loads_no_stored_field() -> None:
    assert mapping.summary_mapping() == {"type": "keyword", "index": False, "doc_values": True,
                                         "ignore_above": mapping.SUMMARY_MAX_CHARS}
    # 8,191 characters of up to 4 UTF-8 bytes each fit a keyword doc value (32,766 bytes)
    assert 4 * mapping.SUMMARY_MAX_CHARS <= 32766
    body = documents.summaries_body(["a", "b"])
    assert body == {"query": {"ids": {"values": ["a", "b"]}}, "size": 2, "_source": False,
                    "stored_fields": "_none_", "docvalue_fields": ["id", "summary"],
                    "track_total_hits": False}


def test_parsing_keeps_values_typed_and_skips_hits_without_a_summary() -> None:
    text = documents.summary_text(PRODUCT)
    response: dict[str, Any] = {"hits": {"hits": [
        {"fields": {"id": ["p1"], "summary": [text]}},
        {"fields": {"id": ["old"]}},  # written before the field existed
    ]}}
    got = documents.parse_summaries(response)
    assert list(got) == ["p1"]
    assert got["p1"].values == PRODUCT.values and got["p1"].categories == PRODUCT.categories
    assert isinstance(got["p1"].values["fk_advantage"], bool)


# ---------------------------------------------------------------- a real node


@pytest.mark.integration
def test_summaries_equal_what_get_reads(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    store.setup(VALUED)
    assert store.upsert(catalogue()).written == len(ROWS)
    store.client.indices.refresh(index=store.index)
    ids = [*ROWS, "no-such-id"]
    summaries = store.summaries(ids)
    full = store.get(ids)
    assert set(summaries) == set(full) == set(ROWS)
    for pid, product in summaries.items():
        assert (product.values, product.categories) == (full[pid].product.values, full[pid].product.categories)


@pytest.mark.integration
def test_documents_without_a_summary_are_read_whole(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    store.setup(VALUED)
    docs = catalogue()
    lines = documents.bulk_lines(docs[:3], store.index, summary=False)  # as an older writer sent them
    store.client.bulk(operations="\n".join(x for _, action, source in lines for x in (action, source)) + "\n",
                      refresh=True)
    assert store.upsert(docs[3:]).written == len(docs) - 3
    store.client.indices.refresh(index=store.index)
    raw = store.client.search(index=store.index, **documents.summaries_body(list(ROWS))).body
    assert set(documents.parse_summaries(raw)) == {d.product.id for d in docs[3:]}  # only the new ones hold one
    summaries = store.summaries(list(ROWS))
    assert set(summaries) == set(ROWS)  # the rest came from _source
    assert all(summaries[pid].values == ROWS[pid][1] for pid in ROWS)


@pytest.mark.integration
def test_setup_adds_the_field_to_an_index_created_without_it(
    make_store: Callable[..., ElasticsearchStore],
) -> None:
    store = make_store()
    body = mapping.index_body(VALUED)
    del body["mappings"]["properties"][mapping.SUMMARY_FIELD]  # as created before the field existed
    target = f"{store.index}-v1"
    store.client.indices.create(index=target, **body)
    store.client.indices.put_alias(index=target, name=store.index)
    assert mapping.SUMMARY_FIELD not in live_mapping(store)["properties"]
    store.setup(VALUED)
    got = live_mapping(store)["properties"][mapping.SUMMARY_FIELD]
    assert got == {k: v for k, v in mapping.summary_mapping().items() if k != "doc_values"}  # the default, not echoed
    assert store.upsert(catalogue()).written == len(ROWS)
    store.client.indices.refresh(index=store.index)
    raw = store.client.search(index=store.index, **documents.summaries_body(list(ROWS))).body
    assert set(documents.parse_summaries(raw)) == set(ROWS)
