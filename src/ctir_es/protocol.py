"""The paper's category-to-image protocol: splits, settings, query sets and relevance.

- **Split.** Each product goes to ``train``, ``val`` or ``test`` by a hash of ``(seed, id)``
  (``split_of``), so a product's split does not depend on catalogue order or size, and the
  training code can hold out exactly the products evaluation uses. Systems rank the products
  of one split only (``test`` for the reported numbers, ``val`` to tune fusion weights).
- **Category node.** A node is identified by its full path, root first
  (``("Kitchen & Dining", "Cookware")``); two leaves with the same name under different
  parents are different nodes.
- **Settings** (what a product contributes as a query category, its *label*):
  ``general`` - the root of each path (the paper's "most general"); ``specific`` - the whole
  path, i.e. its leaf (the paper's "most specific"); ``random`` - one level of each path,
  drawn with the seed (the paper's "all" setting, here called "random level"). The query set
  of a setting is the set of distinct labels of the products in the split.
- **Query text.** ``path`` (default): the full path as a shop writes it, ``"A > B > C"``;
  ``leaf``: the node's own name, ``"C"``.
- **Relevance.** ``subtree`` (default): a product is relevant when one of its paths passes
  through the node (the node or a descendant). ``exact``: the paper's exact-level reading -
  relevant only when the node is the product's own label in that setting (its root, its leaf,
  or the level drawn for it); a product filed deeper under the node does not count.
- **Seen / unseen.** A query node is *seen* when some ``train`` product's path passes through
  it, i.e. a model trained on the train split saw that category as a target or an ancestor.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .products import CategoryPath, Product, format_category_path, path_prefixes

SETTINGS: dict[str, str] = {
    "random": "random level",
    "general": "most general",
    "specific": "most specific",
}
QUERY_TEXTS: dict[str, str] = {"path": "full path, 'A > B > C'", "leaf": "the node's own name, 'C'"}
RELEVANCE: dict[str, str] = {
    "subtree": "the product's path passes through the node",
    "exact": "the node is the product's own label at the setting's level",
}
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_SEED = 13

Qrels = dict[str, dict[str, int]]


def check_choice(kind: str, value: str, choices: Mapping[str, str] | Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {kind} {value!r}; supported: {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class SplitSpec:
    """How products are split: fractions of train / val / test (summing to 1) and the seed."""

    seed: int = DEFAULT_SEED
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-9:
            raise ConfigError(f"split fractions must be >= 0 and sum to 1, got {parts}")

    @classmethod
    def parse(cls, text: str, seed: int = DEFAULT_SEED) -> SplitSpec:
        """``"0.7,0.1,0.2"`` (``--split TRAIN,VAL,TEST``) with ``seed``."""
        try:
            train, val, test = (float(x) for x in text.split(","))
        except ValueError:
            raise ConfigError(f"--split wants three fractions TRAIN,VAL,TEST such as 0.7,0.1,0.2, got {text!r}") from None
        return cls(seed=seed, train=train, val=val, test=test)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "train": self.train, "val": self.val, "test": self.test,
                "method": "sha256(seed:id) -> uniform [0, 1) -> train | val | test"}

    def matches(self, other: Mapping[str, Any]) -> bool:
        """Does a split as a manifest records it (``seed``, ``train``, ``val``, ``test``) equal this one?"""
        ours = {"seed": self.seed, "train": self.train, "val": self.val, "test": self.test}
        return all((t := other.get(k)) is not None and abs(float(t) - float(v)) < 1e-9 for k, v in ours.items())


def trained_split(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The split a trained model's manifest says its training data came from ({} when it does not say)."""
    return dict(((manifest.get("source") or {}).get("data") or {}).get("split") or {})


