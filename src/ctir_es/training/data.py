"""Training data from any catalogue: category-product pairs in the paper's three settings,
the split by product, and the categories held out of training.

The split and the category labels are the evaluation protocol's own
(``ctir_es.protocol``): a product's split is a hash of ``(seed, id)``, so a model
trained here never saw the products ``ctir-es evaluate`` tests on, whatever the catalogue
order. Settings:

- ``specific``: each product with its leaf category (its full path), the paper's "most
  specific";
- ``general``: with the root of its path, "most general";
- ``random``: with one level of its path, "all"; training draws the level afresh each epoch
  (evaluation uses the protocol's one seeded draw per product).

A category node is its full path; its text is the path (``"A > B > C"``) or its last level,
as the evaluation's query text. Products without a category cannot be paired: they are
counted and left out.

Two knobs for generalisation (issue 16), both off by default:

- ``pairs="ancestors"``: each training product is paired with every node of its paths (the
  label and all its ancestors), every epoch, so the heads learn the whole tree and a new
  leaf under a known branch lands near it. ``pairs="label"`` is the paper's one pair per
  label (one drawn level per epoch in the random setting).
- ``train_fraction``: keep only a stable subset of the training products (a hash of
  ``seed:id``), for learning curves. The dropped products are simply unused: they never move
  to validation or test, and "seen" means seen by the products actually trained on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..products import CategoryPath, Product, path_prefixes
from ..protocol import (
    SETTINGS,
    SplitSpec,
    check_choice,
    labels,
    query_text,
    split_products,
)
from .errors import TrainingError


@dataclass(frozen=True, slots=True)
class Pair:
    product: int  # index into TrainingData.products
    node: CategoryPath


PAIR_MODES: tuple[str, ...] = ("label", "ancestors")


def _unit(*parts: object) -> float:
    """A stable uniform number in [0, 1) from its parts (independent of the split's own hash)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class TrainingData:
    """The products of one catalogue, split, with their category candidates for a setting."""

    products: list[Product]
    setting: str
    split: SplitSpec
    query_text: str = "path"
    index: dict[str, list[int]] = field(default_factory=dict)  # split -> product indexes
    dropped_no_category: int = 0
    pair_mode: str = "label"
    train_fraction: float = 1.0
    unused_train: int = 0  # training products left out by train_fraction

    @classmethod
    def build(cls, products: Sequence[Product], setting: str, split: SplitSpec | None = None,
              query_text_mode: str = "path", *, pairs: str = "label", train_fraction: float = 1.0) -> TrainingData:
        split = split or SplitSpec()
        check_choice("setting", setting, SETTINGS)
        check_choice("query text", query_text_mode, ("path", "leaf"))
        check_choice("pairs", pairs, PAIR_MODES)
        if not 0.0 < train_fraction <= 1.0:
            raise TrainingError(f"train fraction must be in (0, 1], got {train_fraction}")
        usable = [p for p in products if any(p.categories)]
        data = cls(list(usable), setting, split, query_text_mode, dropped_no_category=len(products) - len(usable),
                   pair_mode=pairs, train_fraction=train_fraction)
        position = {p.id: i for i, p in enumerate(data.products)}
        for name, members in split_products(data.products, split).items():
            data.index[name] = [position[p.id] for p in members]
        if train_fraction < 1.0:
            kept = [i for i in data.index.get("train", [])
                    if _unit("train-fraction", split.seed, data.products[i].id) < train_fraction]
            data.unused_train = len(data.index.get("train", [])) - len(kept)
            data.index["train"] = kept
        if not data.index.get("train"):
            raise TrainingError("the training split is empty: give a catalogue with categorised products")
        return data

    # -- categories -----------------------------------------------------------------------

    def candidates(self, i: int) -> list[CategoryPath]:
        """The nodes product ``i`` may be paired with in this setting."""
        p = self.products[i]
        if self.setting == "random" or self.pair_mode == "ancestors":
            return sorted({prefix for path in p.categories if path for prefix in path_prefixes(path)})
        return sorted(labels(p, self.setting, self.split.seed))

    def eval_labels(self, i: int) -> set[CategoryPath]:
        """The protocol's labels (one seeded draw per path in the random setting)."""
        return labels(self.products[i], self.setting, self.split.seed)

    def text(self, node: CategoryPath) -> str:
        return query_text(node, self.query_text)

    @property
    def train_nodes(self) -> set[CategoryPath]:
        """Every node a training product's path passes through (the protocol's "seen")."""
        return {prefix for i in self.index["train"] for path in self.products[i].categories
                for prefix in path_prefixes(path)}

    def nodes(self, split: str) -> list[CategoryPath]:
        """Every node that can be a training target in ``split``."""
        return sorted({n for i in self.index.get(split, []) for n in self.candidates(i)})

    def pairs(self, split: str, rng: random.Random | None = None) -> list[Pair]:
        """One pair per product label; in the random setting one drawn level per product."""
        out: list[Pair] = []
        for i in self.index.get(split, []):
            options = self.candidates(i)
            if self.setting == "random" and self.pair_mode == "label":
                options = [(rng or random.Random(0)).choice(options)]
            out.extend(Pair(i, node) for node in options)
        return out

    def positives(self, i: int) -> set[CategoryPath]:
        """Every node product ``i`` truly belongs to (its paths and their ancestors): in a batch,
        these are never used as its negatives, whichever one it is paired with."""
        return {prefix for path in self.products[i].categories if path for prefix in path_prefixes(path)}

    def summary(self) -> dict[str, Any]:
        train_nodes = self.train_nodes
        test_labels = {n for i in self.index.get("test", []) for n in self.eval_labels(i)}
        return {
            "setting": self.setting,
            "query_text": self.query_text,
            "pairs": self.pair_mode,
            "train_fraction": self.train_fraction,
            "unused_train_products": self.unused_train,
            "products": len(self.products),
            "dropped_no_category": self.dropped_no_category,
            "split": self.split.to_json(),
            "split_sizes": {k: len(v) for k, v in self.index.items()},
            "train_pairs": len(self.pairs("train", random.Random(0))),
            "train_categories": len(self.nodes("train")),
            "test_categories": len(test_labels),
            "test_categories_unseen": len(test_labels - train_nodes),
        }
