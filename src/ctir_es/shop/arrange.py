"""A shop request over one query's fused candidates: facets, collapse, sort, then the page.

``Search.search`` hands over the whole fused list (client-side fusion, each source
``max(CANDIDATE_DEPTH, 2k)`` deep); the best ``CANDIDATE_CUTOFF`` (1000) are the candidates,
whose values and categories are read in batches (``SummaryReader.summaries``: on Elasticsearch
from doc values, not whole documents); the page's products are read whole. In order:

1. facets over the candidates' stored values; a facet whose name has an active filter is
   counted over the candidates of the same query without that filter (one more retrieval per
   such name: choosing Sony still shows Bose's count);
2. collapse (``ctir_es.shop.collapse``) of the ranked candidates; facets count products, not
   groups (as Elasticsearch's aggregations ignore ``collapse``);
3. sort (``ctir_es.shop.sort``) within the relevant window of what is left;
4. the first ``k`` as results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..filters import Filter
from ..products import Product
from ..ranking.fusion import FusedHit
from ..results import SearchResponse
from ..schema import StoredProduct
from ..store.base import SummaryReader, VectorReader
from ..vocabulary import TITLE_VECTOR
from .collapse import AUTO, auto_groups, collapse, value_groups
from .facets import CATEGORY_FACET, facet
from .request import CANDIDATE_CUTOFF, ShopRequest
from .sort import SORT_FLOOR, SORT_WINDOW, sorted_ids

if TYPE_CHECKING:
    from ..search import Search

READ_BATCH = 500  # products per store read
Retrieve = Callable[[Sequence[Filter]], list[FusedHit]]


def read(search: Search, ids: Sequence[str]) -> dict[str, StoredProduct]:
    out: dict[str, StoredProduct] = {}
    for start in range(0, len(ids), READ_BATCH):
        out.update(search.store.get(list(ids[start : start + READ_BATCH])))
    return out


def read_summaries(search: Search, ids: Sequence[str]) -> dict[str, Product]:
    """The candidates' values and categories: ``SummaryReader.summaries`` where the store has it
    (Elasticsearch reads doc values instead of whole documents), else ``get``."""
    store = search.store
    if not isinstance(store, SummaryReader):
        return {pid: stored.product for pid, stored in read(search, ids).items()}
    out: dict[str, Product] = {}
    for start in range(0, len(ids), READ_BATCH):
        out.update(store.summaries(list(ids[start : start + READ_BATCH])))
    return out


def on_facet(f: Filter, name: str) -> bool:
    """Does filter ``f`` narrow facet ``name`` (so that facet is counted without it)?"""
    return f.field == name and (f.on_value or name == CATEGORY_FACET)


def arrange(search: Search, shop: ShopRequest, base: SearchResponse, fused: Sequence[FusedHit], k: int,
            filters: Sequence[Filter], retrieve: Retrieve) -> SearchResponse:
    candidates = list(fused[:CANDIDATE_CUTOFF])
    known = read_summaries(search, [h.id for h in candidates])
    live = [h for h in candidates if h.id in known]  # a product deleted meanwhile is gone
    facets, retrievals = {}, 0
    for name in shop.facets:
        own = [f for f in filters if on_facet(f, name)]
        pool = live
        if own:  # disjunctive: the query's candidates without the filters on this name
            pool = retrieve([f for f in filters if not on_facet(f, name)])[:CANDIDATE_CUTOFF]
            retrievals += 1
            known.update(read_summaries(search, [h.id for h in pool if h.id not in known]))
            pool = [h for h in pool if h.id in known]
        products = [known[h.id] for h in pool]
        facets[name] = {**facet(name, search.schema.values.get(name), [p.values for p in products],
                                [p.categories for p in products], shop.facet_size),
                        "disjunctive": bool(own)}
    values = {h.id: known[h.id].values for h in live}
    ranked = [(h.id, h.score) for h in live]
    info: dict[str, object] = {"candidates": len(live), "cutoff": CANDIDATE_CUTOFF, "fused": len(fused),
                               "disjunctive_retrievals": retrievals}
    folded: dict[str, int] = {}
    stored: dict[str, StoredProduct] | None = None  # whole products: only what the page shows, unless collapse=auto
    if shop.collapse:
        ids = [pid for pid, _ in ranked]
        if shop.collapse == AUTO:  # near-duplicate titles: the candidates' titles and vectors
            stored = read(search, ids)
            ids = [pid for pid in ids if pid in stored]  # one deleted since is gone
            vectors = title_vectors(search, ids)
            groups = auto_groups(ids, {pid: stored[pid].product.title for pid in ids}, values, vectors)
        else:
            groups = value_groups(ids, values, shop.collapse)
        folded = dict(collapse(ids, groups))
        ranked = [(pid, score) for pid, score in ranked if pid in folded]
        info["collapse"] = {"by": shop.collapse, "groups": len(ranked), "folded": len(ids) - len(ranked)}
    order = [pid for pid, _ in ranked]
    if shop.sort:
        order, window = sorted_ids(ranked, values, shop.sort)
        info["sort"] = {**shop.sort.to_json(), "window": window, "max_window": SORT_WINDOW, "floor": SORT_FLOOR}
    by_id = {h.id: h for h in live}
    results = search._results([by_id[pid] for pid in order[:k]], stored)  # None: the page is read now
    if shop.collapse:
        results = [replace(r, collapsed=folded[r.id]) for r in results]
    return replace(base, results=results, facets=facets, shop=info)


def title_vectors(search: Search, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Stored title vectors of ``ids`` (none where the index or the store has none)."""
    if TITLE_VECTOR not in search.schema.vectors or not isinstance(search.store, VectorReader):
        return {}
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), READ_BATCH):
        out.update(search.store.vectors(list(ids[start : start + READ_BATCH]), TITLE_VECTOR))
    return out


def shop_summary(response: SearchResponse) -> list[str]:
    """Lines for people after the results table: the facets, then what sort and collapse did."""
    from .facets import summary_lines

    if not response.shop:
        return []
    lines = summary_lines(response.facets)
    sort = response.shop.get("sort")
    if isinstance(sort, dict):
        lines.append(f"sorted by {sort['sort']}: the {sort['window']} most relevant of {response.shop['candidates']} "
                     "candidates, the rest by relevance")
    group = response.shop.get("collapse")
    if isinstance(group, dict):
        shown = ", ".join(f"#{r.rank} +{r.collapsed}" for r in response.results if r.collapsed)
        lines.append(f"collapsed by {group['by']}: {group['groups']} groups, {group['folded']} products folded"
                     + (f" ({shown})" if shown else ""))
    return lines
