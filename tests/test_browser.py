"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), served
by the real ``ctir-es serve`` on the bundled sample: a category picked in the tree fills the
grid with product images and score bars. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

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

        # pagination: the next page starts at rank 25
        page.click("#next")
        page.wait_for_selector("#results .card .rank:has-text('#25 ')")
        assert "results 25–48" in page.inner_text("#status")

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
