"""``Search`` on a real Elasticsearch next to the embedded store: the same sample, the same
tiny text encoder, the same questions (category tree, similar products, deletes, where
fusion runs). Marked ``integration``: it needs the node CI starts (``CTIR_ES_TEST_URL``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from service_support import encoders

from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.search import Search, Unsupported
from ctir_es.store.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

CATEGORY = "Kitchen & Dining > Cookware"


@pytest.fixture
def on_es(
    make_store: Callable[..., ElasticsearchStore], tiny_text_model_dir: Path
) -> Callable[..., Search]:
    """A ``Search`` over a fresh ES index holding the sample (one per test)."""

    def build(fusion_location: str = "client") -> Search:
        text, _ = encoders(tiny_text_model_dir, None)
        store = make_store(index_options="hnsw")
        search = Search(store, text, None, fusion_location=fusion_location)
        report = search.index(read_jsonl(sample_path(), IngestReport()))
        assert report.indexed == 280 and store.count() == 280
        return search

    return build


def ids(response: object) -> list[str]:
    return [r.id for r in response.results]  # type: ignore[attr-defined]


def test_category_tree_is_the_embedded_one(embedded: Search, on_es: Callable[..., Search]) -> None:
    es = on_es()
    assert es.categories() == embedded.categories()
    assert sum(node.count for node in es.categories()) == 280


def test_similar_uses_stored_vectors_on_both(embedded: Search, on_es: Callable[..., Search]) -> None:
    es = on_es()
    pid = ids(embedded.search(CATEGORY, k=1))[0]
    mine, theirs = es.similar(pid, k=10), embedded.similar(pid, k=10)
    assert mine.sources == theirs.sources == ["text"]  # kNN on its own vector, not BM25
    assert pid not in ids(mine)
    assert ids(mine) == ids(theirs)  # float hnsw over 280 products is exact here


def test_delete_is_seen_by_the_next_search(on_es: Callable[..., Search]) -> None:
    es = on_es()
    first = ids(es.search(CATEGORY, k=5))[0]
    assert es.store.delete([first]) == 1  # type: ignore[attr-defined]
    assert first not in ids(es.search(CATEGORY, k=50))
    assert es.store.count() == 279


def test_fusion_location(on_es: Callable[..., Search], embedded: Search) -> None:
    client = on_es()
    expected = ids(client.search(CATEGORY, k=10))
    auto = Search(client.store, client.text_encoder, None, fusion_location="auto")
    info = client.store.cluster_info()  # type: ignore[attr-defined]
    allowed, _why = info.fusion_support("rrf")
    if allowed:  # a cluster with x-pack rank-rrf and an enterprise/trial licence
        assert ids(auto.search(CATEGORY, k=10))  # server-side: one _search
    else:  # the test distribution: client-side, the same ranking, and "server" says why
        assert ids(auto.search(CATEGORY, k=10)) == expected
        strict = Search(client.store, client.text_encoder, None, fusion_location="server")
        with pytest.raises(Unsupported, match="rank-rrf|licence|version"):
            strict.search(CATEGORY, k=10)
    strict_embedded = Search(embedded.store, embedded.text_encoder, None, fusion_location="server")
    with pytest.raises(Unsupported, match="needs Elasticsearch"):
        strict_embedded.search(CATEGORY, k=10)