def _unit(*parts: object) -> float:
    """A stable uniform number in [0, 1) from its parts (not Python's salted ``hash``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(product_id: str, spec: SplitSpec = SplitSpec()) -> str:
    """The split a product belongs to; depends only on its id and the spec."""
    u = _unit(spec.seed, product_id)
    if u < spec.train:
        return "train"
    if u < spec.train + spec.val:
        return "val"
    return "test"


def split_products(products: Iterable[Product], spec: SplitSpec = SplitSpec()) -> dict[str, list[Product]]:
    out: dict[str, list[Product]] = {name: [] for name in SPLITS}
    for p in products:
        out[split_of(p.id, spec)].append(p)
    return out


def labels(product: Product, setting: str, seed: int = DEFAULT_SEED) -> set[CategoryPath]:
    """The category nodes a product is filed under in a setting (one per path)."""
    out: set[CategoryPath] = set()
    for i, path in enumerate(product.categories):
        if not path:
            continue
        if setting == "general":
            out.add(path[:1])
        elif setting == "specific":
            out.add(path)
        elif setting == "random":
            level = random.Random(f"{seed}:{product.id}:{i}").randrange(len(path))
            out.add(path[: level + 1])
        else:
            check_choice("setting", setting, SETTINGS)
    return out


def node_id(setting: str, node: CategoryPath) -> str:
    """A stable query id (no spaces, TREC-safe): setting initial + a hash of the full path."""
    digest = hashlib.sha1("\x1f".join(node).encode("utf-8")).hexdigest()[:12]
    return f"{setting[0]}-{digest}"


def query_text(node: CategoryPath, mode: str = "path") -> str:
    return format_category_path(node) if mode == "path" else node[-1]


def known_nodes(products: Iterable[Product]) -> set[CategoryPath]:
    """Every node some product's path passes through."""
    return {prefix for p in products for path in p.categories for prefix in path_prefixes(path)}


@dataclass(frozen=True)
class Query:
    qid: str
    node: CategoryPath
    text: str
    seen: bool

    @property
    def level(self) -> int:
        return len(self.node)

    def to_json(self) -> dict[str, Any]:
        return {"qid": self.qid, "node": list(self.node), "text": self.text, "level": self.level,
                "seen": self.seen}


@dataclass
class QuerySet:
    """The queries of one setting over one split, their relevance judgements and the products
    that may be ranked (the split's ids)."""

    setting: str
    split: str
    queries: list[Query]
    qrels: Qrels
    candidates: list[str]
    relevance: str = "subtree"
    query_text: str = "path"
    meta: dict[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, Query]:
        return {q.qid: q for q in self.queries}

    def summary(self) -> dict[str, Any]:
        rel = [len(self.qrels[q.qid]) for q in self.queries]
        levels: dict[int, int] = {}
        for q in self.queries:
            levels[q.level] = levels.get(q.level, 0) + 1
        return {
            "setting": self.setting,
            "split": self.split,
            "queries": len(self.queries),
            "seen": sum(q.seen for q in self.queries),
            "unseen": sum(not q.seen for q in self.queries),
            "candidates": len(self.candidates),
            "relevant_mean": (sum(rel) / len(rel)) if rel else 0.0,
            "p10_ceiling": (sum(min(r, 10) for r in rel) / (10 * len(rel))) if rel else 0.0,
            "relevant_max": max(rel, default=0),
            "levels": dict(sorted(levels.items())),
        }


def build_query_set(
    products: Sequence[Product],
    setting: str,
    *,
    split: str = "test",
    train_nodes: set[CategoryPath] | None = None,
    query_text_mode: str = "path",
    relevance: str = "subtree",
    seed: int = DEFAULT_SEED,
) -> QuerySet:
    """Queries from the labels of ``products`` (one split), judged over the same products."""
    check_choice("setting", setting, SETTINGS)
    check_choice("query text", query_text_mode, QUERY_TEXTS)
    check_choice("relevance", relevance, RELEVANCE)
    product_labels = {p.id: labels(p, setting, seed) for p in products}
    nodes = sorted({n for ls in product_labels.values() for n in ls})
    seen_nodes = train_nodes or set()
    queries = [Query(node_id(setting, n), n, query_text(n, query_text_mode), n in seen_nodes) for n in nodes]
    qid_of = {q.node: q.qid for q in queries}
    qrels: Qrels = {q.qid: {} for q in queries}
    for p in products:
        if relevance == "subtree":
            hits = {prefix for path in p.categories for prefix in path_prefixes(path)}
        else:
            hits = product_labels[p.id]
        for node in hits:
            qid = qid_of.get(node)
            if qid is not None:
                qrels[qid][p.id] = 1
    return QuerySet(setting, split, queries, qrels, [p.id for p in products], relevance, query_text_mode)


def dataset_hash(products: Iterable[Product], kind: str = "") -> str:
    """sha256 over the products as canonical JSON lines, in reader order.

    Images count by file name only, so the same catalogue in another folder hashes the same.
    """
    import json

    h = hashlib.sha256(kind.encode("utf-8") + b"\n")
    for p in products:
        record = p.to_json()
        record["images"] = [str(ref).rstrip("/").rsplit("/", 1)[-1] for ref in p.images]
        h.update(json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
