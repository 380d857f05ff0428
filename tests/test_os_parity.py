"""OpenSearch beside the embedded store: flipkart-1050 in both (the tiny text model, no images),
the same queries, the same top 10 from kNN, the BM25 overlap stated; and ``ctir-es evaluate
--os-url`` giving the embedded table's dense figures.

kNN: Lucene HNSW with float vectors, ``ef_search`` = ``max(100, 2k)`` on 1,050 products, and
scores turned back into cosines: every category query's ``text`` top 10 is the embedded store's
exact top 10, up to the order of products whose cosines tie at float32 precision. BM25 differs by formula: FTS5 normalises a
row's length once across columns and counts a row once for IDF, OpenSearch 2.19's
``cross_fields`` blends each term's statistics across fields (``combined_fields``, what the
Elasticsearch store uses, arrived in 3.2); the mean top-10 overlap measured here is asserted
as a floor and printed (``pytest -s``). Marked ``integration`` (``CTIR_ES_OS_TEST_URL``).
"""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from os_fixtures import os_url  # noqa: F401 - a fixture
from service_support import encoders
from test_eval_cli import catalogue

from ctir_es.cli.main import cli
from ctir_es.ingest.readers import read_flipkart
from ctir_es.ingest.report import IngestReport
from ctir_es.products import format_category_path
from ctir_es.schema import Hit
from ctir_es.search import Search
from ctir_es.store.elasticsearch import EsConnection
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.store.opensearch import OpenSearchStore

pytestmark = pytest.mark.integration

# measured 0.468 on OpenSearch 2.19.1 with the english analyser (cross_fields; most_fields 0.419,
# best_fields 0.455, cross_fields with tie_breaker 1 0.465): docs/opensearch.md
BM25_MIN_OVERLAP = 0.44


@pytest.fixture(scope="module")
def both(flipkart_dir: Path, tiny_text_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
         os_url: str) -> Iterator[tuple[Search, Search]]:  # noqa: F811
    text, _ = encoders(tiny_text_model_dir, None)
    embedded = Search(EmbeddedStore(tmp_path_factory.mktemp("fk-os") / "store.db", new_lexical="fts5"), text)
    os_store = OpenSearchStore(EsConnection(os_url, f"ctir-test-{uuid.uuid4().hex[:12]}", request_timeout=60),
                               initial_backoff=0.1)
    on_os = Search(os_store, text)
    try:
        for search in (embedded, on_os):
            report = search.index(read_flipkart(flipkart_dir, IngestReport()))
            assert report.indexed == 1050
        yield embedded, on_os
    finally:
        embedded.close()
        try:
            os_store.drop()
        finally:
            os_store.close()


def top10(search: Search, query: str) -> dict[str, list[Hit]]:
    plan = search.plan(query, mode="category")
    runs = search.store.search(plan.lexical, plan.vectors, 10)
    return {name: hits[:10] for name, hits in runs.items()}


def same_up_to_ties(mine: list[Hit], theirs: list[Hit], tol: float = 1e-6) -> bool:
    """The same products with the same scores rank by rank: any two that swapped places have
    scores equal within ``tol`` (OpenSearch keeps a float32 ``(1 + cos) / 2``, so cosines
    closer than ~1e-7 tie there and are ordered by id)."""
    return {h.id for h in mine} == {h.id for h in theirs} and len(mine) == len(theirs) and all(
        abs(a.score - b.score) <= tol for a, b in zip(mine, theirs, strict=True))


