"""Stable pages (issue 23, part 6): a cursor pins the fused ranking, so paging through it while
an ingest adds and rewrites products gives no repeat and no gap; offset paging under the same
writes does repeat and skip. Over HTTP, the Python API and the CLI, on the bundled sample with
the real tiny text model in the embedded store (and on Elasticsearch when one is running)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from service_support import encoders, sample_search

from ctir_es.cli.main import cli
from ctir_es.errors import QueryError
from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.ranking.fusion import FusedHit
from ctir_es.results import SearchResponse
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.shop.cursor import (
    PIN_DEPTH,
    BadCursor,
    CursorExpired,
    DirectoryPins,
    MemoryPins,
    query_digests,
)
from ctir_es.store.embedded import EmbeddedStore

QUERY = "cotton baby towel"
PAGES = 20
K = 10


@pytest.fixture
def store_file(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[Path]:
    """A private copy of the sample store (280 products), written by the tests."""
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    search.close()
    yield tmp_path / "store.db"


def _open(store_file: Path, text_dir: Path) -> Search:
    text, _ = encoders(text_dir, None)
    return Search(EmbeddedStore(store_file), text, None, ImageLoader())


class Writer:
    """An ingest in another thread with its own connection to the store (as `ctir-es ingest`
    beside a server): after each page, it adds two products made to rank first and rewrites two
    pinned ones so that their scores change (one up to the top, one down to nothing)."""

    def __init__(self, search: Search, pinned: list[str]) -> None:
        self.search = search
        self.pinned = pinned
        self.round = 0
        self.added: list[str] = []
        self.rewritten: dict[str, str] = {}
        self.error: BaseException | None = None
        self._go = threading.Event()
        self._done = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def between_pages(self) -> None:
        self._done.clear()
        self._go.set()
        assert self._done.wait(60), "the writer is stuck"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop = True
        self._go.set()
        self._thread.join(60)

    def _run(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._stop:
                return
            try:
                self._write()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                self.error = exc
            self._done.set()

    def _write(self) -> None:
        n = self.round = self.round + 1
        new = [{"id": f"new-{n}-{i}", "title": f"{QUERY} {QUERY} set {n}-{i}",
                "categories": [["Baby Care", "Bath"]]} for i in range(2)]
        up, down = self.pinned[-n * 3], self.pinned[n]  # a low one climbs, a high one falls
        stored = self.search.store.get([up, down])
        rewrites = []
        for pid, title in ((up, f"{QUERY} {QUERY} rewritten {n}"), (down, f"granite garden statue {n}")):
            record = stored[pid].product.to_json()
            record.update(title=title, description="", attributes={})
            record.pop("images", None)
            rewrites.append(record)
            self.rewritten[pid] = title
        report = self.search.index([*new, *rewrites])
        assert report.indexed == 4, report
        self.added += [r["id"] for r in new]


def _ids(page: dict[str, Any]) -> list[str]:
    return [r["id"] for r in page["results"]]


def _gaps_and_repeats(seen: list[str], pinned: list[str]) -> tuple[int, int]:
    repeats = len(seen) - len(set(seen))
    gaps = len(set(pinned[: len(seen)]) - set(seen))
    return repeats, gaps


def test_twenty_pages_over_http_while_an_ingest_writes_have_no_repeat_and_no_gap(
        store_file: Path, tiny_text_model_dir: Path) -> None:
    serving, writing = _open(store_file, tiny_text_model_dir), _open(store_file, tiny_text_model_dir)
    client = TestClient(create_app(serving), raise_server_exceptions=False)
    # what a fresh search gives at pin time: the ranking the pages must walk, in order
    fresh = [r.id for r in serving.search(QUERY, k=PIN_DEPTH).results]
    assert len(fresh) > PAGES * K
    first = client.get("/search", params={"q": QUERY, "k": K, "pin": "true"})
    assert first.status_code == 200, first.text
    page = first.json()
    writer = Writer(writing, fresh)
    seen, ranks = _ids(page), [r["rank"] for r in page["results"]]
    try:
        for _ in range(PAGES - 1):
            assert page["has_more"] and page["next_cursor"]
            writer.between_pages()
            # the "more" button: the first page's URL with the cursor added
            got = client.get("/search", params={"q": QUERY, "k": K, "pin": "true", "cursor": page["next_cursor"]})
            assert got.status_code == 200, got.text
            page = got.json()
            assert page["offset"] == len(seen) and page["k"] == K
            seen += _ids(page)
            ranks += [r["rank"] for r in page["results"]]
            for r in page["results"]:  # a rewritten product keeps its pinned place, shows its new title
                if r["id"] in writer.rewritten:
                    assert r["title"] == writer.rewritten[r["id"]]
    finally:
        writer.stop()
    assert writer.round == PAGES - 1
    assert _gaps_and_repeats(seen, fresh) == (0, 0)
    assert seen == fresh[: PAGES * K]  # the pinned order itself, page after page
    assert ranks == list(range(1, PAGES * K + 1))
    assert not set(writer.added) & set(seen)  # added after the pin: not on later pages
    # and the writes were real: a fresh search now ranks differently, the new products first
    now = [r.id for r in serving.search(QUERY, k=PAGES * K).results]
    assert set(now[:4]) <= set(writer.added) and now != fresh[: PAGES * K]
    serving.close()
    writing.close()


def test_offset_paging_under_the_same_writes_repeats_or_skips(store_file: Path, tiny_text_model_dir: Path) -> None:
    """The problem the cursor solves, under the writes above: without this, the test before
    would prove nothing (a scenario where recomputing pages happens to stay stable)."""
    serving, writing = _open(store_file, tiny_text_model_dir), _open(store_file, tiny_text_model_dir)
    client = TestClient(create_app(serving), raise_server_exceptions=False)
    fresh = [r.id for r in serving.search(QUERY, k=PIN_DEPTH).results]
    writer = Writer(writing, fresh)
    seen: list[str] = []
    try:
        for n in range(PAGES):
            if n:
                writer.between_pages()
            page = client.get("/search", params={"q": QUERY, "k": K, "offset": n * K}).json()
            seen += _ids(page)
    finally:
        writer.stop()
    repeats, gaps = _gaps_and_repeats([i for i in seen if i not in writer.added], fresh)
    assert repeats + gaps > 0
    serving.close()
    writing.close()


@pytest.fixture
def served(store_file: Path, tiny_text_model_dir: Path) -> Iterator[tuple[Search, TestClient]]:
    search = _open(store_file, tiny_text_model_dir)
    yield search, TestClient(create_app(search), raise_server_exceptions=False)
    search.close()


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    message: str = body["error"]["message"]
    assert "without a cursor" in message or "without it" in message  # says how to start again
    return message


def test_altered_foreign_and_other_query_cursors_are_refused(served: tuple[Search, TestClient]) -> None:
    search, client = served
    page = client.get("/search", params={"q": QUERY, "k": K, "pin": "true"}).json()
    cursor = page["next_cursor"]
    assert isinstance(cursor, str) and len(cursor) < 100
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    for bad in (flipped, cursor[:-1], "x" * 54, "not a cursor!", "é" * 20):
        message = _error(client.get("/search", params={"q": QUERY, "cursor": bad}), 400)
        assert "not one this server issued" in message
    assert client.get("/search", params={"q": QUERY, "cursor": "x" * 101}).status_code == 422
    # a cursor from another server process (another key) is refused, not misread
    other = TestClient(create_app(search), raise_server_exceptions=False)
    assert "not one this server issued" in _error(other.get("/search", params={"q": QUERY, "cursor": cursor}), 400)
    # pasted into another query: refused, and the pinned query is not shown
    message = _error(client.get("/search", params={"q": "steel pan", "cursor": cursor}), 400)
    assert "text differs" in message and QUERY not in message
    message = _error(client.get("/search", params={"q": QUERY, "cursor": cursor, "fusion": "linear"}), 400)
    assert "fusion differs" in message
    both = client.get("/search", params={"q": QUERY, "cursor": cursor, "offset": 10})
    assert both.status_code == 400 and "offset cannot be combined" in both.json()["error"]["message"]
    # the right query, its options omitted: the next page
    ok = client.get("/search", params={"q": QUERY, "cursor": cursor, "k": 5}).json()
    assert ok["offset"] == K and [r["rank"] for r in ok["results"]] == list(range(K + 1, K + 6))


def test_an_expired_or_evicted_cursor_is_410_never_a_recompute(served: tuple[Search, TestClient]) -> None:
    _, client = served
    now = [0.0]
    client.app.state.service.pins = MemoryPins(clock=lambda: now[0], max_pins=2)  # type: ignore[attr-defined]
    cursors = [client.get("/search", params={"q": q, "pin": "true"}).json()["next_cursor"]
               for q in (QUERY, "steel pan", "wooden toy")]
    message = _error(client.get("/search", params={"q": QUERY, "cursor": cursors[0]}), 410)
    assert "expired" in message and client.get("/search", params={"q": QUERY, "cursor": cursors[0]}).json()[
        "error"]["code"] == "cursor_expired"
    assert client.get("/search", params={"q": "wooden toy", "cursor": cursors[2]}).status_code == 200
    now[0] += 601  # idle past the TTL
    _error(client.get("/search", params={"q": "wooden toy", "cursor": cursors[2]}), 410)
    spec = client.get("/openapi.json").json()["paths"]["/search"]["get"]
    assert "410" in spec["responses"]
    names = {p["name"] for p in spec["parameters"]}
    assert {"pin", "cursor", "offset"} <= names


def _hits(n: int, prefix: str = "p") -> list[FusedHit]:
    return [FusedHit(f"{prefix}{i}", 1.0 / (i + 1)) for i in range(n)]


def _render(hits: Any, first: int) -> list[Any]:
    return [(first + i, h.id) for i, h in enumerate(hits)]


def _header() -> SearchResponse:
    return SearchResponse("q", "text", "rrf", ["bm25"])


def test_memory_pins_are_bounded_by_count_and_hits_oldest_out() -> None:
    now = [0.0]
    pins = MemoryPins(max_pins=3, max_hits=250, clock=lambda: now[0])
    cursors = []
    for n in range(3):
        now[0] += 1
        cursors.append(pins.first_page(_header(), _hits(100, f"q{n}-"), 10, {}, _render).next_cursor)
    # 300 hits > 250: the third pin evicted the first (least recently used)
    assert len(pins) == 2 and pins.hits == 200
    with pytest.raises(CursorExpired):
        pins.next_page(cursors[0], 10, {}, _render)
    pins.next_page(cursors[1], 10, {}, _render)  # q1 is now the most recently used
    pins.first_page(_header(), _hits(100, "q3-"), 10, {}, _render)
    with pytest.raises(CursorExpired):
        pins.next_page(cursors[2], 10, {}, _render)
    assert pins.next_page(cursors[1], 10, {}, _render).results[0] == (11, "q1-10")
    # a list no longer than a page pins nothing: it has no next page
    assert pins.first_page(_header(), _hits(10), 10, {}, _render).next_cursor is None and len(pins) == 2
    # by count, and by age however busy
    counted = MemoryPins(max_pins=2, max_age=100, clock=lambda: now[0])
    cs = [counted.first_page(_header(), _hits(20), 5, {}, _render).next_cursor for _ in range(3)]
    assert len(counted) == 2
    for _ in range(3):  # busy: never idle, 90 s old
        now[0] += 30
        counted.next_page(cs[2], 5, {}, _render)
    now[0] += 30
    with pytest.raises(CursorExpired):  # 120 s old
        counted.next_page(cs[2], 5, {}, _render)
    assert "key" not in repr(counted) and repr(counted) == "MemoryPins()"


def test_python_api_pages_the_pinned_list_with_any_page_size(served: tuple[Search, TestClient]) -> None:
    search, _ = served
    first = search.search(QUERY, k=7, pin=True)
    assert first.page is not None and first.page.pinned > 100
    pinned, seen = first.page.pinned, [r.id for r in first.results]
    cursor, sizes = first.next_cursor, [13, 1, 50, 100, 100, 100]
    for k in sizes:
        assert cursor is not None
        page = search.search(cursor=cursor, k=k)  # every query argument omitted
        assert page.results[0].rank == len(seen) + 1 and page.query == QUERY
        seen += [r.id for r in page.results]
        cursor = page.next_cursor
    assert cursor is None and len(seen) == pinned == len(set(seen))  # the last page ends it
    assert seen == [r.id for r in search.search(QUERY, k=PIN_DEPTH).results]
    json_page = search.search(QUERY, k=3, pin=True).to_json()
    assert json_page["next_cursor"] and json_page["page"]["start"] == 0
    with pytest.raises(QueryError, match="cannot be combined with diverse"):
        search.search(QUERY, pin=True, diverse=True)
    with pytest.raises(BadCursor, match="mode differs"):
        search.search(QUERY, mode="category", cursor=search.search(QUERY, pin=True).next_cursor)


def test_a_product_deleted_after_the_pin_is_dropped_not_a_skip(served: tuple[Search, TestClient]) -> None:
    search, _ = served
    first = search.search(QUERY, k=10, pin=True)
    pinned = [r.id for r in search.search(QUERY, k=PIN_DEPTH).results]
    gone = pinned[12]
    assert search.store.delete([gone]) == 1
    second = search.search(cursor=first.next_cursor, k=10)
    assert [r.id for r in second.results] == [i for i in pinned[10:20] if i != gone]
    assert [r.rank for r in second.results] == [n for n in range(11, 21) if n != 13]
    third = search.search(cursor=second.next_cursor, k=10)
    assert [r.id for r in third.results] == pinned[20:30]


def test_query_digests_compare_typed_values() -> None:
    from ctir_es.filters import Filter

    a = query_digests(text="x", filters=[Filter("market", "eq", "in")], weights={"bm25": 1.0, "text": 0.5})
    b = query_digests(text="x", filters=[Filter("market", "eq", "in")], weights={"text": 0.5, "bm25": 1.0})
    assert a == b and set(a) == {"text", "filters", "weights"}
    assert query_digests(text="x", image=b"\x00")["image"] != query_digests(text="x", image=b"\x01")["image"]
    assert query_digests() == {}


def test_cli_pages_with_a_cursor_across_calls(store_file: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, tiny_text_model_dir: Path) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    base = ["query", QUERY, "--mode", "text", "--store", str(store_file), "--k", "25", "--json"]
    first = runner.invoke(cli, [*base, "--pin"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    page = json.loads(first.stdout)
    seen = [r["id"] for r in page["results"]]
    for _ in range(3):  # each call its own process in real use: the pin lives in files
        out = runner.invoke(cli, [*base, "--cursor", page["next_cursor"]], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        page = json.loads(out.stdout)
        seen += [r["id"] for r in page["results"]]
    search = _open(store_file, tiny_text_model_dir)
    assert seen == [r.id for r in search.search(QUERY, mode="text", k=PIN_DEPTH).results][:100]
    assert len(set(seen)) == 100
    search.close()
    key = tmp_path / "cache" / "cursors" / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    table = runner.invoke(cli, [*base[:-1], "--pin"], catch_exceptions=False)
    assert "next page: --cursor " in table.stderr
    bad = runner.invoke(cli, [*base, "--cursor", "nonsense"])
    assert bad.exit_code != 0 and "without a cursor" in bad.output and "Traceback" not in bad.output


def test_directory_pins_keep_at_most_n_files_and_expire_by_idle_time(tmp_path: Path) -> None:
    pins = DirectoryPins(tmp_path / "cursors", max_pins=3)
    cursors = []
    for n in range(5):
        cursors.append(pins.first_page(_header(), _hits(30, f"q{n}-"), 10, {"text": "d"}, _render).next_cursor)
        newest = max((tmp_path / "cursors").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        os.utime(newest, (time.time() - 100 + n,) * 2)  # distinct mtimes, oldest first
    assert len(list((tmp_path / "cursors").glob("*.json"))) == 3
    for old in cursors[:2]:
        with pytest.raises(CursorExpired):
            pins.next_page(old, 10, {}, _render)
    page = DirectoryPins(tmp_path / "cursors").next_page(cursors[4], 10, {"text": "d"}, _render)  # a later call
    assert page.results[0] == (11, "q4-10") and page.query == "q"
    with pytest.raises(BadCursor):
        pins.next_page(cursors[4], 10, {"text": "other"}, _render)
    for path in (tmp_path / "cursors").glob("*.json"):
        os.utime(path, (0, 0))  # idle since 1970
    with pytest.raises(CursorExpired):
        pins.next_page(cursors[4], 10, {}, _render)


@pytest.mark.integration
def test_cursor_on_elasticsearch_while_writing(make_store: Callable[..., Any], tiny_text_model_dir: Path) -> None:
    text, _ = encoders(tiny_text_model_dir, None)
    search = Search(make_store(index_options="flat"), text, None)
    assert search.index(read_jsonl(sample_path(), IngestReport())).indexed == 280
    fresh = [r.id for r in search.search(QUERY, k=PIN_DEPTH).results]
    page = search.search(QUERY, k=K, pin=True)
    writer = Writer(search, fresh)
    seen = [r.id for r in page.results]
    try:
        for _ in range(5):
            writer.between_pages()
            page = search.search(cursor=page.next_cursor, k=K)
            seen += [r.id for r in page.results]
    finally:
        writer.stop()
    assert seen == fresh[: 6 * K]
    now = [r.id for r in search.search(QUERY, k=6 * K).results]  # the writes were real
    assert set(now[:10]) & set(writer.added) and now != fresh[: 6 * K]


BRANDS = ("Acme", "Bolt", "Crest")


@pytest.fixture
def shop_search(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[Search]:
    """The sample, every product given a brand and a price (by its line)."""
    catalogue = tmp_path / "products.jsonl"
    with open(sample_path(), encoding="utf-8") as src, open(catalogue, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            record = json.loads(line)
            record["values"] = {"Brand": BRANDS[i % 3], "Price": f"₹{100 + (37 * i) % 900}"}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    search = _open(tmp_path / "shop.db", tiny_text_model_dir)
    search.index(read_jsonl(catalogue, IngestReport()))
    yield search
    search.close()


def test_a_sorted_faceted_list_is_pinned_after_its_arrangement(shop_search: Search) -> None:
    search = shop_search
    options: dict[str, Any] = {"sort": "price_asc", "facets": ["brand", "price"]}
    whole = [r.id for r in search.search(QUERY, k=PIN_DEPTH, **options).results]
    page = search.search(QUERY, k=40, pin=True, **options)
    facets, seen = page.facets, [r.id for r in page.results]
    prices = [r.values["price"] for r in page.results]
    assert prices[:10] == sorted(prices[:10])  # the sort window's head, cheapest first
    while page.next_cursor:
        page = search.search(QUERY, k=40, cursor=page.next_cursor, **options)
        assert page.facets == facets and page.shop["sort"]["sort"] == "price_asc"  # the pinned list's facets
        seen += [r.id for r in page.results]
    assert seen == whole and len(set(seen)) == len(seen)
    with pytest.raises(BadCursor, match="shop differs"):  # a cursor of the sorted list, asked unsorted-ly
        search.search(QUERY, k=40, cursor=search.search(QUERY, k=40, pin=True, **options).next_cursor,
                      sort="price_desc")


def test_a_collapsed_list_pages_its_groups_with_their_counts(shop_search: Search, tmp_path: Path) -> None:
    search = shop_search
    first = search.search(QUERY, k=2, pin=True, collapse="brand")
    assert first.page is not None and first.page.pinned == 3  # one result per brand
    last = search.search(QUERY, k=2, cursor=first.next_cursor)
    groups = [*first.results, *last.results]
    assert len({r.values["brand"] for r in groups}) == 3 and last.next_cursor is None
    assert sum(r.collapsed or 0 for r in groups) + 3 == len(search.search(QUERY, k=PIN_DEPTH).results)
    # the CLI's pins keep the counts across processes
    pins = DirectoryPins(tmp_path / "cursors")
    cli_first = search.search(QUERY, k=2, pin=True, collapse="brand", pins=pins)
    again = Search(search.store, search.text_encoder, None)
    cli_last = again.search(QUERY, k=2, cursor=cli_first.next_cursor, pins=DirectoryPins(tmp_path / "cursors"))
    assert [(r.id, r.collapsed) for r in cli_last.results] == [(r.id, r.collapsed) for r in last.results]


def test_http_pages_a_collapsed_faceted_pin(shop_search: Search) -> None:
    client = TestClient(create_app(shop_search), raise_server_exceptions=False)
    url = {"q": QUERY, "k": 2, "pin": "true", "collapse": "brand", "facet": "brand"}
    first = client.get("/search", params=url).json()
    second = client.get("/search", params={**url, "cursor": first["next_cursor"]}).json()
    assert [r["rank"] for r in first["results"] + second["results"]] == [1, 2, 3]
    assert all(r["collapsed"] is not None for r in first["results"] + second["results"])
    assert second["facets"] == first["facets"] and second["next_cursor"] is None and not second["has_more"]
    assert second["offset"] == 2 and second["max_score"] == first["results"][0]["score"]
