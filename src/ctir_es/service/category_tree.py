"""Bounded answers of ``GET /categories``: a page of the category tree, never the whole of a
wide one.

A catalogue may have 100,000 categories side by side; the whole tree was a 10 MB answer, and
building it for each request held a worker for seconds. Here one request returns at most
``limit`` nodes (``DEFAULT_NODES`` unless asked, at most ``Limits.max_category_nodes``), filled
breadth-first: the listed level first (from ``offset``), then their children, level by level,
until ``depth`` or the limit. Each node says how many children it has (``children_total``), so
a client sees where the answer was cut and asks for the rest with ``under=<label>`` (a node's
subtree) and ``offset`` (the next siblings of the listed level).

The tree itself (``CategoryIndex``) is built from the store's counts once and shared by the
requests of the next ``TREE_TTL`` seconds, one build at a time: twenty requests at once cost one
store call, not twenty (the others wait without taking a worker).
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..products import CategoryPath, format_category_path

DEFAULT_NODES = 1_000  # nodes in one answer unless the request asks for another limit
TREE_TTL = 10.0  # seconds a built tree answers requests (counts may lag writes by this much)


@dataclass
class CategoryIndex:
    """Every node of the tree with its product count, children found by parent."""

    counts: dict[CategoryPath, int]
    products: int
    names: dict[CategoryPath, list[str]]  # parent -> its children's names (unsorted); () -> the roots
    total: int
    built: float = field(default_factory=time.monotonic)
    _sorted: dict[CategoryPath, list[CategoryPath]] = field(default_factory=dict)

    @classmethod
    def build(cls, counts: Mapping[CategoryPath, int], products: int) -> CategoryIndex:
        """``counts``: ``{path: products}`` for every node (a missing prefix gets the sum of its
        children, as ``categories.build_tree`` does)."""
        known = {tuple(p): int(n) for p, n in counts.items() if p}
        names: dict[CategoryPath, list[str]] = {(): []}
        nodes = list(known)
        seen = set(known)
        while nodes:
            missing: list[CategoryPath] = []
            for path in nodes:
                parent = path[:-1]
                kids = names.get(parent)
                if kids is None:
                    kids = names[parent] = []
                    if parent not in seen:
                        seen.add(parent)
                        missing.append(parent)
                kids.append(path[-1])
            nodes = [p for p in missing if p]
        return cls(known, products, names, sum(len(kids) for kids in names.values()))

    @property
    def nodes(self) -> int:
        """Nodes of the whole tree (each is the child of one parent)."""
        return self.total

    def has(self, path: CategoryPath) -> bool:
        return not path or path in self.counts or path in self.names

    def children(self, path: CategoryPath) -> list[CategoryPath]:
        """The children of ``path``, sorted by name (case-insensitively), sorted once."""
        kids = self._sorted.get(path)
        if kids is None:
            kids = [(*path, name) for name in sorted(self.names.get(path, ()), key=str.casefold)]
            self._sorted[path] = kids
        return kids

    def count(self, path: CategoryPath) -> int:
        known = self.counts.get(path)
        if known is None:
            known = self.counts[path] = sum(self.count(c) for c in self.children(path))
        return known

    def page(self, under: CategoryPath = (), *, offset: int = 0, limit: int = DEFAULT_NODES,
             depth: int = 0) -> dict[str, Any]:
        """At most ``limit`` nodes of the subtree below ``under`` (``()``: the whole tree): its
        children from ``offset``, then their descendants breadth-first down to ``depth`` levels
        (0: all). ``truncated`` is true when the limit (not ``depth``) left nodes out."""
        top = self.children(under)
        first = top[offset : offset + limit]
        more_top = offset + len(first) < len(top)
        returned = len(first)
        truncated = more_top

        def node(path: CategoryPath) -> dict[str, Any]:
            return {"name": path[-1], "path": list(path), "label": format_category_path(path),
                    "count": self.count(path), "children_total": len(self.names.get(path, ())), "children": []}

        tree = [node(p) for p in first]
        queue = deque(zip(first, tree, strict=True))
        while queue:
            path, out = queue.popleft()
            if depth and len(path) - len(under) >= depth:
                continue
            for child in self.children(path):
                if returned >= limit:
                    truncated = True
                    queue.clear()
                    break
                kid = node(child)
                out["children"].append(kid)
                returned += 1
                queue.append((child, kid))
        return {
            "products": self.products,
            "nodes": self.nodes,
            "under": list(under),
            "returned": returned,
            "truncated": truncated,
            "offset": offset,
            "next_offset": offset + len(first) if more_top else None,
            "tree": tree,
        }


def normalise_path(path: CategoryPath) -> CategoryPath:
    """Category levels as ingest stores them (NFC, trimmed)."""
    return tuple(unicodedata.normalize("NFC", level).strip() for level in path)


class TreeCache:
    """The last ``CategoryIndex`` of one ``Search``, rebuilt when older than ``ttl`` seconds,
    by one request at a time (the others wait for it in the event loop, not in a worker)."""

    def __init__(self, ttl: float = TREE_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entry: tuple[object, CategoryIndex] | None = None
        self._building: threading.Event | None = None

    def fresh(self, owner: object) -> CategoryIndex | None:
        with self._lock:
            entry = self._entry
        if entry is not None and entry[0] is owner and time.monotonic() - entry[1].built < self.ttl:
            return entry[1]
        return None

    async def get(self, owner: object, build: Callable[[Callable[[], CategoryIndex]], Any],
                  make: Callable[[], CategoryIndex], wait: float) -> CategoryIndex:
        """The index of ``owner`` (the ``Search`` serving): cached, or made by ``make`` run through
        ``build`` (the service's worker, under its deadline). While another request builds it,
        wait for that one (polling, at most ``wait`` seconds: then ``TimeoutError``)."""
        with anyio.fail_after(wait):
            while True:
                index = self.fresh(owner)
                if index is not None:
                    return index
                with self._lock:
                    building = self._building
                    mine = building is None
                    if building is None:
                        building = self._building = threading.Event()
                if mine:
                    break
                while not building.is_set():
                    await anyio.sleep(0.02)
        started = False

        def work() -> CategoryIndex:
            nonlocal started
            started = True
            try:
                index = make()
                with self._lock:
                    self._entry = (owner, index)
                return index
            finally:
                self._done(building)

        try:
            result: CategoryIndex = await build(work)
            return result
        finally:
            if not started:  # the request gave up before a worker ran it
                self._done(building)

    def _done(self, building: threading.Event) -> None:
        with self._lock:
            if self._building is building:
                self._building = None
        building.set()
