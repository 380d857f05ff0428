"""Facets, sort and collapse (``ctir_es.shop``) through the Python API, the CLI and HTTP, on the
bundled sample given typed values, with the real tiny text model and the embedded store.

Every expectation is computed independently of ``ctir_es.shop``: the candidates from the public
pieces (``Search.plan``, ``store.search``, ``fuse``) and the counts from ``store.get``'s values."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from service_support import encoders, sample_store_with_values

from ctir_es.cli.main import cli
from ctir_es.errors import QueryError
from ctir_es.filters import Filter, parse_filter_text
from ctir_es.ingest.images import ImageLoader
from ctir_es.products import path_prefixes
from ctir_es.ranking.fusion import FusedHit, fuse
from ctir_es.ranking.weights import weights_in_force
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.shop.collapse import title_key
from ctir_es.shop.facets import nice_bands
from ctir_es.shop.sort import SORT_FLOOR, SORT_WINDOW
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import CANDIDATE_DEPTH

BRANDS = ("Acme", "Bolt", "Crest", "ACME")  # "ACME" groups with "Acme"
QUERY = "steel cookware set"


def _values(i: int) -> dict[str, Any]:
    values: dict[str, Any] = {"Brand": BRANDS[i % 4], "Price": f"₹{100 + (37 * i) % 900:,}",
                              "In Stock": "yes" if i % 3 else "no", "Group": f"g{i // 4}"}
    if i % 5:  # every fifth product has no rating: it sorts last
        values["Rating"] = str(1 + (i % 9) / 2)
    return values


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("shop-arrange")
    return sample_store_with_values(root, tiny_text_model_dir, _values)


@pytest.fixture
def search(store_file: Path, tiny_text_model_dir: Path) -> Any:
    text, _ = encoders(tiny_text_model_dir, None)
    with Search(EmbeddedStore(store_file), text, None, ImageLoader()) as s:
        yield s


def candidates(search: Search, text: str, k: int, filters: Sequence[Filter] = ()) -> list[FusedHit]:
    """The fused candidates of a text query, built from the public pieces: each source
    max(CANDIDATE_DEPTH, 2k) deep, fused without a limit, the best 1000."""
    plan = search.plan(text, mode="text")
    runs = search.store.search(plan.lexical, plan.vectors, max(CANDIDATE_DEPTH, 2 * k),
                               search.checked(filters))
    return fuse("rrf", runs, weights_in_force(plan.sources, plan.weights, None))[:1000]


def stored_values(search: Search, hits: Sequence[FusedHit]) -> dict[str, dict[str, Any]]:
    got = search.store.get([h.id for h in hits])
    return {pid: dict(doc.product.values) for pid, doc in got.items()}


def test_facet_counts_are_the_candidates_stored_values(search: Search) -> None:
    response = search.search(QUERY, mode="text", k=10, facets=("brand", "price", "in_stock", "category"),
                             facet_size=3)
    hits = candidates(search, QUERY, 10)
    values = stored_values(search, hits)
    assert response.shop["candidates"] == len(hits) > 100  # more than the page: the whole fused list
    assert [r.id for r in response.results] == [h.id for h in hits[:10]]  # relevance order unchanged

    brand = response.facets["brand"]
    want = Counter(v["brand"].lower() for v in values.values())
    assert [(b["value"].lower(), b["count"]) for b in brand["values"]] == want.most_common(3)
    assert brand["distinct"] == len(want) == 3  # Acme and ACME are one value
    acme = next(b for b in brand["values"] if b["value"].lower() == "acme")
    spellings = Counter(v["brand"] for v in values.values() if v["brand"].lower() == "acme")
    assert acme["value"] == spellings.most_common(1)[0][0] and acme["filter"] == f"brand:{acme['value']}"

    prices = [v["price"] for v in values.values()]
    price = response.facets["price"]
    assert (price["min"], price["max"], price["count"], price["unit"]) == (min(prices), max(prices), len(prices), "INR")
    assert math.isclose(price["mean"], sum(prices) / len(prices))
    for band in price["bands"]:
        top = math.inf if band["to"] is None else band["to"]
        assert band["count"] == sum(band["from"] <= p < top for p in prices)
    assert sum(b["count"] for b in price["bands"]) == len(prices)

    stock = {b["value"]: b["count"] for b in response.facets["in_stock"]["values"]}
    assert stock == {True: sum(v["in_stock"] for v in values.values()),
                     False: sum(not v["in_stock"] for v in values.values())}

    docs = search.store.get([h.id for h in hits])
    nodes: Counter[tuple[str, ...]] = Counter()
    for doc in docs.values():
        nodes.update({p for c in doc.product.categories for p in path_prefixes(tuple(c)) if len(p) == 1})
    level1 = response.facets["category"]["levels"]["1"]
    assert [(tuple(n["path"]), n["count"]) for n in level1] == sorted(nodes.items(), key=lambda x: (-x[1], x[0]))[:3]
    assert response.to_json()["facets"]["price"]["bands"] == price["bands"]


def test_facets_are_disjunctive(search: Search) -> None:
    chosen = [parse_filter_text("brand:Bolt")]
    plain = search.search(QUERY, mode="text", k=10, facets=("brand",))
    narrowed = search.search(QUERY, mode="text", k=10, filters=chosen, facets=("brand", "price"))
    assert narrowed.results and all(r.values["brand"] == "Bolt" for r in narrowed.results)
    # choosing Bolt still shows the other brands' counts: those of the query without the filter
    assert narrowed.facets["brand"]["values"] == plain.facets["brand"]["values"]
    assert narrowed.facets["brand"]["disjunctive"] is True
    # a facet without a filter of its own counts the filtered candidates
    bolt = stored_values(search, candidates(search, QUERY, 10, chosen))
    assert narrowed.facets["price"]["count"] == len(bolt) and narrowed.facets["price"]["disjunctive"] is False
    assert narrowed.shop["disjunctive_retrievals"] == 1


def test_sort_within_the_relevant_window(search: Search) -> None:
    hits = candidates(search, QUERY, 1000)  # the candidates of k=1000: each source 2000 deep
    values = stored_values(search, hits)
    floor = SORT_FLOOR * hits[0].score
    window = [h.id for h in hits[:SORT_WINDOW] if h.score >= floor]
    assert window == [h.id for h in hits[: len(window)]]  # scores fall: the window is a prefix
    assert 0 < len(window) < len(hits)

    cheap = search.search(QUERY, mode="text", k=1000, sort="price_asc")
    ids = [r.id for r in cheap.results]
    assert cheap.shop["sort"]["window"] == len(window)
    assert set(ids[: len(window)]) == set(window)  # a cheap product outside the window stays out
    head = [values[i]["price"] for i in ids[: len(window)]]
    assert head == sorted(head)
    assert ids[len(window):] == [h.id for h in hits[len(window):]]  # the rest by relevance

    dear = search.search(QUERY, mode="text", k=1000, sort="price_desc").results[: len(window)]
    assert [r.values["price"] for r in dear] == sorted(head, reverse=True)

    rated = search.search(QUERY, mode="text", k=1000, sort="rating").results[: len(window)]
    ratings = [r.values.get("rating") for r in rated]
    have = [x for x in ratings if x is not None]
    assert have == sorted(have, reverse=True) and None in ratings
    assert ratings[len(have):] == [None] * (len(ratings) - len(have))  # without a rating: last
    unrated = [r.id for r in rated if "rating" not in r.values]
    assert unrated == [i for i in window if "rating" not in values[i]]  # in relevance order


def test_collapse_on_a_value_keeps_the_best_of_each_group(search: Search) -> None:
    hits = candidates(search, QUERY, 1000)
    values = stored_values(search, hits)
    response = search.search(QUERY, mode="text", k=1000, collapse="group")
    best: dict[str, str] = {}
    size: Counter[str] = Counter()
    for h in hits:
        best.setdefault(values[h.id]["group"], h.id)
        size[values[h.id]["group"]] += 1
    assert [r.id for r in response.results] == list(best.values())  # each group's best, in rank order
    assert [r.collapsed for r in response.results] == [size[values[r.id]["group"]] - 1 for r in response.results]
    assert response.shop["collapse"] == {"by": "group", "groups": len(best), "folded": len(hits) - len(best)}
    assert any(r.collapsed for r in response.results)
    assert response.to_json()["results"][0]["collapsed"] == response.results[0].collapsed


def test_collapse_auto_folds_titles_that_differ_by_colour_or_size(search: Search) -> None:
    assert title_key("Sonata Analog Watch - Black") == title_key("Sonata analog watch (GOLD)") == "sonata analog watch"
    assert title_key("Tee XL", {"colour": "Sea Green"}) == title_key("Tee Sea Green", {"colour": "Sea Green"}) == "tee"
    assert title_key("Tee Sea Green") == "tee sea"  # "sea" is a colour word of that product only
    assert title_key("Red") == "red"  # nothing but a colour: the title is the key
    response = search.search(QUERY, mode="text", k=50, collapse="auto")
    keys = [title_key(r.title, r.values) for r in response.results]
    assert len(keys) == len(set(keys))
    assert response.shop["collapse"]["groups"] + response.shop["collapse"]["folded"] == response.shop["candidates"]


def test_errors_name_what_the_index_holds(search: Search) -> None:
    with pytest.raises(QueryError, match="unknown facet 'colour'; facets: category and this index's values: "
                                         "brand, group, in_stock, price, rating"):
        search.search(QUERY, facets=("colour",))
    with pytest.raises(QueryError, match="this index sorts by: relevance, price_asc, price_desc, rating, "
                                         "price_asc"[:60]):
        search.search(QUERY, sort="cheapest")
    with pytest.raises(QueryError, match=r"keyword value of the index \(brand, group\), not 'price'"):
        search.search(QUERY, collapse="price")
    with pytest.raises(QueryError, match="at most 10 facets"):
        search.search(QUERY, facets=[f"f{i}" for i in range(11)])
    with pytest.raises(QueryError, match="diverse cannot be combined"):
        search.search(QUERY, facets=("brand",), diverse=True)


def test_nice_bands() -> None:
    prices = [49.0, 120, 480, 499.99, 500, 610, 999, 1000, 1450] * 2 + [1200.0, 25000.0]
    bands = nice_bands(prices)  # the 95th percentile is 1450: bands to 1500; the outlier is the open band
    assert [(b["from"], b["to"], b["count"]) for b in bands] == [
        (0.0, 500.0, 8), (500.0, 1000.0, 6), (1000.0, 1500.0, 5), (1500.0, None, 1)]
    ratings = nice_bands([1.0, 2.5, 3.0, 4.0, 4.5, 5.0])
    assert [b["from"] for b in ratings] == [1.0, 2.0, 3.0, 4.0, 5.0] and ratings[-1]["to"] is None
    assert nice_bands([7.0, 7.0]) == [{"from": 7.0, "to": None, "count": 2}]


def test_cli_facets_sort_collapse(store_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    base = ["query", QUERY, "--mode", "text", "--store", str(store_file), "--k", "5"]
    args = [*base, "--facet", "brand", "--facet", "price", "--sort", "price_asc", "--collapse", "group"]
    out = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data["facets"]) == {"brand", "price"} and data["shop"]["sort"]["sort"] == "price_asc"
    prices = [r["values"]["price"] for r in data["results"]]
    assert prices == sorted(prices) and all("collapsed" in r for r in data["results"])
    human = runner.invoke(cli, args, catch_exceptions=False)
    assert human.exit_code == 0
    text = " ".join(human.stdout.split())
    top = data["facets"]["brand"]["values"][0]
    assert f"brand: {top['value']} {top['count']}" in text and "price: " in text and "INR" in text
    assert "collapsed by group" in text and "sorted by price_asc" in text
    bad = runner.invoke(cli, [*base, "--facet", "colour"])
    assert bad.exit_code != 0 and "this index's values: brand, group" in bad.output and "Traceback" not in bad.output


def test_http_facets_sort_collapse(search: Search) -> None:
    client = TestClient(create_app(search), raise_server_exceptions=False)
    params = [("q", QUERY), ("mode", "text"), ("k", "5"), ("facet", "brand"), ("facet", "price"),
              ("filter", "brand:Crest"), ("sort", "price_asc"), ("collapse", "group")]
    r = client.get("/search", params=params)
    assert r.status_code == 200, r.text
    page = r.json()
    library = search.search(QUERY, mode="text", k=6, facets=("brand", "price"), filters=[parse_filter_text("brand:Crest")],
                            sort="price_asc", collapse="group")
    assert [x["id"] for x in page["results"]] == [x.id for x in library.results[:5]]
    assert [x["collapsed"] for x in page["results"]] == [x.collapsed for x in library.results[:5]]
    assert page["facets"]["brand"]["values"] == library.facets["brand"]["values"]
    assert page["facets"]["brand"]["disjunctive"] is True and len(page["facets"]["brand"]["values"]) == 3
    assert page["facets"]["price"]["bands"][0]["from"] == library.facets["price"]["bands"][0]["from"]
    assert page["shop"]["sort"]["window"] == library.shop["sort"]["window"]
    plain = client.get("/search", params={"q": QUERY, "mode": "text"}).json()
    assert "collapsed" not in plain["results"][0] or plain["results"][0]["collapsed"] is None
    assert plain.get("facets") is None
    for bad, says in ((("facet", "colour"), "this index's values"), (("sort", "cheap"), "this index sorts by"),
                      (("collapse", "price"), "collapse is 'auto' or a keyword value")):
        r = client.get("/search", params=[("q", QUERY), bad])
        assert r.status_code == 400 and says in r.text
    assert client.get("/search", params=[("q", QUERY)] + [("facet", "brand")] * 11).status_code in (400, 422)
    assert client.get("/search", params={"q": QUERY, "facet": "brand", "facet_size": 101}).status_code in (400, 422)
    spec = client.get("/openapi.json").json()
    names = {p["name"]: p for p in spec["paths"]["/search"]["get"]["parameters"]}
    assert {"facet", "facet_size", "sort", "collapse"} <= set(names)
    assert "price_asc" in names["sort"]["description"] and "disjunctive" in names["facet"]["description"]
    assert "FacetOut" in spec["components"]["schemas"]
