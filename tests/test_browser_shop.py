"""Shop search on the web page (issue 23) in headless Chromium, served by the real ``ctir-es
serve`` over the bundled sample given typed values (brand, a price in INR, a stock flag, as
tests/test_shop_filters_surfaces.py builds it): the facet rail's brand checkboxes filter the
grid and show a chip (other brands keep their counts: disjunctive), removing the chip restores
the results, the price range filters, sorting by price orders the visible prices, "More
results" appends the next page of the pinned ranking with no repeats (a 410 starts again), the
URL keeps the state across a reload, and the page ranks exactly as ``Search.search`` does for
the same query and filters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from service_support import ServeProcess, encoders, sample_store_with_values
from test_browser import CHROMIUM, SCREENSHOTS, watch

from ctir_es.filters import parse_filter_text
from ctir_es.ingest.images import ImageLoader
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                                                      "(apt-get install chromium; .ci/run installs it)"),
]

BRANDS = ("Acme", "Bolt", "Crest")
QUERY = "Kitchen & Dining > Cookware"
K = 24


def _values(i: int) -> dict[str, Any]:
    return {"Brand": BRANDS[i % 3], "Price": f"₹{100 + 10 * i:,}", "In Stock": "yes" if i % 4 else "no"}


@pytest.fixture(scope="module")
def shop_store(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("shop-page")
    (root / "images").symlink_to(sample_path().parent / "images")  # the records' relative image paths
    return sample_store_with_values(root, tiny_text_model_dir, _values)


@pytest.fixture(scope="module")
def server(shop_store: Path) -> Iterator[ServeProcess]:
    (shop_store.parent / "server").mkdir()
    with ServeProcess(shop_store, shop_store.parent / "server") as proc:
        yield proc


@pytest.fixture(scope="module")
def library(shop_store: Path, tiny_text_model_dir: Path) -> Iterator[Search]:
    text, _ = encoders(tiny_text_model_dir, None)
    with Search(EmbeddedStore(shop_store), text, None, ImageLoader()) as search:
        yield search


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (test extra)")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            headless=True, viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def ids(page: Any) -> list[str]:
    return list(page.locator("#results .card").evaluate_all("els => els.map(e => e.dataset.id)"))


def card_values(page: Any, selector: str, attribute: str | None = None) -> list[str]:
    script = (f"els => els.map(e => e.getAttribute('{attribute}'))" if attribute
              else "els => els.map(e => e.textContent)")
    return list(page.locator(f"#results .card {selector}").evaluate_all(script))


def facet_counts(page: Any, name: str) -> dict[str, int]:
    return dict(page.evaluate(
        "(name) => [...document.querySelectorAll(`#facets fieldset[data-facet='${name}'] li label`)]"
        ".map(l => [l.querySelector('input').dataset.value, Number(l.querySelector('.count').textContent)])",
        name))


def library_ids(search: Search, *filters: str, k: int = K, sort: str | None = None) -> list[str]:
    response = search.search(QUERY, k=k, filters=[parse_filter_text(f) for f in filters], pin=True, sort=sort)
    return [r.id for r in response.results]


def search_done(page: Any, before: str | None = None) -> None:
    """The last search has rendered (its status is no longer "Searching…")."""
    page.wait_for_function("(s) => { const t = document.querySelector('#status').textContent; "
                           "return t !== s && !t.startsWith('Searching'); }", arg=before or "")


def test_facets_chips_price_sort_and_more_results(page: Any, server: ServeProcess, library: Search) -> None:
    errors, outside = watch(page, server.url)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/search?" in r.url else None)
    page.goto(f"{server.url}/?q=Kitchen+%26+Dining+%3E+Cookware")
    page.wait_for_selector("#facets fieldset[data-facet='brand'] input[data-value='Acme']")
    search_done(page)
    first = parse_qs(urlsplit(requests[-1]).query)
    assert first["pin"] == ["true"] and set(first["facet"]) == {"category", "brand", "price"}
    assert "offset" not in first and "cursor" not in first
    unfiltered = ids(page)
    assert len(unfiltered) == K and unfiltered == library_ids(library)
    before = facet_counts(page, "brand")
    assert set(before) == set(BRANDS) and all(n > 0 for n in before.values())
    prices = card_values(page, ".price")
    assert prices and all(p.startswith("₹") for p in prices), prices  # INR shown as rupees
    assert set(card_values(page, ".brand")) <= set(BRANDS)

    # a brand: the grid keeps Bolt only, a chip says so, the other brands keep their counts
    page.check("#facets input[data-facet='brand'][data-value='Bolt']")
    page.wait_for_selector("#chips li.chip[data-filter='brand:Bolt']")
    search_done(page)
    assert set(card_values(page, ".brand")) == {"Bolt"}
    assert ids(page) == library_ids(library, "brand:Bolt")
    assert facet_counts(page, "brand") == before  # disjunctive: Acme and Crest still counted
    assert page.is_checked("#facets input[data-facet='brand'][data-value='Bolt']")
    # a second brand of the same facet: either of them (one filter, Bolt|Crest)
    page.check("#facets input[data-facet='brand'][data-value='Crest']")
    page.wait_for_selector("#chips li.chip[data-filter='brand:Bolt|Crest']")
    search_done(page)
    assert set(card_values(page, ".brand")) == {"Bolt", "Crest"}
    both = ids(page)
    assert both == library_ids(library, "brand:Bolt|Crest")
    assert parse_qs(urlsplit(page.url).query)["filter"] == ["brand:Bolt|Crest"]
    # the URL keeps the state: a reload shows the same filtered results
    page.reload()
    page.wait_for_selector("#chips li.chip[data-filter='brand:Bolt|Crest']")
    search_done(page)
    page.wait_for_selector("#results .card")
    assert ids(page) == both and page.is_checked("#facets input[data-facet='brand'][data-value='Crest']")
    # the chip's ×: the filter goes, the results come back
    page.click("#chips li.chip[data-filter='brand:Bolt|Crest'] button")
    page.wait_for_function("() => !document.querySelector('#chips li.chip')")
    search_done(page)
    page.wait_for_selector("#results .card")
    assert ids(page) == unfiltered and "filter" not in parse_qs(urlsplit(page.url).query)

    # the price range
    page.fill("#price-min", "500")
    page.fill("#price-max", "1500")
    page.click("#price-apply")
    page.wait_for_selector("#chips li.chip[data-filter='price:500..1500']")
    search_done(page)
    page.wait_for_selector("#results .card")
    in_range = [float(x) for x in card_values(page, ".price", "data-price")]
    assert in_range and all(500 <= x <= 1500 for x in in_range), in_range
    assert ids(page) == library_ids(library, "price:500..1500")
    assert "₹500" in page.inner_text("#chips") and "₹1,500" in page.inner_text("#chips")
    page.click("#chips li.chip[data-filter='price:500..1500'] button")
    page.wait_for_function("() => !document.querySelector('#chips li.chip')")
    search_done(page)

    # sort by price: the sorted window (the relevant head) shows ascending prices
    assert page.locator("#sort option[value='price_asc']").count() == 1
    assert page.locator("#sort option[value='rating']").count() == 0  # no rating value in this index
    with page.expect_response(lambda r: "/search?" in r.url and "sort=price_asc" in r.url) as answer:
        page.select_option("#sort", "price_asc")
    window = answer.value.json()["shop"]["sort"]["window"]
    search_done(page)
    page.wait_for_selector("#results .card")
    ascending = [float(x) for x in card_values(page, ".price", "data-price")][: min(window, K)]
    assert window >= 5 and ascending == sorted(ascending), (window, ascending)
    assert ids(page) == library_ids(library, sort="price_asc")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "shop-facets-sorted.png"), full_page=False)

    # "More results": the next page of the pinned ranking, appended, no repeats
    first_page = ids(page)
    with page.expect_response(lambda r: "/search?" in r.url and "cursor=" in r.url):
        page.click("#more-results")
    page.wait_for_selector(f"#results .card:nth-child({2 * K})")
    both_pages = ids(page)
    assert both_pages[:K] == first_page and len(set(both_pages)) == 2 * K
    assert both_pages == library_ids(library, sort="price_asc", k=2 * K)
    assert "results 1–48" in page.inner_text("#status")
    # an expired pin (410): say so and start again from page 1
    page.route("**/search?*cursor=*", lambda route: route.fulfill(
        status=410, content_type="application/json",
        body=json.dumps({"error": {"code": "cursor_expired", "message": "the pinned ranking expired"}})))
    page.click("#more-results")
    page.wait_for_selector("#notices li:has-text('results changed')")
    page.wait_for_function(f"() => document.querySelectorAll('#results .card').length === {K}")
    assert ids(page) == first_page

    gone = [e for e in errors if "status of 410" in e]
    assert len(gone) == 1 and [e for e in errors if e not in gone] == [], errors  # the 410 made above
    assert not outside, f"the page tried to reach other hosts: {outside}"


def test_group_variants_and_paging_to_the_end(page: Any, server: ServeProcess) -> None:
    errors, outside = watch(page, server.url)
    with page.expect_response(lambda r: "/search?" in r.url and "collapse=auto" in r.url) as answer:
        page.goto(f"{server.url}/?q=Kitchen+%26+Dining+%3E+Cookware&k=48&filter=brand%3AAcme&collapse=auto")
    page.wait_for_selector("#chips li.chip[data-filter='brand:Acme']")
    body = answer.value.json()
    search_done(page)
    assert page.is_checked("#collapse") and page.input_value("#k") == "48"
    folded = {r["id"]: r["collapsed"] for r in body["results"] if r["collapsed"]}
    assert folded and body["shop"]["collapse"]["folded"] >= sum(folded.values())  # the sample has variants
    badges = dict(page.locator("#results .card").evaluate_all(
        "els => els.filter(e => e.querySelector('.badge')).map(e => [e.dataset.id, e.querySelector('.badge').textContent])"))
    assert badges == {pid: f"+{n} more" for pid, n in folded.items()}
    # page to the end of the Acme products: the button goes when next_cursor is null
    for _ in range(5):
        if page.locator("#more-bar").is_hidden():
            break
        count = page.locator("#results .card").count()
        page.click("#more-results")
        page.wait_for_function(f"() => document.querySelectorAll('#results .card').length > {count} || "
                               "document.querySelector('#more-bar').hidden")
    assert page.locator("#more-bar").is_hidden() and "(end)" in page.inner_text("#status")
    shown = ids(page)
    assert len(shown) == len(set(shown)) and set(card_values(page, ".brand")) == {"Acme"}
    # grouping off: every Acme product of the candidates, as many or more
    page.uncheck("#collapse")
    search_done(page)
    page.wait_for_function("() => !document.querySelector('#results .card .badge')")
    assert "collapse" not in parse_qs(urlsplit(page.url).query)

    assert not errors, errors
    assert not outside, f"the page tried to reach other hosts: {outside}"
