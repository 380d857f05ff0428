"""Stable pages: an opaque cursor that pins the fused ranking of one query (issue 23, part 6).

**Why a pin, not a store-side point in time.** A hybrid ranking is fused in this process
(``ranking.fusion``) or in an Elasticsearch retriever whose rank window is recomputed on every
request. A point in time on the store would freeze the documents each source reads, but not the
fused list: every page would still run BM25 and kNN again and fuse again. Paging by ``offset``
recomputes the list for every page, and two things move it between pages: writes (a product
added, or updated so that its score changes, shifts every product below it by one: page 2
repeats the last product of page 1, or skips one), and depth itself (``offset + k + 1`` results
are fused from ``2 x`` that many candidates per source, so a deeper page reads each source
deeper and RRF credits other products). Users of the other hybrid engines report exactly this
(Elasticsearch #124632, OpenSearch neural-search #280). So the pin is the fused list itself.

**How.** The first page (``Search.search(..., pin=True)``) fuses the candidates to ``PIN_DEPTH``
results (``MAX_K``, 1000: as deep as ``offset`` paging may go), hands the final ordered list to
``Pins.first_page``, which keeps it (id, fused score and each source's rank and score: what a
result shows) with the response's header (query, fusion, sources, weights, notices), renders
page 1 only (the store reads ``k`` products, never 1000) and returns a cursor for the next
position. A cursor is ``base64url(version | pin id | position)`` plus an HMAC-SHA256 tag (its
first 16 bytes) under a key of this ``Pins``: the pin id is 16 random bytes, the position a
32-bit index into the pinned list. The tag means a client can only hand back cursors this
process issued: it cannot forge a position or guess another query's pin. The key is random per
``MemoryPins`` (a restart forgets the pins anyway) and in a 0600 file beside the pins for
``DirectoryPins``; it is never logged or shown. A later page (``cursor=...``) checks the tag,
finds the pin, checks the query, and renders ``hits[position : position + k]``, reading those
``k`` products from the store now (current titles, values, images); the next cursor points
after them. Because the cursor holds a position, not a page number, ``k`` may change between
pages without a repeat or a gap.

**The query must match.** With a cursor, each query argument (text, image, mode, filters,
fusion, weights, field weights) may be omitted; one that is given must equal what the pinned
query was given (compared as digests of the typed values), else ``BadCursor`` says which one
differs. So a "more" button can resend the first page's URL with ``&cursor=`` added, and a
cursor pasted into another query is refused instead of silently paging the wrong list.

**Contract with facets, sort and collapse** (``shop.arrange``): the search pipeline calls
``first_page`` with the FINAL ordered list, after any arrangement; later pages are slices of
exactly that list, re-rendered by the pipeline's own ``render(hits, first_rank)``. A collapsed
list passes ``PinnedHit``s, which carry how many products each one folds ("+5 colours"). The
header pinned with the list holds the facets and what was arranged, so every page of one pin
shows the same facet counts: those of the list being paged. The shop options are part of the
query a cursor must match.

**What it guarantees.** Within one pin, the pages are consecutive slices of one list: no
product repeats and none is skipped, whatever is written meanwhile. A product deleted after the
pin is dropped from the page that would show it (the page is shorter; it was not skipped, it is
gone). A product added after the pin never appears on later pages (that is what pinned means;
search again for it), and an updated one keeps its pinned place and score but shows its
current title and values. Not guaranteed: that a pinned list is what a fresh search would give
later, or that page 1 of a pinned search equals an unpinned ``k=10`` search (the pin reads each
source 2000 deep, so RRF may credit a product the shallow search did not see).

**Bounds.** Memory (``MemoryPins``, the service): at most ``MAX_PINS`` (256) pins and
``MAX_PINNED_HITS`` (100,000) hits in all, least recently used evicted first; a pin idle
``IDLE_TTL`` (10 minutes) or older than ``MAX_AGE`` (1 hour) is gone. A pinned hit with three
sources and a 30-character id takes about 630 bytes (tracemalloc), so the cache holds at most
about 63 MB (more only with ids near their 512-character limit). Work: a first page costs one
search at depth 1000 (what ``offset=989`` costs today); a later page costs the HMAC, a dict
lookup and reading ``k`` products. An expired, evicted or unknown pin is ``CursorExpired`` (HTTP
410), never a silent recompute, which would bring back the repeats and gaps.

**Processes.** A ``MemoryPins`` cursor is valid in the process that issued it: ``ctir-es serve``
runs one uvicorn process, whose requests share one ``MemoryPins`` (threads: it is locked). A
deployment with several processes or hosts behind a balancer would need either sticky sessions
by cursor, or a shared pin store (Redis, the store itself) and a shared key from its secrets;
a cursor sent to another process is refused (its tag does not verify), not misread.

**The CLI** runs one process per call, so its pins persist: ``DirectoryPins`` keeps each pin as
a JSON file under the cache dir (``<cache_dir>/cursors``), at most ``MAX_DISK_PINS`` (64) files
of up to 1000 hits (about 150 KB each, so about 10 MB), with the same TTLs, judged by the
file's times; the oldest go first. Its cursors work across CLI calls by the same user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import QueryError
from ..ranking.fusion import FusedHit, SourceScore
from ..vocabulary import MAX_K

if TYPE_CHECKING:
    from PIL import Image

    from ..filters import Filter
    from ..results import SearchResponse, SearchResult

PIN_DEPTH = MAX_K  # results one pin keeps: as deep as offset paging may go
MAX_PINS = 256  # pins one process keeps
MAX_PINNED_HITS = 100_000  # hits over all of them (~630 bytes each: ~63 MB)
IDLE_TTL = 600.0  # seconds a pin lives after its last page
MAX_AGE = 3600.0  # seconds a pin lives at most, however busy: a ranking should not get that stale
MAX_DISK_PINS = 64  # the CLI's pin files
MAX_CURSOR_CHARS = 100  # an issued cursor is 50 characters; longer text is refused unread

_VERSION = 1
_PAYLOAD = struct.Struct(">B16sI")  # version, pin id, position
_TAG_BYTES = 16
_START_AGAIN = "search again without a cursor to start from page 1"

Render = Callable[[Sequence[FusedHit], int], "list[SearchResult]"]  # (hits, rank of the first)


class BadCursor(QueryError):
    """A cursor that is malformed, altered, issued by another process (or before a restart), or
    for another query (HTTP 400)."""


class CursorExpired(QueryError):
    """A well-formed cursor whose pin is gone: idle too long, too old, or evicted (HTTP 410)."""


@dataclass(frozen=True, slots=True)
class PinnedPage:
    """Where one page sits in a pinned ranking (``SearchResponse.page``)."""

    start: int  # 0-based position of the page's first hit in the pinned list
    pinned: int  # hits in the pinned list
    next_cursor: str | None  # None on the last page
    top_score: float | None  # the fused score of the list's rank 1 (a scale for score bars)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "pinned": self.pinned, "top_score": self.top_score}


@dataclass(frozen=True, slots=True)
class PinnedHit(FusedHit):
    """A hit of an arranged list (``shop.arrange``): what collapse folded under it."""

    collapsed: int | None = None


@dataclass(frozen=True, slots=True)
class Pin:
    header: SearchResponse  # the first page's response without results
    hits: tuple[FusedHit, ...]
    query: Mapping[str, str]  # digest per query argument given at pin time


def query_digests(
    *,
    text: str | None = None,
    image: str | bytes | Image.Image | None = None,
    mode: str | None = None,
    filters: Sequence[Filter] = (),
    fusion: str | None = None,
    weights: Mapping[str, float] | None = None,
    field_weights: Mapping[str, float] | None = None,
    arrangement: object = None,
) -> dict[str, str]:
    """A digest per query argument given (None / empty: omitted), to compare a cursor's request
    with the pinned one without keeping image bytes around. Filters are compared typed
    (``price:500..1,299`` equals ``price:500..1299``)."""
    given: dict[str, object] = {
        "text": text, "mode": mode, "fusion": fusion,
        "filters": tuple(filters) or None,
        "weights": tuple(sorted(weights.items())) if weights else None,
        "field_weights": tuple(sorted(field_weights.items())) if field_weights else None,
        "shop": arrangement,  # facets, sort, collapse (a ShopRequest, or None)
    }
    out = {name: _digest(repr(value).encode()) for name, value in given.items() if value is not None}
    if isinstance(image, bytes):
        out["image"] = _digest(image)
    elif isinstance(image, str):
        out["image"] = _digest(image.encode("utf-8", "surrogatepass"))
    elif image is not None:
        out["image"] = _digest(repr((image.mode, image.size)).encode() + image.tobytes())
    return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Pins:
    """Pinned rankings and the cursors into them. Subclasses keep the pins (``_put``, ``_get``)."""

    def __init__(self, key: bytes, *, idle_ttl: float = IDLE_TTL, max_age: float = MAX_AGE) -> None:
        if len(key) < 16:
            raise ValueError("a cursor key needs at least 16 bytes")
        self._key = key
        self.idle_ttl = idle_ttl
        self.max_age = max_age

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}()"

    # -- the two calls the search pipeline makes -------------------------------------------

    def first_page(self, header: SearchResponse, hits: Sequence[FusedHit], k: int,
                   query: Mapping[str, str], render: Render) -> SearchResponse:
        """Pin ``hits`` (the final ordered list, at most ``PIN_DEPTH`` of it) and return its first
        ``k``, with a cursor for the rest. A list of ``k`` or fewer pins nothing: it has no next page."""
        kept = tuple(hits[:PIN_DEPTH])
        pin_id = secrets.token_bytes(16)
        if len(kept) > k:
            self._put(pin_id, Pin(replace(header, results=[]), kept, dict(query)))
        return self._page(pin_id, kept, header, 0, k, render)

    def next_page(self, cursor: str, k: int, query: Mapping[str, str], render: Render) -> SearchResponse:
        """The ``k`` pinned hits from the cursor's position on. ``BadCursor`` for a cursor this
        process did not issue or one of another query; ``CursorExpired`` when its pin is gone."""
        pin_id, position = self.decode(cursor)
        pin = self._get(pin_id)
        if pin is None:
            raise CursorExpired(
                f"this cursor has expired (a pinned ranking is kept {self.idle_ttl / 60:g} minutes after its "
                f"last page and {self.max_age / 60:g} minutes at most, and the oldest are dropped when many "
                f"are kept): {_START_AGAIN}")
        for name, digest in query.items():
            if pin.query.get(name) != digest:
                raise BadCursor(f"this cursor pages another query (its {name} differs): {_START_AGAIN}")
        if position >= len(pin.hits):  # never issued: a tag that verifies came from this key
            raise BadCursor(f"this cursor points past its ranking: {_START_AGAIN}")
        return self._page(pin_id, pin.hits, pin.header, position, k, render)

    # -- cursors ----------------------------------------------------------------------------

    def encode(self, pin_id: bytes, position: int) -> str:
        payload = _PAYLOAD.pack(_VERSION, pin_id, position)
        tag = hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode("ascii")

    def decode(self, cursor: str) -> tuple[bytes, int]:
        """(pin id, position) of a cursor this ``Pins`` issued, else ``BadCursor``."""
        unknown = BadCursor(f"this cursor is not one this server issued (it was altered, or the server "
                            f"restarted since): {_START_AGAIN}")
        if not cursor or len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise unknown
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise unknown from None
        if len(raw) != _PAYLOAD.size + _TAG_BYTES:
            raise unknown
        payload, tag = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
        if not hmac.compare_digest(tag, expected):
            raise unknown
        version, pin_id, position = _PAYLOAD.unpack(payload)
        if version != _VERSION:
            raise unknown
        return pin_id, position

    def _page(self, pin_id: bytes, hits: Sequence[FusedHit], header: SearchResponse, start: int, k: int,
              render: Render) -> SearchResponse:
        end = min(start + k, len(hits))
        next_cursor = self.encode(pin_id, end) if end < len(hits) else None
        page = PinnedPage(start, len(hits), next_cursor, hits[0].score if hits else None)
        return replace(header, results=render(hits[start:end], start + 1), page=page)

    # -- storage ----------------------------------------------------------------------------

    def _put(self, pin_id: bytes, pin: Pin) -> None:
        raise NotImplementedError

    def _get(self, pin_id: bytes) -> Pin | None:
        raise NotImplementedError


class MemoryPins(Pins):
    """Pins in this process's memory (the service, the Python API): bounded by count and by
    hits, least recently used evicted first, expired by idle time and by age. Thread-safe."""

    def __init__(self, key: bytes | None = None, *, max_pins: int = MAX_PINS, max_hits: int = MAX_PINNED_HITS,
                 idle_ttl: float = IDLE_TTL, max_age: float = MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(key or secrets.token_bytes(32), idle_ttl=idle_ttl, max_age=max_age)
        self.max_pins = max_pins
        self.max_hits = max_hits
        self._clock = clock
        self._lock = threading.Lock()
        self._pins: OrderedDict[bytes, tuple[Pin, float, float]] = OrderedDict()  # pin, created, last used
        self._hits = 0

    def __len__(self) -> int:
        return len(self._pins)

    @property
    def hits(self) -> int:
        """Hits kept over all pins."""
        return self._hits

    def _put(self, pin_id: bytes, pin: Pin) -> None:
        now = self._clock()
        with self._lock:
            for old, (_, created, used) in list(self._pins.items()):
                if self._expired(now, created, used):
                    self._drop(old)
            while self._pins and (len(self._pins) >= self.max_pins
                                  or self._hits + len(pin.hits) > self.max_hits):
                self._drop(next(iter(self._pins)))  # least recently used
            self._pins[pin_id] = (pin, now, now)
            self._hits += len(pin.hits)

    def _get(self, pin_id: bytes) -> Pin | None:
        now = self._clock()
        with self._lock:
            entry = self._pins.get(pin_id)
            if entry is None:
                return None
            pin, created, used = entry
            if self._expired(now, created, used):
                self._drop(pin_id)
                return None
            self._pins[pin_id] = (pin, created, now)
            self._pins.move_to_end(pin_id)
            return pin

    def _expired(self, now: float, created: float, used: float) -> bool:
        return now - used > self.idle_ttl or now - created > self.max_age

    def _drop(self, pin_id: bytes) -> None:
        pin, _, _ = self._pins.pop(pin_id)
        self._hits -= len(pin.hits)


class DirectoryPins(Pins):
    """Pins as JSON files in a directory, for the CLI (one process per call): at most
    ``max_pins`` files, oldest first out; idle time from the file's mtime (touched on each
    page), age from the time written inside. The key is a 0600 file there, made once."""

    def __init__(self, directory: Path, *, max_pins: int = MAX_DISK_PINS, idle_ttl: float = IDLE_TTL,
                 max_age: float = MAX_AGE) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        super().__init__(self._key_file(), idle_ttl=idle_ttl, max_age=max_age)
        self.max_pins = max_pins

    def _key_file(self) -> bytes:
        path = self.directory / "key"
        if not path.exists():
            tmp = self.directory / f".key-{secrets.token_hex(8)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            try:
                os.link(tmp, path)  # first writer wins; a concurrent CLI call reads its key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = path.read_bytes()
        if len(key) != 32:
            raise QueryError(f"the cursor key file in {self.directory} is damaged: delete that directory")
        return key

    def _path(self, pin_id: bytes) -> Path:
        return self.directory / f"{pin_id.hex()}.json"  # hex of verified bytes: no path games

    def _put(self, pin_id: bytes, pin: Pin) -> None:
        now = time.time()
        files = sorted(self.directory.glob("*.json"), key=_mtime)
        for n, old in enumerate(files):
            if n <= len(files) - self.max_pins or now - _mtime(old) > self.idle_ttl:
                old.unlink(missing_ok=True)
        data = {"created": now, "query": dict(pin.query), "header": _header_json(pin.header),
                "hits": [_hit_json(h) for h in pin.hits]}
        tmp = self.directory / f".{pin_id.hex()}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self._path(pin_id))

    def _get(self, pin_id: bytes) -> Pin | None:
        path = self._path(pin_id)
        now = time.time()
        try:
            if now - _mtime(path) > self.idle_ttl:
                path.unlink(missing_ok=True)
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CursorExpired(f"this cursor's pinned ranking cannot be read ({type(exc).__name__}): "
                                f"{_START_AGAIN}") from None
        if now - float(data["created"]) > self.max_age:
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # idle time counts from the last page
        return Pin(_header_from_json(data["header"]), tuple(_hit_from_json(h) for h in data["hits"]),
                   dict(data["query"]))


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


# -- the JSON of a pin file --------------------------------------------------------------------

_HEADER_FIELDS = ("query", "mode", "fusion", "sources", "weights", "source_hits", "notices", "calibration_group")


def _header_json(header: SearchResponse) -> dict[str, Any]:
    out = header.to_json()
    return {name: out[name] for name in _HEADER_FIELDS}


def _header_from_json(data: Mapping[str, Any]) -> SearchResponse:
    from ..results import SearchResponse

    return SearchResponse(**{name: data[name] for name in _HEADER_FIELDS})


def _hit_json(hit: FusedHit) -> list[Any]:
    sources = [[name, s.rank, s.score, s.normalised] for name, s in hit.sources.items()]
    return [hit.id, hit.score, sources, getattr(hit, "collapsed", None)]


def _hit_from_json(row: Sequence[Any]) -> FusedHit:
    pid, score, sources, collapsed = row
    scored = {name: SourceScore(int(rank), float(raw), norm) for name, rank, raw, norm in sources}
    if collapsed is None:
        return FusedHit(pid, float(score), scored)
    return PinnedHit(pid, float(score), scored, int(collapsed))
