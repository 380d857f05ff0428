"""One result shape (issue 26 item 3): ``results.SearchResult.to_json`` / ``SearchResponse.to_json``
are the source; the CLI's ``--json`` prints them, the HTTP API (``service.serialise.page_json``)
sends them with images as links plus its page fields, and ``service/models.py`` (the OpenAPI
schema) must describe exactly those keys: a field added on one side and not the other fails."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from ctir_es.ranking.fusion import SourceScore, contribution
from ctir_es.results import SearchResponse, SearchResult
from ctir_es.service.models import ResultOut, SearchPage, SourceScoreOut
from ctir_es.service.serialise import image_url, page_json

PAGE_FIELDS = {"offset", "k", "has_more", "max_score"}
BRAND_FACET = {"kind": "keyword", "candidates": 3, "missing": 0, "disjunctive": False, "distinct": 1, "other": 0,
               "values": [{"value": "Acme", "count": 3, "filter": "brand:Acme"}]}


def fields(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def required(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items() if f.is_required()}


def result(rank: int, **kw: Any) -> SearchResult:
    return SearchResult(rank=rank, id=f"p{rank}", title=f"pan {rank}", categories=[["Kitchen", "Cookware"]],
                        image=kw.pop("image", f"/data/images/p{rank}.jpg"), score=1.0 / rank,
                        sources={"bm25": SourceScore(rank, 7.5 / rank, 1.0 / rank),
                                 "text": SourceScore(rank + 1, 0.8, 0.5)},
                        values={"price": 499.0, "brand": "Acme"}, **kw)


def response(fusion: str = "linear", shop: bool = False) -> SearchResponse:
    results = [result(1, collapsed=2 if shop else None), result(2, image=None), result(3)]
    return SearchResponse("Kitchen > Cookware", "category", fusion, ["bm25", "text"], results,
                          {"bm25": 1.0, "text": 0.3}, {"bm25": 40, "text": 100}, ["a notice"], "seen",
                          facets={"brand": BRAND_FACET} if shop else {},
                          shop={"candidates": 3} if shop else {})


@pytest.mark.parametrize("shop", [False, True])
@pytest.mark.parametrize("fusion", ["linear", "rrf"])
def test_the_api_page_is_the_library_shape_and_the_openapi_models_describe_it(fusion: str, shop: bool) -> None:
    page = page_json(response(fusion, shop), 0, 2)
    assert required(SearchPage) <= set(page) <= fields(SearchPage)
    assert page["has_more"] and page["max_score"] == 1.0 and len(page["results"]) == 2
    for item in page["results"]:
        assert required(ResultOut) <= set(item) <= fields(ResultOut)
        for source in item["sources"].values():
            assert required(SourceScoreOut) <= set(source) <= fields(SourceScoreOut)
    assert fields(ResultOut) == set(result(1).to_json(fusion, {}, image_url)) | {"collapsed"}
    assert fields(SourceScoreOut) == {"rank", "score", "normalised", "contribution"}
    assert fields(SearchPage) - set(page) <= {"next_cursor", "facets", "shop"}
    SearchPage.model_validate(page)  # and the values have the documented types


def test_the_cli_json_and_the_api_page_are_one_shape() -> None:
    """The same response: the CLI's JSON and the API's page differ only in the image (a stored
    path, or a link to it) and the page's own fields."""
    full = response("linear", shop=True)
    cli = full.to_json()
    api = page_json(full, 0, 3)
    assert set(api) - set(cli) == PAGE_FIELDS
    assert {k: v for k, v in cli.items() if k != "results"} == {k: v for k, v in api.items()
                                                                if k not in PAGE_FIELDS | {"results"}}
    for mine, theirs in zip(cli["results"], api["results"], strict=True):
        assert mine.pop("image") == full.results[mine["rank"] - 1].image
        assert theirs.pop("image_url") == (image_url(theirs["id"]) if mine["rank"] != 2 else None)
        assert mine == theirs
    first = api["results"][0]["sources"]["text"]
    assert first == {"rank": 2, "score": 0.8, "normalised": 0.5,
                     "contribution": contribution("linear", SourceScore(2, 0.8, 0.5), 0.3)}


def test_a_diversified_ranking_keeps_the_contributions_of_its_fusion() -> None:
    """``--diverse`` names its fusion ``rrf+mmr(0.7)``: the sources' terms are the rrf ones."""
    one = result(1).to_json("rrf+mmr(0.7)", {"bm25": 1.0})
    assert one["sources"]["bm25"]["contribution"] == pytest.approx(1.0 / 61)
    assert "contribution" not in result(1).to_json("custom", {})["sources"]["bm25"]


def test_the_product_json_is_exactly_what_the_openapi_model_describes() -> None:
    """``product_json`` (``GET /products/{id}``) against ``ProductOut``, both ways: every key it
    sends is a field, every required field is sent, and the model accepts it unchanged."""
    from ctir_es.products import Product
    from ctir_es.schema import StoredProduct
    from ctir_es.service.models import ProductOut
    from ctir_es.service.serialise import product_json

    for image in ("/data/images/p1.jpg", None):
        stored = StoredProduct(Product(id="p1", title="pan", categories=(("Kitchen", "Cookware"),),
                                       attributes={"material": "steel"}, description="a pan", market="in",
                                       images=("p1.jpg",), values={"price": 499.0, "brand": "Acme"}),
                               image, ("title_vector",))
        data = product_json(stored)
        assert set(data) == fields(ProductOut), set(data) ^ fields(ProductOut)
        assert required(ProductOut) <= set(data)
        assert ProductOut.model_validate(data).model_dump() == data
        assert (data["image_url"] is None) == (image is None)  # a local path never leaves the server
