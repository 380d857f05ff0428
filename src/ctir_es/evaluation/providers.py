"""Where dense systems come from: *providers* (``PROVIDERS``) for zero-shot text encoders,
zero-shot CLIP and trained models (``--trained DIR``, via ``TRAINED_LOADERS``).

A provider returns systems, or ``Skipped`` entries that say why a system is not available (no
CLIP weights, no trained model), so the report lists them too. A trained model plugs in by
registering a provider (``register_provider``) or a loader (``TRAINED_LOADERS``): build an
index with ``ctx.builder.with_documents(...)`` (or ``with_encoders``) and return a
``DenseSystem`` whose ``encode_queries`` maps category texts into that field's space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import CtirError, one_line
from ..ranking.plan import IMAGE_VECTOR, TITLE_VECTOR
from .systems import (
    TRAINED_VARIANTS,
    DenseSystem,
    Provider,
    ProviderContext,
    Skipped,
    text_system_name,
)
from .trained import clip_ita_loader


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
            out.append(Skipped(name, label, f"skipped: text model {model!r} unavailable ({one_line(exc, limit=1000)})"))
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
        return [Skipped(name, label, f"skipped: no CLIP weights ({one_line(notice or '')})")]
    loader = ImageLoader(cache_dir=ctx.settings.image_cache, timeout=ctx.settings.image_timeout)
    workers = ctx.settings.image_workers
    ctx.builder.with_encoders(name, image_encoder=encoder,
                              load_images=lambda refs: loader.load_many(refs, workers=workers))
    return [DenseSystem(name, label, name, IMAGE_VECTOR, encoder.encode_texts, encoder.manifest, "image")]


# Turn a ``--trained DIR`` into systems (CLIP-I / CLIP-IA / CLIP-ITA / text-only); the first
# loader that recognises the folder wins. Exported CLIP-ITA models are built in (``trained``).
TRAINED_LOADERS: list[Callable[[ProviderContext, Path], list[DenseSystem | Skipped]]] = [clip_ita_loader]


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
