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


def test_fusion_location_auto_and_server_without_server_side_rrf(on_es: Callable[..., Search],
                                                                 embedded: Search) -> None:
    """Where the node cannot fuse (the basic licence CI runs): auto answers the client-side
    ranking and ``server`` says why; the embedded store has no server to fuse on."""
    strict_embedded = Search(embedded.store, embedded.text_encoder, None, fusion_location="server")
    with pytest.raises(Unsupported, match="needs Elasticsearch"):
        strict_embedded.search(CATEGORY, k=10)
    client = on_es()
    allowed, why = client.store.cluster_info().fusion_support("rrf")  # type: ignore[attr-defined]
    if allowed:
        pytest.skip(f"this node fuses server-side ({why}): test_fusion_location_server_fuses_on_the_node covers it")
    auto = Search(client.store, client.text_encoder, None, fusion_location="auto")
    assert ids(auto.search(CATEGORY, k=10)) == ids(client.search(CATEGORY, k=10))
    strict = Search(client.store, client.text_encoder, None, fusion_location="server")
    with pytest.raises(Unsupported, match="rank-rrf|licence|version"):
        strict.search(CATEGORY, k=10)


def test_fusion_location_server_fuses_on_the_node(on_es: Callable[..., Search]) -> None:
    """A node with the rrf retriever (x-pack rank-rrf and an enterprise or trial licence): the
    ranking comes from one retriever round trip (no per-source breakdown) and equals the
    client-side RRF. Skipped, with the node's reason, elsewhere."""
    client = on_es()
    allowed, why = client.store.cluster_info().fusion_support("rrf")  # type: ignore[attr-defined]
    if not allowed:
        pytest.skip(f"this node has no server-side rrf fusion: {why}")
    expected = ids(client.search(CATEGORY, k=10, fusion="rrf"))
    for location in ("server", "auto"):
        fused = Search(client.store, client.text_encoder, None, fusion_location=location).search(
            CATEGORY, k=10, fusion="rrf")
        assert ids(fused) == expected, (location, why)
        assert all(count is None for count in fused.source_hits.values())  # the server fused: no per-source runs
