"""The web page has no fusion of its own: with nothing chosen it sends no ``fusion`` parameter,
so the server uses the index's calibration exactly as ``ctir-es query`` does - the same ranking
for the same category query on the same calibrated index (the page's request built as app.js
builds it, served by the FastAPI app; tests/test_browser.py checks the page itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from calibrated_support import (
    PAGE_K,
    calibrated_sample_store,
    page_search_url,
    page_sends_no_default_fusion,
    run_cli,
)
from fastapi.testclient import TestClient

from ctir_es.config import Settings
from ctir_es.search import Search
from ctir_es.service import create_app

CATEGORIES = ("Kitchen & Dining > Cookware", "Watches", "Home Furnishing > Bed Linen")


@pytest.fixture
def calibrated(tmp_path: Path, tiny_text_model_dir: Path) -> Path:
    return calibrated_sample_store(tmp_path, tiny_text_model_dir)


def test_the_page_and_the_cli_rank_a_category_query_alike(calibrated: Path, tmp_path: Path) -> None:
    assert page_sends_no_default_fusion()
    stats = json.loads(run_cli(tmp_path, "stats", "--store", str(calibrated), "--json").stdout)
    calibration = stats["calibration"]
    assert calibration["status"] == "in force", calibration

    differs = []  # categories the calibration ranks otherwise than the fixed default
    search = Search.open(Settings(store=calibrated, cache_dir=tmp_path / "cache"))
    try:
        client = TestClient(create_app(search), raise_server_exceptions=False)
        for category in CATEGORIES:
            # --mode category: the page sends mode=category (a one-level path has no '>' to detect)
            cli = json.loads(run_cli(tmp_path, "query", category, "--store", str(calibrated), "--json",
                                     "--mode", "category", "--k", str(PAGE_K), "--pin").stdout)
            r = client.get(page_search_url(category))
            assert r.status_code == 200, r.text
            page = r.json()
            assert [x["id"] for x in page["results"]] == [x["id"] for x in cli["results"]], category
            # both served with the stored calibration, not a fixed fusion
            assert page["fusion"] == cli["fusion"] == calibration["method"]
            assert page["weights"] == cli["weights"] == calibration["weights"]

            # the select's explicit choice still overrides it, like --fusion
            for fusion in ("rrf", "linear"):
                chosen = client.get(page_search_url(category, fusion=fusion)).json()
                forced = json.loads(run_cli(tmp_path, "query", category, "--store", str(calibrated), "--json",
                                            "--mode", "category", "--k", str(PAGE_K), "--pin", "--fusion", fusion).stdout)
                assert chosen["fusion"] == fusion
                assert [x["id"] for x in chosen["results"]] == [x["id"] for x in forced["results"]]
                if fusion == "rrf":
                    differs.append([x["id"] for x in chosen["results"]] != [x["id"] for x in page["results"]])
    finally:
        search.close()
    if (calibration["method"], calibration["weights"]) != ("rrf", {"bm25": 1.0, "text": 0.3}):
        assert any(differs)  # the comparison could tell a page that sent fusion=rrf from one that did not
