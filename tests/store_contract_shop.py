"""Facets, sort and collapse over every store (issue 23, parts 3-5): ``FacetContract``,
``SortContract`` and ``CollapseContract``.

They are computed above the store (``ctir_es.shop.arrange``) over the fused candidates the
store's BM25 and kNN return, with the values the store hands back; so, as the cursor cases,
these run ``Search`` over the store under test (the ``WordVectors`` stand-in encoder) and
compare with what the catalogue below defines, which is the same on every store.
"""

from __future__ import annotations

import pytest
from store_contract_cursors import BATH, COLOURS, NOUNS, QUERY, SIZE, WORDS, page_ids
from store_contract_data import SCHEMA, ContractBase

from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema
from ctir_es.search import Search
from ctir_es.store.base import Store
from ctir_es.values import ValueSpec

KITCHEN = ("Home Furnishing", "Kitchen Linen")
SHOP_SCHEMA = IndexSchema(
    SCHEMA.vectors,
    {
        "brand": ValueSpec("keyword"),
        "price": ValueSpec("number", "INR"),
        "rating": ValueSpec("number"),
    },
)


def brand(i: int) -> str:
    """Three brands of 20 products each, one of them spelled two ways (15 Acme, 5 ACME)."""
    return ("ACME" if i % 12 == 0 else "Acme", "BOLT", "crest")[i % 3]


def values(i: int) -> dict[str, object]:
    out: dict[str, object] = {"brand": brand(i), "price": float(100 + (37 * i) % 900)}
    if i % 2 == 0:
        out["rating"] = float(1 + i % 5)
    return out


def shop_catalogue() -> list[Document]:
    docs = []
    for i in range(SIZE):
        title = f"{COLOURS[i % 5]} {'cotton ' * (i % 3)}{NOUNS[(i // 5) % 5]} {i}"
        path = BATH if i < 40 else KITCHEN
        item = Product(id=f"s{i:02d}", title=title, categories=(path,), values=values(i))  # type: ignore[arg-type]
        docs.append(Document(item, {"title_vector": WORDS.encode_documents([title])[0]}))
    return docs


class ShopBase(ContractBase):
    @pytest.fixture
    def shop(self, store: Store) -> Search:
        store.setup(SHOP_SCHEMA)
        result = store.upsert(shop_catalogue())
        assert result.written == SIZE and not result.errors
        return Search(store, WORDS)  # type: ignore[arg-type]


class FacetContract(ShopBase):
    """Counts per value, number statistics and category counts over the fused candidates (kNN
    returns every product here: all 60), disjunctive on a filtered name."""

    def test_facets_count_the_fused_candidates(self, shop: Search) -> None:
        res = shop.search(QUERY, k=10, facets=["brand", "price", "rating", "category"])
        assert res.shop["candidates"] == SIZE and len(res.results) == 10
        got = res.facets["brand"]
        assert [(v["value"], v["count"]) for v in got["values"]] == [
            ("Acme", 20),
            ("BOLT", 20),
            ("crest", 20),
        ]
        assert (got["distinct"], got["other"], got["candidates"], got["missing"]) == (3, 0, SIZE, 0)
        assert got["values"][0]["filter"] == "brand:Acme" and got["disjunctive"] is False
        prices = [float(values(i)["price"]) for i in range(SIZE)]  # type: ignore[arg-type]
        price = res.facets["price"]
        assert (price["kind"], price["unit"], price["count"], price["missing"]) == (
            "number",
            "INR",
            SIZE,
            0,
        )
        assert (price["min"], price["max"]) == (min(prices), max(prices))
        assert price["mean"] == pytest.approx(sum(prices) / SIZE)
        assert sum(band["count"] for band in price["bands"]) == SIZE
        rating = res.facets["rating"]
        assert (rating["count"], rating["missing"], rating["min"], rating["max"]) == (
            30,
            30,
            1.0,
            5.0,
        )
        levels = res.facets["category"]["levels"]
        assert [(n["label"], n["count"]) for n in levels["1"]] == [("Home Furnishing", SIZE)]
        assert [(n["label"], n["count"]) for n in levels["2"]] == [
            ("Home Furnishing > Bath Linen", 40),
            ("Home Furnishing > Kitchen Linen", 20),
        ]

    def test_a_filtered_name_is_counted_disjunctively(self, shop: Search) -> None:
        res = shop.search(
            QUERY, k=SIZE, filters=[Filter("brand", "in", ("bolt",))], facets=["brand", "price"]
        )
        assert {r.values["brand"] for r in res.results} == {"BOLT"} and len(res.results) == 20
        got = res.facets["brand"]  # choosing BOLT still shows the others' counts
        assert got["disjunctive"] is True
        assert [(v["value"], v["count"]) for v in got["values"]] == [
            ("Acme", 20),
            ("BOLT", 20),
            ("crest", 20),
        ]
        assert res.facets["price"]["count"] == 20 and res.facets["price"]["disjunctive"] is False
        cheap = shop.search(
            QUERY, k=SIZE, filters=[Filter("price", "range", (None, 400))], facets=["brand"]
        )
        expected = sum(1 for i in range(SIZE) if float(values(i)["price"]) <= 400)  # type: ignore[arg-type]
        assert (
            sum(v["count"] for v in cheap.facets["brand"]["values"])
            == expected
            == len(cheap.results)
        )


class SortContract(ShopBase):
    """A number sort reorders the relevant head of the fused list (the window) only."""

    @pytest.mark.parametrize(("sort", "ascending"), [("price_asc", True), ("price_desc", False)])
    def test_sort_by_price_within_the_window(
        self, shop: Search, sort: str, ascending: bool
    ) -> None:
        relevance = page_ids(shop.search(QUERY, k=SIZE))
        res = shop.search(QUERY, k=SIZE, sort=sort)
        window = res.shop["sort"]["window"]
        assert res.shop["sort"]["value"] == "price" and 10 <= window <= SIZE
        ids = page_ids(res)
        head = [r.values["price"] for r in res.results[:window]]
        assert head == sorted(head, reverse=not ascending)
        assert set(ids[:window]) == set(relevance[:window]) and ids[window:] == relevance[window:]

    def test_products_without_the_value_come_last_in_the_window(self, shop: Search) -> None:
        res = shop.search(QUERY, k=SIZE, sort="rating")
        window = res.shop["sort"]["window"]
        rated = ["rating" in r.values for r in res.results[:window]]
        assert rated == sorted(rated, reverse=True)  # every rated one before every unrated one
        ratings = [r.values["rating"] for r in res.results[:window] if "rating" in r.values]
        assert ratings == sorted(ratings, reverse=True)


class CollapseContract(ShopBase):
    """One product per group (a keyword value, case-insensitive), the group's best, with how
    many it folds."""

    def test_collapse_by_brand_shows_each_brands_best(self, shop: Search) -> None:
        relevance = shop.search(QUERY, k=SIZE).results
        best: dict[str, str] = {}
        for r in relevance:
            best.setdefault(str(r.values["brand"]).lower(), r.id)
        res = shop.search(QUERY, k=10, collapse="brand")
        assert page_ids(res) == list(best.values())
        assert [r.collapsed for r in res.results] == [19, 19, 19]
        assert res.shop["collapse"] == {"by": "brand", "groups": 3, "folded": SIZE - 3}
