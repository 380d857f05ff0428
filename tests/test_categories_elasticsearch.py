"""Categories and back on a real Elasticsearch node, beside the embedded store: the same sample
and tiny text encoder give the same suggestions, the same audit and the same showcase. Marked
``integration``: it needs the node CI starts (``CTIR_ES_TEST_URL``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from service_support import encoders, sample_search

from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.store.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

MUGS = "Kitchen & Dining > Coffee Mugs"


@pytest.fixture
def on_es(make_store: Callable[..., ElasticsearchStore], tiny_text_model_dir: Path) -> Search:
    text, _ = encoders(tiny_text_model_dir, None)
    store = make_store(index_options="flat")  # exact kNN: the two stores must agree exactly
    search = Search(store, text, None)
    assert search.index(read_jsonl(sample_path(), IngestReport())).indexed == 280
    return search


def test_categorize_text_and_stored_product_agree(embedded: Search, on_es: Search) -> None:
    text = "stainless steel pressure cooker 5 L"
    mine, theirs = on_es.categorize(text=text, k=5), embedded.categorize(text=text, k=5)
    assert [c.path for c in mine.categories] == [c.path for c in theirs.categories]
    assert mine.categories[0].path[0] == "Kitchen & Dining"
    assert {s for c in mine.categories for s in c.signals} >= {"title", "bm25"}
    pid = embedded.search(MUGS, k=1).results[0].id
    es_suggestion = on_es.categorize(id=pid, k=3)
    assert [c.path for c in es_suggestion.categories] == [c.path for c in embedded.categorize(id=pid, k=3).categories]


def test_audit_finds_the_same_misfiled_products(tmp_path: Path, tiny_text_model_dir: Path, on_es: Search) -> None:
    """Three watches re-filed under coffee mugs: both stores put all three at the top."""
    embedded, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    with embedded:
        watches = [r.id for r in embedded.search("Watches", k=3, mode="category").results]
        moved = [{**embedded.product(pid).product.to_json(), "categories": [MUGS]} for pid in watches]
        for search in (embedded, on_es):
            assert search.index(moved).indexed == 3
        mine, theirs = on_es.audit(k=5), embedded.audit(k=5)
        assert mine.audited == theirs.audited == 280
        # BM25 differs between FTS5 and Elasticsearch (analysis, statistics), so the order of
        # the clean tail may differ; the misfiled products lead on both.
        assert {e.id for e in mine.entries[:3]} == {e.id for e in theirs.entries[:3]} == set(watches)
        assert all(e.suggested[0] == "Watches" for e in mine.entries[:3])


def test_showcase_is_diverse_on_both(embedded: Search, on_es: Search) -> None:
    mine, theirs = on_es.search(MUGS, k=10, diverse=True), embedded.search(MUGS, k=10, diverse=True)
    assert mine.fusion == theirs.fusion == "rrf+mmr(0.7)"
    print("diverse", [r.id[:6] for r in mine.results], [r.id[:6] for r in theirs.results])
    assert [r.id for r in mine.results][:3] == [r.id for r in theirs.results][:3]
    assert len({r.id for r in mine.results} & {r.id for r in theirs.results}) >= 7
    for response in (mine, theirs):  # no two results with the same normalised title
        titles = [" ".join(r.title.lower().split()) for r in response.results]
        assert len(set(titles)) == len(titles)
