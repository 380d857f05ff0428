"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), served
by the real ``ctir-es serve`` on the bundled sample: a category picked in the tree fills the
grid with product images and score bars; on a text-only index the legend names only the
sources that ranked something, a query no word matched says so, Previous/Next work only where
they lead somewhere; a product shows its suggested categories; the audit lists suspects.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from service_support import ServeProcess, sample_image, sample_store_file

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                                                      "(apt-get install chromium; .ci/run installs it)"),
]


@pytest.fixture(scope="module")
def text_only_server(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path):
    """``ctir-es serve`` on the sample indexed without CLIP (the offline default)."""
    tmp = tmp_path_factory.mktemp("text-only-page")
    store = sample_store_file(tmp, tiny_text_model_dir, None)
    (tmp / "server").mkdir()
    with ServeProcess(store, tmp / "server") as server:
        yield server


def watch(page, server_url: str) -> tuple[list[str], list[str]]:
    """Console errors and requests to other hosts (aborted), collected for the final asserts."""
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", lambda route: (outside.append(route.request.url) or route.abort())
               if not route.request.url.startswith(server_url) else route.continue_())
    return errors, outside


def shown(page, selector: str) -> bool:
    """Rendered (not ``hidden``, not display:none through any ancestor)."""
    return bool(page.evaluate("(s) => { const e = document.querySelector(s); "
                              "return !!e && e.getClientRects().length > 0; }", selector))


@pytest.fixture
def browser_page(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (test extra)")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user data dir
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


def _images_loaded(page) -> int:
    """How many result images have actually decoded (naturalWidth > 0)."""
    return page.evaluate(
        "() => [...document.querySelectorAll('#results .card img.thumb')]"
        ".filter(img => img.complete && img.naturalWidth > 0).length"
    )


def test_category_query_shows_an_image_grid(browser_page, tmp_path: Path, tiny_text_model_dir: Path,
                                            tiny_clip) -> None:
    page = browser_page
    store = sample_store_file(tmp_path, tiny_text_model_dir, tiny_clip)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    outside: list[str] = []

    (tmp_path / "server").mkdir()
    with ServeProcess(store, tmp_path / "server") as server:
        page.route("**/*", lambda route: (outside.append(route.request.url) or route.abort())
                   if not route.request.url.startswith(server.url) else route.continue_())
        page.goto(server.url + "/")
        page.wait_for_selector("#health:has-text('280 products')")

        # the category tree: open "Kitchen & Dining", click "Cookware"
        kitchen = page.locator("#tree > li", has=page.locator("button.node[data-path='Kitchen & Dining']"))
        kitchen.locator("> button.toggle").click()
        page.locator("button.node[data-path='Kitchen & Dining > Cookware']").click()
        page.wait_for_selector("#results .card")
        page.wait_for_function("() => [...document.querySelectorAll('#results .card img.thumb')]"
                               ".every(img => img.complete && img.naturalWidth > 0)")

        cards = page.locator("#results .card")
        assert cards.count() == 24  # one page of the default size
        assert _images_loaded(page) == 24
        assert page.input_value("#q") == "Kitchen & Dining > Cookware"
        status = page.inner_text("#status")
        assert re.search(r"category query .Kitchen & Dining > Cookware.: results 1–24", status), status
        paths = page.locator("#results .card .path").all_inner_texts()
        assert sum(p.startswith("Kitchen & Dining › Cookware") for p in paths[:10]) >= 8
        # per-source score bars: BM25 versus the text and image vectors
        for source in ("bm25", "text", "image"):
            assert page.locator(f"#results .card .fill.{source}").count() > 0
        widths = page.evaluate("() => [...document.querySelectorAll('#results .card:first-child .fill')]"
                               ".map(f => parseFloat(f.style.width))")
        assert widths and all(0 <= w <= 100 for w in widths) and sum(widths) == pytest.approx(100, abs=0.5)

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "category-query.png"), full_page=False)

        # "More results": the next page of the pinned ranking, appended from rank 25
        page.click("#more-results")
        page.wait_for_selector("#results .card .rank:has-text('#25 ')")
        assert "results 1–48" in page.inner_text("#status")

        # image upload: search by image, then categorize
        image = sample_image()
        page.set_input_files("#image", str(image))
        page.click("#image-search")
        page.wait_for_selector("#status:has-text('image query')")
        page.wait_for_function("() => document.querySelectorAll('#results .card img.thumb').length > 0 && "
                               "[...document.querySelectorAll('#results .card img.thumb')]"
                               ".every(img => img.complete && img.naturalWidth > 0)")
        first_src = page.get_attribute("#results .card:first-child img.thumb", "src")
        assert first_src and first_src.startswith("/products/")
        page.click("#categorize")
        page.wait_for_selector("#categorized li button")
        assert page.locator("#categorized li").count() == 5
        page.screenshot(path=str(SCREENSHOTS / "image-query-and-categorize.png"), full_page=False)

    assert not errors, errors
    assert not outside, f"the page tried to reach other hosts: {outside}"


