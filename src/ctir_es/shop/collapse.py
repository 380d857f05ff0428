"""Variant collapse: one result per group ("+5 colours"), the best-ranked product of it shown.

A group key is either a keyword value of the index (``collapse="group"``, a parent id where
the catalogue has one; compared lower-cased, as the stores filter; a product without the
value is a group of its own) or derived (``collapse="auto"``):

- the title normalised as ``ctir_es.diversify`` does, without colour and size words (a fixed
  list, plus the words of the product's own ``colour`` / ``size`` values): ``"Sonata Watch
  Black"`` and ``"Sonata Watch - Gold"`` share the key ``sonata watch``;
- or a title vector whose cosine with the group's first product is at least
  ``DUPLICATE_COSINE`` (0.95, the threshold of the near-duplicate rate ``--diverse`` is
  measured with).

Products are taken best-ranked first; each joins the first group whose *first* product it
matches (never a chain of look-alikes), else it starts a group. Client-side over the fused
list, so both stores collapse alike (``es_collapse`` is the Elasticsearch clause for the
same value key; docs/shop-search.md, "Collapse", says why the fused list is collapsed here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..diversify import DUPLICATE_COSINE, normalise_title
from ..values import Value

AUTO = "auto"
COLOUR_WORDS = frozenset({
    "black", "white", "red", "blue", "green", "yellow", "pink", "purple", "orange", "grey", "gray",
    "brown", "beige", "maroon", "navy", "gold", "golden", "silver", "cream", "ivory", "peach",
    "violet", "magenta", "cyan", "teal", "turquoise", "olive", "khaki", "tan", "copper", "bronze",
    "multicolor", "multicolour", "multicolored", "multicoloured", "multi", "colour", "color",
    "colours", "colors", "dark", "light", "transparent", "clear", "rose", "wine", "mustard",
    "coffee", "charcoal", "lavender",
})
SIZE_WORDS = frozenset({
    "xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl", "2xl", "3xl", "4xl", "5xl", "small", "medium",
    "large", "extra", "free", "size", "single", "double", "king", "queen", "regular",
})
# the values whose words are variant words of their own product
VARIANT_VALUES = ("colour", "color", "size")
_WORD = re.compile(r"\w+")


def title_key(title: str, values: Mapping[str, Value] | None = None) -> str:
    """The normalised title without colour and size words (all of them: the normalised title)."""
    own = set()
    for name in VARIANT_VALUES:
        v = (values or {}).get(name)
        if isinstance(v, str):
            own.update(_WORD.findall(v.casefold()))
    words = normalise_title(title).split()
    kept = [w for w in words if w not in COLOUR_WORDS and w not in SIZE_WORDS and w not in own]
    return " ".join(kept or words)


def value_groups(ids: Sequence[str], values: Mapping[str, Mapping[str, Value]], name: str) -> list[str]:
    """Per product, its group: the value ``name`` lower-cased, or its own id without one."""
    out = []
    for pid in ids:
        v = values.get(pid, {}).get(name)
        out.append(f"v:{str(v).lower()}" if v is not None else f"id:{pid}")
    return out


def auto_groups(ids: Sequence[str], titles: Mapping[str, str], values: Mapping[str, Mapping[str, Value]],
                vectors: Mapping[str, np.ndarray], threshold: float = DUPLICATE_COSINE) -> list[str]:
    """Per product (``ids`` best-ranked first), the id of its group's first product."""
    by_key: dict[str, str] = {}
    dims = next((len(v) for v in vectors.values()), 0)
    leader_vecs = np.zeros((len(ids), dims), dtype=np.float32)
    vec_leaders: list[str] = []
    out = []
    for pid in ids:
        key = title_key(titles.get(pid, ""), values.get(pid))
        group = by_key.get(key) if key else None
        vec = vectors.get(pid)
        if group is None and vec is not None and vec_leaders:
            sims = leader_vecs[: len(vec_leaders)] @ vec
            hit = np.flatnonzero(sims >= threshold)
            if hit.size:
                group = vec_leaders[int(hit[0])]  # the best-ranked group it matches
        if group is None:
            group = pid
            if key:
                by_key[key] = pid
            if vec is not None:
                leader_vecs[len(vec_leaders)] = vec
                vec_leaders.append(pid)
        out.append(group)
    return out


def collapse(ids: Sequence[str], groups: Sequence[str]) -> list[tuple[str, int]]:
    """(shown id, products folded under it) per group, in the order of each group's first
    product (``ids`` best-ranked first: the shown product is the group's best)."""
    first: dict[str, str] = {}
    size: dict[str, int] = {}
    for pid, group in zip(ids, groups, strict=True):
        first.setdefault(group, pid)
        size[group] = size.get(group, 0) + 1
    return [(pid, size[group] - 1) for group, pid in first.items()]


def es_collapse(name: str) -> dict[str, Any]:
    """The Elasticsearch ``collapse`` clause on the keyword value ``name`` (lowercase-normalised
    in the mapping, so it groups as ``value_groups`` does): for a request that collapses one
    ranked list server-side (reference/8.15/collapse-search-results.html)."""
    from ..store.elasticsearch.bodies.index import value_field

    return {"collapse": {"field": value_field(name)}}
