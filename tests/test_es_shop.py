"""Facets on Elasticsearch and on the embedded store: flipkart-1050 in both (the tiny text model,
no images), the same queries and filters, identical facet counts. Facets are computed from the
fused candidates and the values ``store.get`` reads back, so they agree wherever the candidates
do: these queries are deep enough (kNN prefiltered, ``max(100, 2k)`` deep) that every product
passing the filters is a candidate on both stores. Marked ``integration`` (``CTIR_ES_TEST_URL``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import encoders

from ctir_es.filters import parse_filter_text
from ctir_es.ingest.readers import read_flipkart
from ctir_es.ingest.report import IngestReport
from ctir_es.search import Search
from ctir_es.shop.collapse import es_collapse, value_groups
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

FACETS = ("brand", "price", "rating", "fk_advantage", "colour", "category")


@pytest.fixture(scope="module")
def both(flipkart_dir: Path, tiny_text_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
         es_connection: object) -> Iterator[tuple[Search, Search]]:
    import uuid

    text, _ = encoders(tiny_text_model_dir, None)
    embedded = Search(EmbeddedStore(tmp_path_factory.mktemp("fk-shop") / "store.db"), text)
    es_store = ElasticsearchStore(es_connection.with_index(f"ctir-test-{uuid.uuid4().hex[:12]}"),  # type: ignore[attr-defined]
                                  index_options="hnsw", initial_backoff=0.1)
    es = Search(es_store, text)
    try:
        for search in (embedded, es):
            report = search.index(read_flipkart(flipkart_dir, IngestReport()))
            assert report.indexed == 1050
        yield embedded, es
    finally:
        embedded.close()
        try:
            es_store.drop()
        finally:
            es_store.close()


def both_answer(both: tuple[Search, Search], query: str, k: int, filters: list[str]) -> dict[str, object]:
    mine, theirs = (s.search(query, mode="text", k=k, facets=FACETS, filters=[parse_filter_text(f) for f in filters])
                    for s in both)
    assert mine.shop["candidates"] == theirs.shop["candidates"] > 0
    assert mine.facets == theirs.facets
    assert mine.shop["disjunctive_retrievals"] == theirs.shop["disjunctive_retrievals"]
    return dict(mine.facets)


def test_facet_counts_are_identical_on_both_stores(both: tuple[Search, Search]) -> None:
    # 2000 deep: every product with a retail price up to 1500 is a candidate (under the cutoff)
    wide = both_answer(both, "analog watch for women", 1000, ["retail_price:..1500"])
    assert 100 < wide["price"]["count"] < 1000 and wide["brand"]["values"]  # type: ignore[index]
    rated = both_answer(both, "cotton", 100, ["has:rating"])  # 161 rated products, 200 deep
    top = rated["brand"]["values"][0]  # type: ignore[index]
    # choosing a brand: the brand facet is counted without that filter, alike on both stores
    chosen = both_answer(both, "cotton", 100, ["has:rating", top["filter"]])
    assert chosen["brand"] == {**rated["brand"], "disjunctive": True}  # type: ignore[dict-item]
    assert chosen["price"]["count"] == top["count"]  # type: ignore[index]


def test_the_collapse_clause_groups_as_the_client_does(both: tuple[Search, Search]) -> None:
    """``es_collapse`` on a keyword value: Elasticsearch's groups (its normaliser lower-cases) are
    the groups ``value_groups`` makes of the same products."""
    _, es = both
    store: ElasticsearchStore = es.store  # type: ignore[assignment]
    query = {"bool": {"filter": [{"exists": {"field": "values.brand"}}]}}
    hits = store.client.search(index=store.index, query=query, size=1000, _source=False,
                               **es_collapse("brand")).body["hits"]["hits"]
    server = {h["fields"]["values.brand"][0] for h in hits}
    assert len(server) == len(hits)  # one hit per group
    ids = [h["_id"] for h in store.client.search(index=store.index, query=query, size=1000,
                                                  _source=False).body["hits"]["hits"]]
    values = {pid: doc.product.values for pid, doc in es.store.get(ids).items()}
    client = {g.removeprefix("v:") for g in value_groups(ids, values, "brand")}
    assert server == client and len(client) < len(ids)  # some brands hold several products