def test_text_only_legend_pager_and_the_no_word_notice(browser_page, text_only_server) -> None:
    page, server = browser_page, text_only_server
    errors, outside = watch(page, server.url)
    page.goto(server.url + "/")
    page.wait_for_selector("#health:has-text('280 products')")

    # before any query: no legend, no pager, nothing to click
    assert not shown(page, "#legend") and not shown(page, "#pager") and not shown(page, "#notices")
    assert not shown(page, "#more-bar")
    assert page.is_disabled("#prev") and page.is_disabled("#next")

    # a category query on a text-only index: bm25 and text bars, and no image entry anywhere
    page.fill("#q", "Kitchen & Dining > Cookware")
    page.click("#go")
    page.wait_for_selector("#status:has-text('results 1–24')")
    legend = page.locator("#legend [data-source]")
    assert sorted(legend.evaluate_all("els => els.map(e => e.dataset.source)")) == ["bm25", "text"]
    assert "image" not in page.inner_text("#legend")
    assert page.locator("#results .card .fill.image").count() == 0
    assert not shown(page, "#notices")
    # a text or category query pages by "More results" (a pinned ranking), not Previous/Next
    assert shown(page, "#more-bar") and not shown(page, "#pager")

    # page to the end: "More results" goes on the last page, every product shown once
    page.select_option("#k", "48")
    page.wait_for_selector("#status:has-text('results 1–48')")
    for _ in range(10):
        if not shown(page, "#more-bar"):
            break
        before = page.inner_text("#status")
        page.click("#more-results")
        page.wait_for_function("(s) => { const t = document.querySelector('#status').textContent; "
                               "return t !== s && !t.startsWith('Searching'); }", arg=before)
    status = page.inner_text("#status")
    assert "(end)" in status and not shown(page, "#more-bar"), status
    shown_ids = page.locator("#results .card").evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(shown_ids) == len(set(shown_ids)) > 48

    # nonsense words: the results come from vectors only, and the page says so
    page.fill("#q", "xqzvbnm plorf")
    page.select_option("#mode", "text")
    page.click("#go")
    page.wait_for_selector("#notices li")
    assert shown(page, "#notices")
    assert "no product matched the words" in page.inner_text("#notices")
    assert legend.evaluate_all("els => els.map(e => e.dataset.source)") == ["text"]  # bm25 ranked nothing
    assert page.locator("#results .card .fill.bm25").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "no-word-matched.png"), full_page=False)

    # a query with words again: the notice goes away
    page.fill("#q", "steel")
    page.click("#go")
    page.wait_for_selector("#status:has-text('text query “steel”')")
    assert not shown(page, "#notices")

    assert not errors, errors
    assert not outside, f"the page tried to reach other hosts: {outside}"


