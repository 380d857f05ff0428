"""Frozen-encoder features, computed once and cached per model and product.

The encoders are frozen, so each product's title, attribute and image features (and each
category text's) depend only on the encoder and the content: they are computed once and kept
in ``<cache>/<encoder id>/<kind>.npz`` keyed by ``product id + sha1(content)``. A second run
with the same encoders reads them instead of encoding (seconds instead of minutes); a changed
title or image re-encodes that product only. The features themselves are defined in
``ctir_es.encoders.onnx.heads`` - the same code ingest runs.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..encoders.base import ImageEncoder, TextEncoder
from ..encoders.models import safe_name
from ..encoders.onnx.heads import attribute_texts, check_modalities, product_features
from ..errors import ImageError
from ..products import Product

Progress = Callable[[str, int, int], None]
ImageLoad = Callable[[Sequence[str]], list[Image.Image | ImageError]]
CHUNK = 256


def _noop(stage: str, done: int, total: int) -> None:
    return None


def content_key(product_id: str, content: str) -> str:
    return f"{product_id}\x1f{hashlib.sha1(content.encode('utf-8')).hexdigest()[:16]}"


def modality_content(product: Product, modality: str) -> str:
    if modality == "title":
        return product.title
    if modality == "attributes":
        return "\n".join(attribute_texts(product))
    return product.images[0] if product.images else ""


class FeatureCache:
    """npz files of vectors keyed by string, one per (encoder id, kind)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, encoder_id: str, kind: str) -> Path:
        return self.root / safe_name(encoder_id) / f"{kind}.npz"

    def load(self, encoder_id: str, kind: str) -> dict[str, np.ndarray]:
        path = self.path(encoder_id, kind)
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                return dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            return {}  # a damaged cache is recomputed, never trusted

    def save(self, encoder_id: str, kind: str, vectors: dict[str, np.ndarray]) -> None:
        path = self.path(encoder_id, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(vectors)
        tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.npz")
        np.savez(tmp, keys=np.asarray(keys, dtype=str),
                 vectors=np.stack([vectors[k] for k in keys]).astype(np.float32))
        os.replace(tmp, path)


def _load_images(refs: Sequence[str], load: ImageLoad | None) -> list[Image.Image | None]:
    from ..ingest.pipeline import MAX_IMAGE_SIDE

    wanted = [r for r in refs if r]
    results = iter(load(wanted) if (load and wanted) else [])
    out: list[Image.Image | None] = []
    for ref in refs:
        if not ref or load is None:
            out.append(None)
            continue
        res = next(results)
        if isinstance(res, ImageError):
            out.append(None)
        else:  # exactly what the ingest pipeline does before encoding
            res.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.BICUBIC)
            out.append(res)
    return out


def product_feature_matrices(
    products: Sequence[Product],
    modalities: Sequence[str],
    *,
    text_encoder: TextEncoder | None,
    image_encoder: ImageEncoder | None,
    load_images: ImageLoad | None = None,
    cache: FeatureCache | None = None,
    progress: Progress = _noop,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``({modality: (N, dims)}, stats)``; stats count cached and computed rows per modality."""
    out: dict[str, np.ndarray] = {}
    stats: dict[str, Any] = {}
    for modality in check_modalities(modalities):
        encoder = image_encoder if modality == "image" else text_encoder
        if encoder is None:
            raise ValueError(f"the {modality} modality needs an encoder")
        encoder_id = str(encoder.manifest["id"])
        keys = [content_key(p.id, modality_content(p, modality)) for p in products]
        stored = cache.load(encoder_id, modality) if cache else {}
        missing = [i for i, k in enumerate(keys) if k not in stored]
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start:start + CHUNK]
            subset = [products[i] for i in chunk]
            images = (_load_images([modality_content(p, "image") for p in subset], load_images)
                      if modality == "image" else None)
            feats = product_features(subset, (modality,), text_encoder=text_encoder, image_encoder=image_encoder,
                                     images=images)[modality]
            stored.update({keys[i]: feats[j] for j, i in enumerate(chunk)})
            progress(f"{modality} features", min(start + CHUNK, len(missing)), len(missing))
        if cache and missing:
            cache.save(encoder_id, modality, stored)
        out[modality] = np.stack([stored[k] for k in keys]).astype(np.float32) if keys else \
            np.zeros((0, encoder.dims), dtype=np.float32)
        stats[modality] = {"encoder": encoder_id, "cached": len(keys) - len(missing), "computed": len(missing)}
        if modality == "image":
            stats[modality]["zero_rows"] = int((np.abs(out[modality]).sum(1) == 0).sum())
    return out, stats


def category_matrix(
    texts: Sequence[str], text_encoder: TextEncoder, cache: FeatureCache | None = None
) -> np.ndarray:
    """Category texts through the text encoder as queries (what the category head sees)."""
    encoder_id = str(text_encoder.manifest["id"])
    stored = cache.load(encoder_id, "category") if cache else {}
    missing = sorted({t for t in texts if t not in stored})
    if missing:
        stored.update(zip(missing, text_encoder.encode_queries(missing), strict=True))
        if cache:
            cache.save(encoder_id, "category", stored)
    if not texts:
        return np.zeros((0, text_encoder.dims), dtype=np.float32)
    return np.stack([stored[t] for t in texts]).astype(np.float32)
