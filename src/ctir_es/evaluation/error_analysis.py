"""Error analysis like the paper's: where do the wrong results in the top k come from?

For each query node and each non-relevant product in a system's top k, take the product path
closest to the node (longest common prefix, the lowest common ancestor):

- ``different tree``: no common root;
- ``same tree``: a common root; ``levels up`` = how many levels above the query node the two
  meet (1 = a sibling category under the same parent, 2 = a cousin, ...);
- ``inside node``: the product is under the node but not relevant (only with ``exact``
  relevance, where a product filed deeper does not count);
- ``no category``: the product has no category path at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..products import CategoryPath, Product
from ..protocol import QuerySet


def common_depth(a: CategoryPath, b: CategoryPath) -> int:
    depth = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        depth += 1
    return depth


def relation(node: CategoryPath, product: Product | None) -> tuple[str, int]:
    """``(kind, levels_up)`` of a wrong product relative to the query node."""
    if product is None or not product.categories:
        return "no category", 0
    depth = max(common_depth(node, path) for path in product.categories)
    if depth == 0:
        return "different tree", 0
    if depth >= len(node):
        return "inside node", 0
    return "same tree", len(node) - depth


def analyse(
    query_set: QuerySet,
    rankings: Mapping[str, Sequence[str]],
    products: Mapping[str, Product],
    k: int = 10,
) -> dict[str, Any]:
    """Counts of wrong results in the top ``k`` by relation, over all queries of the set."""
    kinds: Counter[str] = Counter()
    levels: Counter[int] = Counter()
    retrieved = 0
    for q in query_set.queries:
        relevant = query_set.qrels.get(q.qid, {})
        top = list(rankings.get(q.qid, ()))[:k]
        retrieved += len(top)
        for pid in top:
            if relevant.get(pid, 0) > 0:
                continue
            kind, up = relation(q.node, products.get(pid))
            kinds[kind] += 1
            if kind == "same tree":
                levels[up] += 1
    wrong = sum(kinds.values())
    same = kinds["same tree"]
    return {
        "k": k,
        "retrieved": retrieved,
        "wrong": wrong,
        "wrong_share": wrong / retrieved if retrieved else 0.0,
        "by_kind": {name: kinds.get(name, 0) for name in ("same tree", "different tree", "inside node", "no category")},
        "same_tree_share": same / wrong if wrong else 0.0,
        "levels_up": {str(lv): n for lv, n in sorted(levels.items())},
        "mean_levels_up": (sum(lv * n for lv, n in levels.items()) / same) if same else None,
    }