def test_product_view_suggests_categories_and_audit_lists_suspects(browser_page, text_only_server) -> None:
    page, server = browser_page, text_only_server
    errors, outside = watch(page, server.url)
    page.goto(server.url + "/?q=" + "Kitchen+%26+Dining+%3E+Cookware")
    page.wait_for_selector("#results .card")

    # a product's details: its own category, and the suggested categories with their signals
    first = page.locator("#results .card").first
    product_id = first.get_attribute("data-id")
    title = first.locator(".title").inner_text()
    first.locator("button.details").click()
    page.wait_for_selector("#product-view:not([hidden]) #suggested tbody tr td button")
    assert page.inner_text("#product-title") == title
    assert product_id in page.inner_text("#product-id")
    assert not shown(page, "#results-view")
    rows = page.locator("#suggested tbody tr")
    assert 1 <= rows.count() <= 8
    scores = [float(t.rstrip("%")) for t in rows.locator("td:nth-child(2)").all_inner_texts()]
    assert all(0 <= x <= 100 for x in scores) and max(scores) > 0
    assert "title" in page.inner_text("#suggested")  # the title-vector vote is named
    suggested_path = page.inner_text("#suggested-path")
    assert suggested_path.startswith("Suggested: ") and "filed)" in suggested_path
    page.screenshot(path=str(SCREENSHOTS / "product-suggested-categories.png"), full_page=False)
    # back to the same results, with their status
    page.click("#product-back")
    assert shown(page, "#results-view") and "results 1–24" in page.inner_text("#status")

    # the audit: suspects with their stored and suggested categories and the gap
    page.click("#audit-open")
    page.wait_for_selector("#audit tbody tr")
    entries = page.locator("#audit tbody tr")
    assert entries.count() == 20
    assert "most suspicious of 280 products audited" in page.inner_text("#status")
    row = entries.first
    stored, suggested = row.locator("td:nth-child(2)").inner_text(), row.locator("td:nth-child(3)").inner_text()
    assert stored and suggested and stored != suggested
    gaps = [float(t) for t in entries.locator("td:nth-child(4)").all_inner_texts()]
    suspicion = [float(t) for t in entries.locator("td:nth-child(5)").all_inner_texts()]
    assert gaps[0] > 0 and all(0 <= g <= 1 for g in gaps) and suspicion == sorted(suspicion, reverse=True)
    page.screenshot(path=str(SCREENSHOTS / "audit.png"), full_page=False)
    # narrowed to a subtree
    page.fill("#audit-within", "Watches")
    page.select_option("#audit-k", "10")
    page.click("#audit-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('products audited') && "
                           "document.querySelectorAll('#audit tbody tr').length <= 10")
    assert all(p.startswith("Watches") for p in entries.locator("td:nth-child(2)").all_inner_texts())
    # a suspect's product view, and back to the audit
    suspect = entries.first.locator("td:first-child button")
    name = suspect.inner_text()
    suspect.click()
    page.wait_for_selector("#product-view:not([hidden]) #suggested tbody tr td button")
    assert page.inner_text("#product-title") == name
    page.click("#product-back")
    assert shown(page, "#audit-view") and not shown(page, "#product-view")
    # a suggested category is a search
    target = entries.first.locator("td:nth-child(3) button").inner_text().replace(" › ", " > ")
    entries.first.locator("td:nth-child(3) button").click()
    page.wait_for_selector("#results-view:not([hidden]) #results .card")
    assert page.input_value("#q") == target

    # deep links to a product and to the audit
    page.goto(f"{server.url}/?product={quote(product_id, safe='')}")
    page.wait_for_selector("#product-view:not([hidden]) #suggested tbody tr td button")
    assert page.inner_text("#product-title") == title
    page.goto(f"{server.url}/?view=audit")
    page.wait_for_selector("#audit-view:not([hidden]) #audit tbody tr")

    assert not errors, errors
    assert not outside, f"the page tried to reach other hosts: {outside}"


