"""The systems under evaluation, each one a way to run a category query through the Store API.

- ``LexicalSystem``: BM25 over named fields. Evaluation never searches ``categories`` (the
  answer): a system that asks for it is refused at construction.
- ``DenseSystem``: kNN on one vector field of an evaluation index, with the function that
  encodes query texts for that field. Vectors come from titles (text encoders) or images
  (CLIP), never from categories.
- ``HybridSystem``: a lexical and a dense system fused with ``ranking.fusion`` (RRF, or
  linear with the BM25 weight tuned on the validation split).

Dense systems come from *providers* (``PROVIDERS``): zero-shot text encoders, zero-shot CLIP,
and trained models. A provider returns systems, or ``Skipped`` entries that say why a system
is not available (no CLIP weights, no trained model), so the report lists them too. A trained
model plugs in by registering a provider (``register_provider``): build an index with
``ctx.builder.with_documents(...)`` (or ``with_encoders``) and return a ``DenseSystem`` whose
``encode_queries`` maps category texts into that field's space.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import ConfigError, CtirError
from ..ranking.plan import IMAGE_VECTOR, TITLE_VECTOR
from .index import IndexBuilder, Progress
from .protocol import SplitSpec

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
            out["rrf_k"] = 60
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


def text_provider(ctx: ProviderContext) -> list[DenseSystem | Skipped]:
    """Zero-shot sentence encoders over product titles (the paper's MPNet baseline)."""
    from ..encoders.registry import EncoderConfig, load_text_encoder

    out: list[DenseSystem | Skipped] = []
    for model in ctx.text_models:
        name, label = text_system_name(model)
        if not ctx.wanted(name):
            continue
        try:
            encoder = load_text_encoder(EncoderConfig.from_settings(ctx.settings, text_model=model))
        except (CtirError, ImportError) as exc:
            out.append(Skipped(name, label, f"skipped: text model {model!r} unavailable ({_one_line(exc)})"))
            continue
        ctx.builder.with_encoders(name, text_encoder=encoder)
        out.append(DenseSystem(name, label, name, TITLE_VECTOR, encoder.encode_queries, encoder.manifest, "title"))
    return out


def clip_provider(ctx: ProviderContext) -> list[DenseSystem | Skipped]:
    """Zero-shot CLIP: the category text through CLIP's text tower against product images."""
    name, label = "clip", "CLIP zero-shot (image)"
    if not ctx.wanted(name):
        return []
    if not ctx.settings.use_images:
        return [Skipped(name, label, "skipped: image vectors disabled (--clip-weights none)")]
    from ..encoders.registry import EncoderConfig, try_load_image_encoder
    from ..ingest.images import ImageLoader

    encoder, notice = try_load_image_encoder(EncoderConfig.from_settings(ctx.settings))
    if encoder is None:
        return [Skipped(name, label, f"skipped: no CLIP weights ({_one_line(notice or '')})")]
    loader = ImageLoader(cache_dir=ctx.settings.image_cache, timeout=ctx.settings.image_timeout)
    workers = ctx.settings.image_workers
    ctx.builder.with_encoders(name, image_encoder=encoder,
                              load_images=lambda refs: loader.load_many(refs, workers=workers))
    return [DenseSystem(name, label, name, IMAGE_VECTOR, encoder.encode_texts, encoder.manifest, "image")]


def _clip_ita_loader(ctx: ProviderContext, model_dir: Path) -> list[DenseSystem | Skipped]:
    from .trained import (
        clip_ita_loader,  # imported when a model is given: it loads onnxruntime heads
    )

    return clip_ita_loader(ctx, model_dir)


# Turn a ``--trained DIR`` into systems (CLIP-I / CLIP-IA / CLIP-ITA / text-only); the first
# loader that recognises the folder wins. Exported CLIP-ITA models are built in (``trained``).
TRAINED_LOADERS: list[Callable[[ProviderContext, Path], list[DenseSystem | Skipped]]] = [_clip_ita_loader]


def trained_provider(ctx: ProviderContext) -> list[DenseSystem | Skipped]:
    """Trained category-to-product models given with ``--trained DIR``.

    The loaders in ``TRAINED_LOADERS`` turn a model folder into systems; each variant without
    a model is listed as skipped, so the table says what was not measured.
    """
    out: list[DenseSystem | Skipped] = []
    for model_dir in ctx.trained:
        for loader in TRAINED_LOADERS:
            found = loader(ctx, Path(model_dir))
            if found:
                for s in found:
                    if not ctx.wanted(s.name):
                        continue
                    if any(o.name == s.name for o in out) and isinstance(s, DenseSystem):
                        # a second model of the same variant (e.g. trained for another setting)
                        s = replace(s, name=f"{s.name}-{'-'.join(s.settings) or Path(model_dir).name}")
                    out.append(s)
                break
        else:
            out.append(Skipped(f"trained-{Path(model_dir).name}", str(model_dir),
                               f"skipped: no loader recognises {model_dir} as a trained model"))
    have = {s.name for s in out}
    for name, label in TRAINED_VARIANTS.items():
        if name not in have and ctx.wanted(name):
            out.append(Skipped(name, label, "skipped: no trained model (train one, then pass --trained DIR)"))
    return out


PROVIDERS: dict[str, Provider] = {
    "text": text_provider,
    "clip": clip_provider,
    "trained": trained_provider,
}


def register_provider(name: str, provider: Provider) -> None:
    """Add (or replace) a provider of dense systems, e.g. from a training package."""
    PROVIDERS[name] = provider


def _one_line(exc: object) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


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
