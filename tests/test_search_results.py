"""What a search says about its own ranking: candidates per source and the notices a user sees
(a query whose words match nothing is answered by vectors alone, and says so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_support import CATEGORY, sample_search

from ctir_es.results import ranking_notices
from ctir_es.search import Search


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path):
    built, _ = sample_search(tmp_path_factory.mktemp("notices"), tiny_text_model_dir, None)
    yield built
    built.close()


def test_nonsense_words_are_answered_by_vectors_and_flagged(search: Search) -> None:
    response = search.search("xqzvbnm plorf", k=5)
    assert response.source_hits["bm25"] == 0
    assert response.source_hits["text"] and len(response.results) == 5
    assert len(response.notices) == 1 and "no product matched the words" in response.notices[0]
    assert response.to_json()["notices"] == response.notices
    assert all(set(r.sources) == {"text"} for r in response.results)


def test_matching_words_bring_no_notice(search: Search) -> None:
    response = search.search(CATEGORY, k=5)
    assert response.source_hits["bm25"] and response.source_hits["bm25"] >= 5
    assert response.notices == []
    assert response.to_json()["source_hits"] == dict(response.source_hits)


def test_notice_rules() -> None:
    assert ranking_notices(["bm25", "text"], {"bm25": 0, "text": 40})
    assert not ranking_notices(["bm25", "text"], {"bm25": 3, "text": 40})
    assert not ranking_notices(["bm25"], {"bm25": 0})  # nothing found at all: an empty list says it
    assert not ranking_notices(["bm25", "text"], {"bm25": None, "text": None})  # fused server-side: unknown
