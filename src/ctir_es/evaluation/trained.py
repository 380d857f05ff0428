"""Trained CLIP-ITA models (and their CLIP-I / CLIP-IA / text-only variants) as evaluation systems.

``--trained DIR`` takes an exported CLIP-ITA model directory (``manifest.json`` of kind
``onnx-clip-ita``, written by ``ctir-es models export clip-ita RUN_DIR``). The model's product
head fills a ``clip_ita`` vector field of its own evaluation index from each product's title,
attributes and/or image (whichever modalities it was trained on - never the categories), and
its category head encodes the query texts. The system is named after the variant
(``clip-ita``, ``clip-ia``, ``clip-i``, ``clip-ta``). A model whose manifest names the setting
it was trained for runs in that setting only, as in the paper (one model per setting); give
one ``--trained`` per setting.

A training run directory that has not been exported yet is reported as skipped, with the
command that exports it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.models import CLIP_ITA_KIND, MANIFEST
from ..errors import CtirError, one_line
from ..products import Product
from ..protocol import SETTINGS, trained_split
from ..schema import Document, IndexSchema, VectorField
from .systems import TRAINED_VARIANTS, DenseSystem, ProviderContext, Skipped

FIELD = "clip_ita"


def _variant(modalities: Sequence[str]) -> str:
    try:
        from ..encoders.onnx.heads import variant_name

        return variant_name(modalities)
    except ImportError:  # pragma: no cover - the encoder package is older than this one
        return "clip-" + "".join(m[0] for m in modalities)


def clip_ita_loader(ctx: ProviderContext, model_dir: Path) -> list[DenseSystem | Skipped]:
    """Systems for an exported CLIP-ITA model dir; [] when ``model_dir`` is something else."""
    manifest_path = model_dir / MANIFEST
    if not manifest_path.is_file():
        if (model_dir / "checkpoint.pt").is_file():
            name = f"trained-{model_dir.name}"
            return [Skipped(name, str(model_dir), "skipped: a training run, not an exported model; run "
                                                  f"`ctir-es models export clip-ita {model_dir}` and pass the export")]
        return []
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if manifest.get("kind") != CLIP_ITA_KIND:
        return []
    modalities = tuple(manifest.get("modalities") or ())
    name = _variant(modalities) if modalities else f"trained-{model_dir.name}"
    setting = manifest.get("setting")
    settings = (setting,) if setting in SETTINGS else ()
    label = TRAINED_VARIANTS.get(name, name.upper()) + (f", trained: {SETTINGS[setting]}" if settings else "")
    key = f"{name}@{model_dir.name}"
    mismatch = _split_mismatch(manifest, ctx)
    if mismatch:
        return [Skipped(name, label, f"skipped: {model_dir.name} {mismatch}")]
    if not ctx.wanted(name):
        return []
    try:
        from ..encoders.registry import EncoderConfig, load_clip_ita  # type: ignore[attr-defined]

        encoder: Any = load_clip_ita(model_dir, EncoderConfig.from_settings(ctx.settings))
    except (CtirError, ImportError, AttributeError) as exc:
        return [Skipped(name, label, f"skipped: CLIP-ITA model {model_dir} does not load ({one_line(exc)})")]

    needs_images = "image" in encoder.modalities
    loader = None
    if needs_images:
        from ..ingest.images import ImageLoader

        loader = ImageLoader(cache_dir=ctx.settings.image_cache, timeout=ctx.settings.image_timeout)
    workers = ctx.settings.image_workers

    load_images = (lambda refs: loader.load_many(refs, workers=workers)) if loader is not None else None
    memo: dict[str, Any] = {}

    def cached_features(batch: Sequence[Product]) -> dict[str, np.ndarray] | None:
        """The frozen-encoder features of the whole catalogue, once, from the training feature
        cache (content-keyed: title, attribute texts, image reference - never categories)."""
        if "rows" not in memo:
            memo["rows"] = None
            try:
                from ..training.features import FeatureCache, product_feature_matrices

                products = list(ctx.builder.products)
                feats, _ = product_feature_matrices(
                    products, encoder.modalities, text_encoder=encoder.text_encoder,
                    image_encoder=getattr(encoder, "image_encoder", None), load_images=load_images,
                    cache=FeatureCache(Path(ctx.settings.cache_dir) / "features"))
                memo["rows"] = ({p.id: i for i, p in enumerate(products)}, feats)
            except (ImportError, AttributeError, CtirError, ValueError):
                return None  # encode batch by batch instead
        if memo["rows"] is None:
            return None
        rows, feats = memo["rows"]
        index = [rows[p.id] for p in batch]
        return {m: f[index] for m, f in feats.items()}

    def documents(batch: Sequence[Product]) -> list[Document]:
        precomputed = cached_features(batch)
        images: list[Any] | None = None
        if precomputed is None and loader is not None:
            refs = [p.images[0] if p.images else None for p in batch]
            wanted = [r for r in refs if r]
            loaded = iter(loader.load_many(wanted, workers=workers) if wanted else [])
            images = []
            for ref in refs:
                item = next(loaded) if ref else None
                images.append(item if item is not None and not isinstance(item, Exception) else None)
        if precomputed is not None:
            vectors = encoder.encode_products(list(batch), None, precomputed=precomputed)
        else:
            vectors = encoder.encode_products(list(batch), images)
        vectors = np.asarray(vectors, dtype=np.float32)
        return [Document(p, {FIELD: v}, p.images[0] if p.images else None)
                for p, v in zip(batch, vectors, strict=True)]

    schema = IndexSchema({FIELD: VectorField(int(encoder.dims), "cosine", dict(encoder.manifest))})
    ctx.builder.with_documents(key, schema, documents)
    return [DenseSystem(name, label, key, FIELD, encoder.encode_categories, dict(encoder.manifest),
                        "+".join(encoder.modalities), settings)]


def _split_mismatch(manifest: dict[str, Any], ctx: ProviderContext) -> str | None:
    """Why the model's training split is not the evaluation's (its training products could be
    test products here), or None when they agree or the manifest does not say."""
    trained = trained_split(manifest)
    if ctx.split is None or not trained or ctx.split.matches(trained):
        return None
    theirs = {k: trained.get(k) for k in ("seed", "train", "val", "test")}
    return (f"was trained on another split (seed {theirs['seed']}, fractions {theirs['train']}/"
            f"{theirs['val']}/{theirs['test']}): some of its training products would be test products "
            f"here; evaluate with --seed {theirs['seed']} --split {theirs['train']},{theirs['val']},{theirs['test']}")