def test_the_page_ranks_a_category_like_the_cli(browser_page, tmp_path: Path, tiny_text_model_dir: Path) -> None:
    """No fusion of its own: a category picked in the tree is served with the index's calibration,
    the same ids in the same order as `ctir-es query --pin` prints (the page pins its first page,
    for "More results"); the fusion select overrides it."""
    import json

    from calibrated_support import PAGE_K, calibrated_sample_store, run_cli

    page = browser_page
    store = calibrated_sample_store(tmp_path, tiny_text_model_dir)
    category = "Kitchen & Dining > Cookware"

    def cli_ids(*extra: str) -> list[str]:
        out = run_cli(tmp_path, "query", category, "--store", str(store), "--json", "--mode", "category",
                      "--k", str(PAGE_K), "--pin", *extra)
        return [r["id"] for r in json.loads(out.stdout)["results"]]

    def shown_ids() -> list[str]:
        return page.locator("#results .card").evaluate_all("els => els.map(e => e.dataset.id)")

    (tmp_path / "server").mkdir()
    with ServeProcess(store, tmp_path / "server") as server:
        errors, outside = watch(page, server.url)
        searches: list[str] = []
        page.on("request", lambda r: searches.append(r.url) if "/search?" in r.url else None)
        page.goto(server.url + "/")
        page.wait_for_selector("#health:has-text('280 products')")
        assert page.input_value("#fusion") == ""  # "calibrated (index default)"

        kitchen = page.locator("#tree > li", has=page.locator("button.node[data-path='Kitchen & Dining']"))
        kitchen.locator("> button.toggle").click()
        page.locator(f"button.node[data-path='{category}']").click()
        page.wait_for_selector(f"#status:has-text('results 1–{PAGE_K}')")
        assert shown_ids() == cli_ids()
        assert searches and not any("fusion=" in url for url in searches), searches

        # an explicit choice in the select overrides the calibration, like --fusion
        with page.expect_response(lambda r: "/search?" in r.url and "fusion=linear" in r.url):
            page.select_option("#fusion", "linear")
        page.wait_for_selector("#status:has-text('fusion linear')")
        assert shown_ids() == cli_ids("--fusion", "linear")

    assert not errors, errors
    assert not outside, f"the page tried to reach other hosts: {outside}"


def test_address_bar_follows_the_view_and_back_restores_it(browser_page, text_only_server) -> None:
    """Each view puts its state in the address (Back, reload and bookmarks work), the page has an
    icon (no 404 on load), "More like this" names the product by its title, and a category the
    index lacks gets a notice."""
    page, server = browser_page, text_only_server
    errors, outside = watch(page, server.url)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(server.url + "/")
    page.wait_for_selector("#health:has-text('280 products')")
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon and page.evaluate("(u) => fetch(u).then(r => r.status)", icon) == 200
    assert page.request.get(server.url + icon).headers["content-type"] == "image/svg+xml"

    page.fill("#q", "Kitchen & Dining > Cookware")
    page.click("#go")
    page.wait_for_selector("#status:has-text('results 1–24')")
    assert "?q=Kitchen+%26+Dining+%3E+Cookware" in page.url
    first = page.locator("#results .card").first
    product_id, title = first.get_attribute("data-id"), first.locator(".title").inner_text()
    first.locator("button.more:not(.details)").click()
    page.wait_for_selector(f"#status:has-text('products similar to “{title}”')")
    assert f"?similar={quote(product_id, safe='')}" in page.url

    page.go_back()  # the category results again, from the address
    page.wait_for_selector("#status:has-text('category query “Kitchen & Dining > Cookware”')")
    assert "?q=" in page.url and page.input_value("#q") == "Kitchen & Dining > Cookware"
    page.go_forward()  # similar again: the title read back for the id in the address
    page.wait_for_selector(f"#status:has-text('products similar to “{title}”')")
    page.reload()  # a bookmark of the similar view
    page.wait_for_selector(f"#status:has-text('products similar to “{title}”')")

    # a product's details have their own address; the page's Back button returns at once
    page.locator("#results .card button.details").first.click()
    page.wait_for_selector("#product-view:not([hidden]) #product-title")
    assert "?product=" in page.url
    page.click("#product-back")
    assert shown(page, "#results-view") and not shown(page, "#product-view")
    page.wait_for_function("() => location.search.startsWith('?similar=')")
    page.goto(server.url + "/?view=audit")
    page.wait_for_selector("#audit-view:not([hidden]) #audit tbody tr")
    page.go_back()  # the similar view, from the address
    page.wait_for_selector(f"#status:has-text('products similar to “{title}”')")

    # a category the index does not hold: the results match its words, and a notice says so
    page.fill("#q", "Kitchen > Blenders")
    page.click("#go")
    page.wait_for_selector("#notices li")
    assert "no category 'Kitchen > Blenders' in this index" in page.inner_text("#notices")
    assert "closest: 'Kitchen & Dining'" in page.inner_text("#notices")

    assert not failed, failed  # no 404 for an icon or anything else
    assert not errors, errors
    assert not outside, f"the page tried to reach other hosts: {outside}"
