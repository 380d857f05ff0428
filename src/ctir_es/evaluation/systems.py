"""The systems under evaluation, each one a way to run a category query through the Store API.

- ``LexicalSystem``: BM25 over named fields. Evaluation never searches ``categories`` (the
  answer): a system that asks for it is refused at construction.
- ``DenseSystem``: kNN on one vector field of an evaluation index, with the function that
  encodes query texts for that field. Vectors come from titles (text encoders) or images
  (CLIP), never from categories.
- ``HybridSystem``: a lexical and a dense system fused with ``ranking.fusion`` (RRF, or
  linear with the BM25 weight tuned on the validation split).
- ``Skipped``: a system that is not available, and why (the report lists it too).

Here too: their names and labels, the ``ProviderContext`` that dense systems are built in
(``providers`` makes them), and the ``--systems`` selection.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import ConfigError
from ..protocol import SplitSpec
from ..vocabulary import RRF_K
from .index import IndexBuilder, Progress

# Fields evaluation may never search: the categories are the answer.
FORBIDDEN_FIELDS: tuple[str, ...] = ("categories",)
# The product's default weights for these fields (DEFAULT_FIELD_WEIGHTS minus categories).
TEXT_FIELD_WEIGHTS: Mapping[str, float] = {"title": 3.0, "attributes": 1.0, "description": 0.5}


@dataclass(frozen=True)
class LexicalSystem:
    name: str
    label: str
    weights: Mapping[str, float]
    kind: str = field(default="lexical", init=False)

    def __post_init__(self) -> None:
        leaked = [f for f in FORBIDDEN_FIELDS if self.weights.get(f, 0) > 0]
        if leaked:
            raise ConfigError(
                f"system {self.name!r} searches {', '.join(leaked)}: the categories are the answer in "
                "evaluation, so no evaluated system may see them"
            )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "fields": dict(self.weights)}


@dataclass(frozen=True)
class DenseSystem:
    name: str
    label: str
    index: str  # key of the evaluation index holding ``field``
    field: str
    encode_queries: Callable[[Sequence[str]], np.ndarray]
    # dataclasses.field, spelled out: the attribute ``field`` above shadows the bare name here
    manifest: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: str = "title"  # what the product vectors are made from (documented in the report)
    settings: tuple[str, ...] = ()  # the settings it runs in (a model trained for one); () = all
    kind: str = dataclasses.field(default="dense", init=False)

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "label": self.label, "kind": self.kind, "field": self.field,
               "index": self.index, "product_inputs": self.inputs, "encoder": dict(self.manifest)}
        if self.settings:
            out["settings"] = list(self.settings)
        return out


@dataclass(frozen=True)
class HybridSystem:
    name: str
    label: str
    lexical: str
    dense: str
    fusion: str  # "rrf" | "linear"
    weight: float | None = None  # linear: the BM25 weight (dense gets 1 - weight), tuned on val
    kind: str = field(default="hybrid", init=False)

    def weights(self, weight: float | None = None) -> dict[str, float]:
        if self.fusion == "rrf":
            return {self.lexical: 1.0, self.dense: 1.0}
        w = self.weight if weight is None else weight
        w = 0.5 if w is None else w
        return {self.lexical: w, self.dense: 1.0 - w}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": self.label, "kind": self.kind,
                               "components": [self.lexical, self.dense], "fusion": self.fusion}
        if self.fusion == "rrf":
            out["rrf_k"] = RRF_K
        return out


@dataclass(frozen=True)
class Skipped:
    name: str
    label: str
    reason: str
    kind: str = "dense"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "skipped": self.reason}


System = LexicalSystem | DenseSystem | HybridSystem

LEXICAL_SYSTEMS: dict[str, LexicalSystem] = {
    "bm25-title": LexicalSystem("bm25-title", "BM25 (title)", {"title": 1.0}),
    "bm25-text": LexicalSystem("bm25-text", "BM25 (title+attributes+description)", dict(TEXT_FIELD_WEIGHTS)),
}
HYBRID_LEXICAL = "bm25-text"
FUSION_METHODS = ("rrf", "linear")

# Short system names and labels for the text models the project knows.
KNOWN_TEXT_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("minilm", "MiniLM zero-shot (title)"),
    "all-mpnet-base-v2": ("mpnet", "MPNet zero-shot (title)"),
}
DEFAULT_TEXT_MODELS: tuple[str, ...] = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")
TRAINED_VARIANTS: dict[str, str] = {
    "clip-i": "CLIP-I (image)",
    "clip-ia": "CLIP-IA (image+attributes)",
    "clip-ita": "CLIP-ITA (image+title+attributes)",
    "clip-ta": "CLIP-TA, text only (title+attributes)",
}


def text_system_name(model: str) -> tuple[str, str]:
    """``(name, label)`` for a text model: known short names, else a slug of the folder name."""
    if model in KNOWN_TEXT_MODELS:
        return KNOWN_TEXT_MODELS[model]
    base = Path(model.rstrip("/")).name or model
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "text"
    return f"text-{slug}", f"{base} zero-shot (title)"


def hybrid_name(fusion: str, lexical: str, dense: str) -> str:
    return f"{fusion}:{lexical}+{dense}"


def hybrid_label(fusion: str, dense_label: str) -> str:
    short = dense_label.split(" (")[0].replace(" zero-shot", "")
    return f"BM25 + {short} ({'RRF' if fusion == 'rrf' else 'linear'})"


# ------------------------------------------------------------------------------ providers


@dataclass
class ProviderContext:
    """What a provider may use: the index builder (Pipeline-backed, cached), the settings,
    the requested models and a progress callback."""

    builder: IndexBuilder
    settings: Settings
    text_models: Sequence[str] = DEFAULT_TEXT_MODELS
    trained: Sequence[Path] = ()
    progress: Progress | None = None
    wanted: Callable[[str], bool] = lambda name: True
    notes: list[str] = field(default_factory=list)
    split: SplitSpec | None = None  # the evaluation's split (trained models must share it)


Provider = Callable[[ProviderContext], list[DenseSystem | Skipped]]


# ------------------------------------------------------------------------------ selection


def selector(patterns: Sequence[str] | None) -> Callable[[str], bool]:
    """A name filter from ``--systems`` patterns (fnmatch, e.g. ``bm25-*``, ``rrf:*``)."""
    if not patterns or any(p.strip() in ("all", "*") for p in patterns):
        return lambda name: True
    pats = [p.strip() for p in patterns if p.strip()]

    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in pats)

    return wanted


def needed(patterns: Sequence[str] | None) -> Callable[[str], bool]:
    """Like ``selector`` but also true for the components of a selected hybrid."""
    chosen = selector(patterns)
    pats = [p.strip() for p in (patterns or ())]
    components: set[str] = set()
    fusion_wildcard = False
    for p in pats:
        fusion, sep, rest = p.partition(":")
        if sep and fusion in FUSION_METHODS + ("*",):
            lexical, plus, dense = rest.partition("+")
            if plus:
                components.update({lexical, dense})
            else:
                fusion_wildcard = True
    if any(ch in c for c in components for ch in "*?["):
        fusion_wildcard = True

    def wanted(name: str) -> bool:
        return chosen(name) or name in components or (fusion_wildcard and not name.startswith(FUSION_METHODS))

    return wanted


def describe_all(systems: Sequence[System | Skipped]) -> list[dict[str, Any]]:
    return [s.describe() for s in systems]
