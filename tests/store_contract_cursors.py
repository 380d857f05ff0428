"""Stable pages over every store (issue 23, part 6): ``CursorContract``.

A cursor pins the fused ranking of one query above the store (``ctir_es.shop.cursor``, through
``Search``), so these cases run ``Search`` over the store under test with a deterministic
stand-in text encoder (``WordVectors``): BM25 and kNN from the store, fused here. Paging a
pinned query walks the pinned list exactly (no repeat, no gap), also while products are added,
rewritten or deleted between pages; an altered, foreign, mismatched, expired or evicted cursor
raises the typed error (``BadCursor`` / ``CursorExpired``, both ``QueryError``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from store_contract_data import DIMS, SCHEMA, ContractBase, product, require

from ctir_es.errors import CtirError, QueryError
from ctir_es.schema import Document
from ctir_es.search import Search
from ctir_es.shop.cursor import IDLE_TTL, PIN_DEPTH, BadCursor, CursorExpired, MemoryPins
from ctir_es.store.base import Deleter, Store

QUERY = "cotton towel"
PAGE = 7
SIZE = 60
BATH = ("Home Furnishing", "Bath Linen")


class WordVectors:
    """A text encoder stand-in: the normalised sum of one fixed random vector per word, so a
    title shares direction with a query in proportion to the words they share."""

    dims = DIMS
    manifest: ClassVar[dict[str, Any]] = {
        "id": "test-encoder@1",
        "name": "word-vectors",
        "dims": DIMS,
        "kind": "text",
    }

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts])

    encode_documents = encode_queries

    @staticmethod
    def _one(text: str) -> np.ndarray:
        v = np.full(DIMS, 1e-3, dtype=np.float64)
        for word in text.lower().split():
            v += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(DIMS)
        return (v / np.linalg.norm(v)).astype(np.float32)


WORDS = WordVectors()
COLOURS = ("white", "blue", "grey", "green", "red")
NOUNS = ("towel", "sheet", "robe", "mat", "napkin")


def doc(pid: str, title: str) -> Document:
    return Document(product(pid, title, BATH), {"title_vector": WORDS.encode_documents([title])[0]})


def shop_catalogue() -> list[Document]:
    """``SIZE`` products, most sharing a word or two with ``QUERY`` (kNN returns them all)."""
    return [
        doc(f"c{i:02d}", f"{COLOURS[i % 5]} {'cotton ' * (i % 3)}{NOUNS[(i // 5) % 5]} {i}")
        for i in range(SIZE)
    ]


def page_ids(response: Any) -> list[str]:
    return [r.id for r in response.results]


class CursorContract(ContractBase):
    """Stable pages of a pinned fused ranking, through ``Search`` over the store under test."""

    @pytest.fixture
    def paged(self, store: Store) -> Search:
        store.setup(SCHEMA)
        result = store.upsert(shop_catalogue())
        assert result.written == SIZE and not result.errors
        return Search(store, WORDS)  # type: ignore[arg-type]

    def test_pages_of_a_pinned_query_have_no_repeat_and_no_gap(self, paged: Search) -> None:
        fresh = page_ids(paged.search(QUERY, k=PIN_DEPTH))  # what a search gives at pin time
        assert len(fresh) == SIZE
        page = paged.search(QUERY, k=PAGE, pin=True)
        assert page.page is not None and page.page.pinned == SIZE and page.page.start == 0
        seen, ranks, pages = page_ids(page), [r.rank for r in page.results], 1
        while page.next_cursor is not None:
            pages += 1
            page = paged.search(cursor=page.next_cursor, k=PAGE)  # the query's arguments omitted
            assert page.page is not None and page.page.start == len(seen) and page.query == QUERY
            seen += page_ids(page)
            ranks += [r.rank for r in page.results]
        assert seen == fresh  # the pinned order, page after page: no repeat, no gap
        assert ranks == list(range(1, SIZE + 1))
        assert (
            pages == -(-SIZE // PAGE) and len(page.results) == SIZE % PAGE
        )  # 9 pages, the last short

    def test_writes_between_pages_neither_repeat_nor_skip(self, paged: Search) -> None:
        """Between pages, two new products made to rank first are added, a pinned product not
        yet shown is rewritten to rank first and another to match nothing: the pages still walk
        the pinned list, rewritten products in their pinned place with their current title."""
        store = paged.store
        fresh = page_ids(paged.search(QUERY, k=PIN_DEPTH))
        page = paged.search(QUERY, k=PAGE, pin=True)
        seen, added, rewritten = page_ids(page), [], {}
        n = 0
        while page.next_cursor is not None:
            n += 1
            new = [doc(f"new-{n}-{i}", f"{QUERY} {QUERY} new {n} {i}") for i in range(2)]
            up, down = fresh[-n], fresh[len(seen) + 1]  # a low one climbs, one not yet shown falls
            rewrites = [
                doc(up, f"{QUERY} {QUERY} rewritten {n}"),
                doc(down, f"granite garden statue {n}"),
            ]
            result = store.upsert([*new, *rewrites])
            assert result.written == 4 and not result.errors
            added += [d.product.id for d in new]
            rewritten.update({d.product.id: d.product.title for d in rewrites})
            page = paged.search(QUERY, k=PAGE, cursor=page.next_cursor)  # the "more" button
            seen += page_ids(page)
            for r in page.results:
                if r.id in rewritten:
                    assert r.title == rewritten[r.id]
        assert n == -(-SIZE // PAGE) - 1
        assert len(seen) == len(set(seen)) and seen == fresh  # no repeat, no gap
        assert not set(added) & set(seen)  # added after the pin: not on its pages
        now = page_ids(paged.search(QUERY, k=SIZE))  # and the writes were real
        assert set(now[:4]) <= set(added) | set(rewritten) and now != fresh

    def test_a_product_deleted_after_the_pin_is_dropped_not_skipped(self, paged: Search) -> None:
        require(self, paged.store, Deleter)
        fresh = page_ids(paged.search(QUERY, k=PIN_DEPTH))
        first = paged.search(QUERY, k=10, pin=True)
        gone = fresh[12]
        assert paged.store.delete([gone]) == 1  # type: ignore[attr-defined]
        second = paged.search(cursor=first.next_cursor, k=10)
        assert page_ids(second) == [
            i for i in fresh[10:20] if i != gone
        ]  # a shorter page, not a skip
        assert [r.rank for r in second.results] == [n for n in range(11, 21) if n != 13]
        third = paged.search(cursor=second.next_cursor, k=10)
        assert page_ids(third) == fresh[20:30]

    def test_an_altered_foreign_or_mismatched_cursor_is_a_bad_cursor(self, paged: Search) -> None:
        assert issubclass(BadCursor, QueryError) and issubclass(QueryError, CtirError)
        cursor = paged.search(QUERY, k=PAGE, pin=True).next_cursor
        assert isinstance(cursor, str)
        flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
        for bad in (
            flipped,
            cursor[:-1],
            cursor + "A",
            "x" * len(cursor),
            "not a cursor!",
            "é" * 20,
            "x" * 200,
            "",
        ):
            with pytest.raises(BadCursor, match="not one this server issued"):
                paged.search(QUERY, cursor=bad)
        other = Search(paged.store, WORDS)  # type: ignore[arg-type]  # another process: another key
        with pytest.raises(BadCursor, match="not one this server issued"):
            other.search(QUERY, cursor=cursor)
        with pytest.raises(BadCursor, match="text differs"):  # pasted into another query
            paged.search("granite statue", cursor=cursor)
        with pytest.raises(BadCursor, match="fusion differs"):
            paged.search(QUERY, cursor=cursor, fusion="linear")
        assert page_ids(paged.search(QUERY, cursor=cursor, k=PAGE))  # the cursor itself still works

    def test_an_expired_or_evicted_cursor_is_cursor_expired(self, paged: Search) -> None:
        assert issubclass(CursorExpired, QueryError)
        now = [0.0]
        pins = MemoryPins(clock=lambda: now[0], max_pins=2)
        cursors = [
            paged.search(q, k=PAGE, pin=True, pins=pins).next_cursor
            for q in (QUERY, "blue robe", "grey mat")
        ]
        with pytest.raises(CursorExpired, match="expired"):  # evicted: the oldest of three pins
            paged.search(QUERY, cursor=cursors[0], pins=pins)
        live = paged.search("grey mat", cursor=cursors[2], pins=pins)
        assert live.page is not None and live.page.start == PAGE
        now[0] += IDLE_TTL + 1  # idle past the TTL
        for q, c in (("blue robe", cursors[1]), ("grey mat", live.next_cursor)):
            with pytest.raises(CursorExpired, match="expired"):
                paged.search(q, cursor=c, pins=pins)