def test_knn_top10_is_identical_and_bm25_overlaps(both: tuple[Search, Search]) -> None:
    embedded, on_os = both
    counts = embedded.store.category_counts()  # type: ignore[attr-defined]
    assert counts == on_os.store.category_counts()  # type: ignore[attr-defined]
    queries = sorted(format_category_path(p) for p in counts if len(p) in (1, 2))
    assert len(queries) > 50
    overlaps, identical_bm25, identical_knn, knn_differ = [], 0, 0, []
    for query in queries:
        mine, theirs = top10(on_os, query), top10(embedded, query)
        ids = {name: [h.id for h in hits] for name, hits in mine.items()}
        their_ids = {name: [h.id for h in hits] for name, hits in theirs.items()}
        identical_knn += ids["text"] == their_ids["text"]
        if not same_up_to_ties(mine["text"], theirs["text"]):
            knn_differ.append(query)
        overlaps.append(len(set(ids["bm25"]) & set(their_ids["bm25"])) / max(len(their_ids["bm25"]), 1))
        identical_bm25 += ids["bm25"] == their_ids["bm25"]
    mean = statistics.mean(overlaps)
    print(f"\n{len(queries)} category queries: kNN top 10 identical {identical_knn} (up to float32 ties "
          f"{len(queries) - len(knn_differ)}), BM25 identical {identical_bm25}, BM25 mean overlap {mean:.3f}")
    assert knn_differ == []
    assert mean >= BM25_MIN_OVERLAP


def test_knn_scores_are_the_embedded_cosines(both: tuple[Search, Search]) -> None:
    embedded, on_os = both
    plan = embedded.plan("Watches > Wrist Watches", mode="category")
    mine = on_os.store.search(None, plan.vectors, 10)["text"]
    theirs = embedded.store.search(None, plan.vectors, 10)["text"]
    assert [h.id for h in mine] == [h.id for h in theirs]
    assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-5)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("CTIR_ES_URL", "CTIR_ES_OS_URL", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_MODEL", "CTIR_ES_CLIP_WEIGHTS",
                "CTIR_ES_STORE", "CTIR_ES_INDEX"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> dict:  # type: ignore[type-arg]
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return invoke


def test_evaluate_on_opensearch_matches_the_embedded_table(
    run, tmp_path: Path, tiny_text_model_dir: Path, os_url: str  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    jsonl = tmp_path / "products.jsonl"
    jsonl.write_text("".join(json.dumps(p.to_json()) + "\n" for p in catalogue(120)), encoding="utf-8")
    args = ["evaluate", "jsonl", str(jsonl), "--text-model", str(tiny_text_model_dir), "--clip-weights", "none",
            "--no-significance", "--json", "--seed", "7"]
    embedded = run(*args, "--out", str(tmp_path / "emb"))
    on_os = run(*args, "--out", str(tmp_path / "os"), "--os-url", os_url, "--rebuild")
    try:
        assert _eval_indices(os_url), "evaluate --os-url built no ctir-eval-* index on OpenSearch"
        assert {i["location"].split(" ")[0] for i in on_os["indexes"]} == {"opensearch"}
        assert {i["lexical_engine"] for i in on_os["indexes"]} == {"opensearch"}
        names = [s["name"] for s in on_os["systems"]]
        assert names == [s["name"] for s in embedded["systems"]]
        dense = "text-tiny-st"
        for setting, table in embedded["settings"].items():
            theirs, mine = table["means"], on_os["settings"][setting]["means"]
            assert mine[dense] == pytest.approx(theirs[dense], abs=1e-9)  # kNN: the same runs
            for name in names:  # BM25 and the fusions: close, not equal (another BM25)
                assert mine[name]["precision@10"] == pytest.approx(theirs[name]["precision@10"], abs=0.1)
    finally:
        _drop_eval_indices(os_url)


def _eval_indices(url: str) -> list[str]:
    """evaluate's indexes on the server (``ctir-eval-*`` versions)."""
    store = OpenSearchStore(EsConnection(url, "ctir-eval"))
    try:
        return sorted(store.client.indices.get(index="ctir-eval-*").body)
    finally:
        store.close()


def _drop_eval_indices(url: str) -> None:
    """Delete evaluate's indexes after the test."""
    store = OpenSearchStore(EsConnection(url, "ctir-eval"))
    try:
        for index in _eval_indices(url):
            store.client.indices.delete(index=index)
    finally:
        store.close()
